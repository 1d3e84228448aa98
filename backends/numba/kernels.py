"""Private numba kernels: one interpreter that steps a lowered program (see ``program.py``).

A program is a table of ops (int64 rows) over one flat memory vector per sample. Every op reads
and writes ``mem`` at fixed offsets, so one compiled interpreter runs any graph and ``cache=True``
makes later processes start without compiling. The float interpreter is compiled once per dtype
(float32, float64); the fixed-point interpreter works on int64 with saturating arithmetic.

Summation order is the same in the gather (clock) and scatter (event) variants: every output
element receives its terms in ascending input index, and skipped zero inputs only add zero. That
is why numba-clock and numba-event give bit-identical results. The EGRU op follows the order of
``spikeflow.backends.numba.egru_kernels`` (each projection starts from its bias), so it also equals the torch
EGRU bit for bit in float64.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from spikeflow._threads import announce_first_compile

# op codes (column 0 of an op row); column meanings are listed in program.py
OP_INPUT, OP_COPY, OP_ADD, OP_DENSE, OP_SCALE, OP_CONV, OP_POOL = 0, 1, 2, 3, 4, 5, 6
OP_THRESHOLD, OP_DELAY, OP_LIF, OP_CUBA, OP_IF, OP_EGRU, OP_LIF_FUSED = 7, 8, 9, 10, 11, 12, 13
# weight layouts of OP_DENSE
ROWS, COLUMNS, CSR_ROWS, CSR_COLUMNS, CSR_COLUMNS16 = 0, 1, 2, 3, 4
OP_WIDTH = 20

# -------------------------------------------------------------------------- synaptic ops


@njit(cache=True)
def _dense_accumulate(m, o, params, iparams, event):
    """Raw ``W x`` into ``m[dst:dst+n_out]``; returns the number of multiply-adds performed.

    Works on slices so that LLVM sees plain loops over separate arrays (several times faster
    than offset arithmetic on one memory vector).
    """
    dst, src, n_out, n_in = o[1], o[2], o[3], o[4]
    y, x = m[dst : dst + n_out], m[src : src + n_in]
    y[:] = 0
    return _weights_times(y, x, params, iparams, o[5], o[7], o[8], o[9])


@njit(cache=True)
def _weights_times(y, x, params, iparams, w, layout, ip, ix):
    """``y += W x`` in the given layout (gathers and scatters add the terms in ascending input
    index); returns the number of multiply-adds performed."""
    n_out, n_in = y.size, x.size
    if layout == ROWS:
        _gather_rows(y, x, params[w : w + n_out * n_in].reshape((n_out, n_in)))
        return n_out * n_in
    if layout == COLUMNS:
        return _scatter_columns(y, x, params[w : w + n_out * n_in].reshape((n_in, n_out)))
    indptr = iparams[ip : ip + (n_out if layout == CSR_ROWS else n_in) + 1]
    nnz = indptr[-1] - indptr[0]
    data = params[w : w + nnz]
    if layout == CSR_ROWS:
        _gather_csr(y, x, indptr, iparams[ix : ix + nnz], data)
        return nnz
    if layout == CSR_COLUMNS16:
        return _scatter_csr(y, x, indptr, _uint16_indices(iparams, ix, nnz), data)
    return _scatter_csr(y, x, indptr, _int32_indices(iparams, ix, nnz), data)


@njit(cache=True)
def _int32_indices(iparams, ix, nnz):
    """The row indices of a CSR_COLUMNS weight: int32, two per int64 slot (``program._pack_indices``),
    which cuts the memory streamed per synaptic event from 16 to 12 bytes (float64 weights)."""
    return iparams[ix : ix + (nnz + 1) // 2].view(np.int32)


@njit(cache=True)
def _uint16_indices(iparams, ix, nnz):
    """The row indices of a CSR_COLUMNS16 weight (at most 65,536 outputs): uint16, four per int64
    slot, so a synaptic event streams 10 bytes (float64 weights) or 6 (float32)."""
    return iparams[ix : ix + (nnz + 3) // 4].view(np.uint16)


@njit(cache=True)
def _gather_rows(y, x, w):
    for i in range(y.size):
        acc = y[i]
        for j in range(x.size):
            acc += w[i, j] * x[j]
        y[i] = acc


@njit(cache=True)
def _gather_csr(y, x, indptr, indices, data):
    for i in range(y.size):
        acc = y[i]
        for k in range(indptr[i], indptr[i + 1]):
            acc += data[k] * x[indices[k]]
        y[i] = acc


@njit(cache=True)
def _scatter_columns(y, x, wt):
    count = 0
    for j in range(x.size):
        xj = x[j]
        if xj != 0:
            row = wt[j]
            for i in range(y.size):
                y[i] += row[i] * xj
            count += y.size
    return count


@njit(cache=True)
def _scatter_csr(y, x, indptr, indices, data):
    count = 0
    for j in range(x.size):
        xj = x[j]
        if xj != 0:
            lo, hi = indptr[j], indptr[j + 1]
            for k in range(lo, hi):
                y[indices[k]] += data[k] * xj
            count += hi - lo
    return count


@njit(cache=True)
def _conv_accumulate(m, o, params, iparams, event):
    """Raw convolution (no bias) into ``dst``: gather per output, or scatter per nonzero input."""
    dst, src, g, w = o[1], o[2], o[3], o[4]
    c_in, h, wd, c_out, oh, ow = iparams[g], iparams[g + 1], iparams[g + 2], iparams[g + 3], iparams[g + 4], iparams[g + 5]
    kh, kw, sh, sw = iparams[g + 6], iparams[g + 7], iparams[g + 8], iparams[g + 9]
    ph, pw, dh, dw, groups = iparams[g + 10], iparams[g + 11], iparams[g + 12], iparams[g + 13], iparams[g + 14]
    cin_g = c_in // groups
    per_group = c_out // groups
    count = 0
    for k in range(c_out * oh * ow):
        m[dst + k] = 0
    if not event:
        for co in range(c_out):
            grp = co // per_group
            for oy in range(oh):
                for ox in range(ow):
                    out = dst + (co * oh + oy) * ow + ox
                    for cl in range(cin_g):
                        ci = grp * cin_g + cl
                        for ky in range(kh):
                            iy = oy * sh - ph + ky * dh
                            if iy < 0 or iy >= h:
                                continue
                            for kx in range(kw):
                                ix = ox * sw - pw + kx * dw
                                if ix < 0 or ix >= wd:
                                    continue
                                m[out] += params[w + ((co * cin_g + cl) * kh + ky) * kw + kx] * m[src + (ci * h + iy) * wd + ix]
                                count += 1
        return count
    for ci in range(c_in):
        grp = ci // cin_g
        cl = ci - grp * cin_g
        for iy in range(h):
            for ix in range(wd):
                x = m[src + (ci * h + iy) * wd + ix]
                if x == 0:
                    continue
                for ky in range(kh):
                    ny = iy + ph - ky * dh
                    if ny < 0 or ny % sh != 0 or ny // sh >= oh:
                        continue
                    oy = ny // sh
                    for kx in range(kw):
                        nx = ix + pw - kx * dw
                        if nx < 0 or nx % sw != 0 or nx // sw >= ow:
                            continue
                        ox = nx // sw
                        for co in range(grp * per_group, (grp + 1) * per_group):
                            m[dst + (co * oh + oy) * ow + ox] += params[w + ((co * cin_g + cl) * kh + ky) * kw + kx] * x
                            count += 1
    return count


@njit(cache=True)
def _pool_accumulate(m, o, iparams, event):
    """Window sums into ``dst`` (the average divides afterwards); same term order in both modes."""
    dst, src, g = o[1], o[2], o[3]
    c, h, wd, oh, ow = iparams[g], iparams[g + 1], iparams[g + 2], iparams[g + 3], iparams[g + 4]
    kh, kw, sh, sw, ph, pw = iparams[g + 5], iparams[g + 6], iparams[g + 7], iparams[g + 8], iparams[g + 9], iparams[g + 10]
    count = 0
    for k in range(c * oh * ow):
        m[dst + k] = 0
    if not event:
        for ch in range(c):
            for oy in range(oh):
                for ox in range(ow):
                    out = dst + (ch * oh + oy) * ow + ox
                    for ky in range(kh):
                        iy = oy * sh - ph + ky
                        if iy < 0 or iy >= h:
                            continue
                        for kx in range(kw):
                            ix = ox * sw - pw + kx
                            if 0 <= ix < wd:
                                m[out] += m[src + (ch * h + iy) * wd + ix]
                                count += 1
        return count
    for ch in range(c):
        for iy in range(h):
            for ix in range(wd):
                x = m[src + (ch * h + iy) * wd + ix]
                if x == 0:
                    continue
                for ky in range(kh):
                    ny = iy + ph - ky
                    if ny < 0 or ny % sh != 0 or ny // sh >= oh:
                        continue
                    for kx in range(kw):
                        nx = ix + pw - kx
                        if nx < 0 or nx % sw != 0 or nx // sw >= ow:
                            continue
                        m[dst + (ch * oh + ny // sh) * ow + nx // sw] += x
                        count += 1
    return count


# ------------------------------------------------- event-mode convolution and pooling (float)
# Each listed nonzero input (ascending) is scattered to the outputs it reaches. ``%taps`` holds,
# for each input row, the (weight offset, output offset) pairs of the kernel rows that reach it,
# and for each input column the runs (weight offset, output offset, length) of the kernel columns
# (``program._taps``): no division or bounds test runs per synapse, and with stride 1 a whole
# kernel row of a dense convolution is one contiguous run. Every output still receives its terms
# in ascending input index, as in ``_conv_accumulate``.


@njit(cache=True)
def _conv_event(m, o, params, iparams, lists):
    """Raw convolution (no bias) into ``dst`` from the source's list; returns the multiply-adds
    performed. Terms accumulate channel-last in a scratch (``wt`` is stored ``[c_in, kh, kw
    reversed, c_out / groups]``, so a run is contiguous in both), then the sums are written
    channel-first to ``dst``.

    Event columns of the op row: 13 &list of the source, 14 collect it here (1) or kept by the
    source (0), 15 %taps, 16 #wt, 17 @scratch, 18 source size.
    """
    dst, src, g = o[1], o[2], o[3]
    c_in, h, wd, c_out, oh, ow = iparams[g], iparams[g + 1], iparams[g + 2], iparams[g + 3], iparams[g + 4], iparams[g + 5]
    kh, kw, groups = iparams[g + 6], iparams[g + 7], iparams[g + 14]
    cin_g, per_group = c_in // groups, c_out // groups
    at, x = o[13], m[src : src + o[18]]
    if o[14] != 0:
        _collect(x, lists, at)
    row_ptr, rows, col_ptr, cols = _tap_tables(iparams, o[15])
    wt = params[o[16] : o[16] + c_in * kh * kw * per_group]
    n_out = c_out * oh * ow
    s = m[o[17] : o[17] + n_out]
    s[:] = 0
    count, row_start, ci, iy = 0, -wd, 0, 0
    for q in range(lists[at]):
        i = lists[at + 1 + q]
        if i >= row_start + wd:  # a new input row (the list ascends): divide once per row
            row = i // wd
            row_start, ci = row * wd, row // h
            iy = row - ci * h
        xi, ix = x[i], i - row_start
        w_in, first = ci * kh * kw * per_group, (ci // cin_g) * per_group
        for a in range(row_ptr[iy], row_ptr[iy + 1]):
            w_row, out_row = w_in + rows[2 * a], first + rows[2 * a + 1]
            for b in range(col_ptr[ix], col_ptr[ix + 1]):
                w, out, n = w_row + cols[3 * b], out_row + cols[3 * b + 1], cols[3 * b + 2]
                _axpy(s[out : out + n], wt[w : w + n], xi)
                count += n
    y = m[dst : dst + n_out]
    positions = oh * ow
    for co in range(c_out):
        plane = y[co * positions : (co + 1) * positions]
        for p in range(positions):
            plane[p] = s[p * c_out + co]
    return count


@njit(cache=True)
def _axpy(y, w, x):
    """``y += w * x`` on slices (indices from zero let LLVM vectorise the loop)."""
    for j in range(y.size):
        y[j] += w[j] * x


@njit(cache=True)
def _tap_tables(iparams, at):
    """The four arrays of a ``%taps`` header: row pointers, row pairs, column pointers, column runs."""
    return (iparams[iparams[at] : iparams[at + 1]], iparams[iparams[at + 1] : iparams[at + 2]],
            iparams[iparams[at + 2] : iparams[at + 3]], iparams[iparams[at + 3] : iparams[at + 4]])


@njit(cache=True)
def _pool_event(m, o, iparams, lists):
    """Window sums (averages) into ``dst`` from the source's list, then ``dst``'s own list when
    a reader keeps one; returns the additions performed.

    Event columns of the op row: 6 &list of the source, 7 collect it here (1) or kept by the
    source (0), 8 %taps, 9 &list of the output|-1, 10 source size.
    """
    dst, src, g, divisor, n_out = o[1], o[2], o[3], o[4], o[5]
    h, wd, oh, ow = iparams[g + 1], iparams[g + 2], iparams[g + 3], iparams[g + 4]
    at, x = o[6], m[src : src + o[10]]
    if o[7] != 0:
        _collect(x, lists, at)
    row_ptr, rows, col_ptr, cols = _tap_tables(iparams, o[8])
    y = m[dst : dst + n_out]
    y[:] = 0
    count, row_start, iy, base = 0, -wd, 0, 0
    for q in range(lists[at]):
        i = lists[at + 1 + q]
        if i >= row_start + wd:
            row = i // wd
            ch = row // h
            row_start, iy, base = row * wd, row - ch * h, ch * oh * ow
        xi, ix = x[i], i - row_start
        for a in range(row_ptr[iy], row_ptr[iy + 1]):
            out_row = base + rows[2 * a + 1]
            for b in range(col_ptr[ix], col_ptr[ix + 1]):
                out, n = out_row + cols[3 * b + 1], cols[3 * b + 2]
                for j in range(out, out + n):
                    y[j] += xi
                count += n
    if divisor > 0:
        for k in range(n_out):
            y[k] = y[k] / divisor
    if o[9] >= 0:
        _collect(y, lists, o[9])
    return count


# ------------------------------------------------------------------------- the interpreters


@njit(cache=True)
def _delay(m, o, iparams, tt):
    dst, src, size, steps, ring, length = o[1], o[2], o[3], o[4], o[5], o[6]
    slot = tt % length
    for i in range(size):
        m[ring + slot * size + i] = m[src + i]
    for i in range(size):
        m[dst + i] = m[ring + ((tt - iparams[steps + i]) % length) * size + i]


@njit(cache=True)
def _record(m, rec_table, rec, t, b):
    for r in range(rec_table.shape[0]):
        off, size, at = rec_table[r, 0], rec_table[r, 1], rec_table[r, 2]
        for i in range(size):
            rec[t, b, at + i] = m[off + i]


@njit(cache=True)
def _run_float(ops, params, iparams, mem, tcount, inputs, rec_table, rec, event, counts):
    """Step every sample ``b`` of ``mem[b]`` through ``inputs.shape[0]`` steps of dense inputs
    ``[T, B, n_input]``.

    counts[0] += multiply-adds of synaptic ops, counts[1] += neuron state updates.
    """
    none = np.zeros(1, dtype=np.int64)
    _run(ops, params, iparams, mem, tcount, inputs, inputs.shape[0], False, none, none, mem[0, :0], rec_table, rec, event, counts)


@njit(cache=True)
def _run_float_sparse(ops, params, iparams, mem, tcount, steps, in_ptr, in_idx, in_val, rec_table, rec, event, counts):
    """As :func:`_run_float`, for inputs given as nonzero entries: row ``t * B + b`` of the CSR
    ``(in_ptr, in_idx, in_val)`` holds the packed-input columns (ascending) and values of step
    ``t`` of sample ``b``. Only event-mode programs (whose INPUT ops keep lists) take them."""
    dense = np.zeros((0, 0, 0), dtype=mem.dtype)
    _run(ops, params, iparams, mem, tcount, dense, steps, True, in_ptr, in_idx, in_val, rec_table, rec, event, counts)


@njit(cache=True)
def _run(ops, params, iparams, mem, tcount, inputs, steps, sparse, in_ptr, in_idx, in_val, rec_table, rec, event, counts):
    batch = mem.shape[0]
    lists = np.zeros(_list_size(ops), dtype=np.int64)
    for b in range(batch):
        m = mem[b]
        _rebuild_lists(m, ops, lists)
        for t in range(steps):
            tt = tcount[b]
            for k in range(ops.shape[0]):
                o = ops[k]
                code, dst, src, size = o[0], o[1], o[2], o[3]
                if code == OP_LIF_FUSED:
                    _lif_fused(m, o, params, lists)
                    counts[1] += o[2]
                elif code == OP_INPUT:  # row: @dst, size, column, &list|-1, a reader wants the list
                    if sparse:
                        _input_entries(m[dst : dst + src], lists, o[4], in_ptr, in_idx, in_val, t * batch + b, size)
                    else:
                        m[dst : dst + src] = inputs[t, b, size : size + src]
                        if o[5] != 0:
                            _collect(m[dst : dst + src], lists, o[4])
                elif code == OP_COPY:
                    m[dst : dst + size] = m[src : src + size]
                elif code == OP_ADD:
                    _add(m[dst : dst + size], m[src : src + size])
                elif code == OP_DENSE:
                    if event and o[13] >= 0:  # the source's spike list: no scan for nonzero inputs
                        y = m[dst : dst + size]
                        y[:] = 0
                        counts[0] += _scatter_list(y, m[src : src + o[4]], lists, o[13], params, iparams, o[5], o[7], o[8], o[9])
                    else:
                        counts[0] += _dense_accumulate(m, o, params, iparams, event)
                    if o[6] >= 0:
                        _add(m[dst : dst + size], params[o[6] : o[6] + size])
                elif code == OP_CONV:
                    if event:
                        counts[0] += _conv_event(m, o, params, iparams, lists)
                    else:
                        counts[0] += _conv_accumulate(m, o, params, iparams, event)
                    if o[5] >= 0:
                        _add_channel_bias(m[dst : dst + o[6]], params[o[5] : o[5] + o[6] // o[7]], o[7])
                elif code == OP_POOL:
                    if event:
                        counts[0] += _pool_event(m, o, iparams, lists)
                    else:
                        counts[0] += _pool_accumulate(m, o, iparams, event)
                        if o[4] > 0:
                            for i in range(o[5]):
                                m[dst + i] = m[dst + i] / o[4]
                elif code == OP_SCALE:
                    _mul(m[dst : dst + size], m[src : src + size], params[o[4] : o[4] + size])
                elif code == OP_THRESHOLD:
                    _threshold(m[dst : dst + size], m[src : src + size], params[o[4] : o[4] + size])
                elif code == OP_DELAY:
                    _delay(m, o, iparams, tt)
                elif code == OP_LIF:
                    v = m[o[4] : o[4] + size]
                    _leaky(v, m[src : src + size], params[o[5] : o[5] + size], params[o[6] : o[6] + size], params[o[7] : o[7] + size])
                    _spike(m[dst : dst + size], v, params, o[8], o[9], o[10], o[11])
                    counts[1] += size
                elif code == OP_CUBA:
                    v, cur = m[o[4] : o[4] + size], m[o[5] : o[5] + size]
                    _cuba(v, cur, m[src : src + size], params[o[6] : o[6] + size], params[o[7] : o[7] + size],
                          params[o[8] : o[8] + size], params[o[9] : o[9] + size], params[o[10] : o[10] + size])
                    _spike(m[dst : dst + size], v, params, o[11], o[12], o[13], o[14])
                    counts[1] += size
                elif code == OP_IF:
                    v = m[o[4] : o[4] + size]
                    _integrate(v, m[src : src + size], params[o[5] : o[5] + size])
                    _spike(m[dst : dst + size], v, params, o[6], o[7], o[8], o[9])
                    counts[1] += size
                elif code == OP_EGRU:
                    counts[0] += _egru(m, o, params, iparams)
                    counts[1] += size
            for r in range(rec_table.shape[0]):
                off, n, at = rec_table[r, 0], rec_table[r, 1], rec_table[r, 2]
                rec[t, b, at : at + n] = m[off : off + n]
            tcount[b] += 1


# ------------------------------------------------------------- fused LIF and spike lists


@njit(cache=True)
def _list_size(ops):
    """Length of the spike-list scratch: each list is a count then up to ``size`` indices."""
    need = 1
    for k in range(ops.shape[0]):
        if ops[k, 0] == OP_LIF_FUSED and ops[k, 12] >= 0:
            need = max(need, ops[k, 12] + 1 + ops[k, 2])
        if ops[k, 0] == OP_INPUT and ops[k, 4] >= 0:
            need = max(need, ops[k, 4] + 1 + ops[k, 2])
        if ops[k, 0] == OP_CONV and ops[k, 14] != 0:
            need = max(need, ops[k, 13] + 1 + ops[k, 18])
        if ops[k, 0] == OP_POOL and ops[k, 7] != 0:
            need = max(need, ops[k, 6] + 1 + ops[k, 10])
        if ops[k, 0] == OP_POOL and ops[k, 9] >= 0:
            need = max(need, ops[k, 9] + 1 + ops[k, 5])
    return need


@njit(cache=True)
def _rebuild_lists(m, ops, lists):
    """Spike lists from the spike buffers in ``m``: lists are scratch, so a run can start from any
    memory (a later chunk, another sample) and a delayed consumer still sees last step's spikes."""
    for k in range(ops.shape[0]):
        o = ops[k]
        if o[0] == OP_LIF_FUSED and o[12] >= 0:
            _collect(m[o[1] : o[1] + o[2]], lists, o[12])
        if o[0] == OP_INPUT and o[4] >= 0:
            _collect(m[o[1] : o[1] + o[2]], lists, o[4])
        if o[0] == OP_POOL and o[9] >= 0:
            _collect(m[o[1] : o[1] + o[5]], lists, o[9])


@njit(cache=True)
def _input_entries(x, lists, at, in_ptr, in_idx, in_val, row, column):
    """Input ``x`` from the nonzero entries of one row: clear what the last step set (its list),
    then write the entries in this Input's columns and list them (ascending, as they come)."""
    for q in range(lists[at]):
        x[lists[at + 1 + q]] = 0
    count = 0
    for k in range(in_ptr[row], in_ptr[row + 1]):
        i = in_idx[k] - column
        if 0 <= i < x.size:
            x[i] = in_val[k]
            lists[at + 1 + count] = i
            count += 1
    lists[at] = count


@njit(cache=True)
def _collect(z, lists, at):
    """``lists[at]`` = number of nonzero ``z``, followed by their indices in ascending order.

    Spikes are rare: blocks of 32 values are first tested with a branch-free (vectorised) integer
    OR of their bits (a zero is all zero bits; a -0.0 passes the test and fails the exact check)."""
    if z.itemsize == 8:
        count = _collect_blocks(z, z.view(np.int64), lists, at)
    else:
        count = _collect_blocks(z, z.view(np.int32), lists, at)
    for i in range(z.size - z.size % 32, z.size):
        if z[i] != 0:
            lists[at + 1 + count] = i
            count += 1
    lists[at] = count


@njit(cache=True)
def _collect_blocks(z, bits, lists, at):
    count = 0
    for base in range(0, z.size - z.size % 32, 32):
        hit = bits[base]
        for i in range(base + 1, base + 32):
            hit |= bits[i]
        if hit != 0:
            for i in range(base, base + 32):
                if z[i] != 0:
                    lists[at + 1 + count] = i
                    count += 1
    return count


@njit(cache=True)
def _scatter_list(y, x, lists, at, params, iparams, w, layout, ip, ix):
    """``y += W x`` over the listed nonzero ``x`` only (ascending, as in the scans of
    ``_scatter_columns`` / ``_scatter_csr``); returns the multiply-adds performed."""
    n_out, n_in, count = y.size, x.size, 0
    if layout == COLUMNS:
        wt = params[w : w + n_out * n_in].reshape((n_in, n_out))
        for q in range(lists[at]):
            j = lists[at + 1 + q]
            xj, row = x[j], wt[j]
            for i in range(n_out):
                y[i] += row[i] * xj
            count += n_out
        return count
    indptr = iparams[ip : ip + n_in + 1]
    nnz = indptr[-1] - indptr[0]
    data = params[w : w + nnz]
    if layout == CSR_COLUMNS16:
        return _scatter_csr_listed(y, x, lists, at, indptr, _uint16_indices(iparams, ix, nnz), data)
    return _scatter_csr_listed(y, x, lists, at, indptr, _int32_indices(iparams, ix, nnz), data)


@njit(cache=True)
def _scatter_csr_listed(y, x, lists, at, indptr, indices, data):
    count = 0
    for q in range(lists[at]):
        j = lists[at + 1 + q]
        xj, lo, hi = x[j], indptr[j], indptr[j + 1]
        for k in range(lo, hi):
            y[indices[k]] += data[k] * xj
        count += hi - lo
    return count


@njit(cache=True)
def _lif_fused(m, o, params, lists):
    """One LIF (or LI) step whose input is summed in the same pass: ``x = x0*g0 (+ x1*g1)`` where
    each term is a source buffer times a uniform scale (a fused Scale node, or exactly 1.0), then
    ``v = a*v + c*x + b``, spike and reset; then the spike list, if a consumer reads one.

    Op row: @dst, size, @v, #a, #b, #c, #v_threshold, #v_reset, spiking, subtract, uniform,
    &list|-1, terms (1 or 2), @src0, #scale0, @src1, #scale1. The arithmetic is that of
    OP_COPY/OP_ADD/OP_SCALE followed by ``_leaky`` and ``_spike``, operation for operation
    (multiplying by 1.0 is exact).
    """
    dst, size, vo = o[1], o[2], o[3]
    z, v, x0 = m[dst : dst + size], m[vo : vo + size], m[o[14] : o[14] + size]
    g0 = params[o[15]]
    two = o[13] == 2
    x1 = m[o[16] : o[16] + size] if two else x0
    g1 = params[o[17]] if two else g0
    spiking, sub = o[9] != 0, o[10] != 0
    if o[11] == 1 and spiking:  # the common case, in straight loops that LLVM vectorises
        a, b, c, th, vr = params[o[4]], params[o[5]], params[o[6]], params[o[7]], params[o[8]]
        if two:
            _lif_uniform2(z, v, x0, g0, x1, g1, a, b, c, th, vr, sub)
        else:
            _lif_uniform1(z, v, x0, g0, a, b, c, th, vr, sub)
    else:
        a, b, c = params[o[4] : o[4] + size], params[o[5] : o[5] + size], params[o[6] : o[6] + size]
        th, vr = params[o[7] : o[7] + size], params[o[8] : o[8] + size]
        for i in range(size):
            xi = x0[i] * g0
            if two:
                xi = xi + x1[i] * g1
            vi = a[i] * v[i] + c[i] * xi + b[i]
            if not spiking:
                z[i] = vi
                v[i] = vi
            elif vi > th[i]:
                z[i] = 1
                v[i] = vi - th[i] if sub else vr[i]
            else:
                z[i] = 0
                v[i] = vi
    if o[12] >= 0:
        _collect(z, lists, o[12])


@njit(cache=True)
def _lif_uniform1(z, v, x0, g0, a, b, c, th, vr, sub):
    for i in range(v.size):
        vi = a * v[i] + c * (x0[i] * g0) + b
        s = vi > th
        z[i] = 1.0 if s else 0.0
        v[i] = ((vi - th) if sub else vr) if s else vi


@njit(cache=True)
def _lif_uniform2(z, v, x0, g0, x1, g1, a, b, c, th, vr, sub):
    for i in range(v.size):
        vi = a * v[i] + c * (x0[i] * g0 + x1[i] * g1) + b
        s = vi > th
        z[i] = 1.0 if s else 0.0
        v[i] = ((vi - th) if sub else vr) if s else vi


@njit(cache=True)
def _add_channel_bias(y, bias, per):
    """``y[c * per + i] += bias[c]``, channel by channel (no division per element)."""
    for c in range(bias.size):
        b, plane = bias[c], y[c * per : (c + 1) * per]
        for i in range(per):
            plane[i] = plane[i] + b


@njit(cache=True)
def _add(y, x):
    for i in range(y.size):
        y[i] = y[i] + x[i]


@njit(cache=True)
def _mul(y, x, s):
    for i in range(y.size):
        y[i] = x[i] * s[i]


@njit(cache=True)
def _threshold(y, x, thr):
    for i in range(y.size):
        y[i] = 1 if x[i] > thr[i] else 0


@njit(cache=True)
def _leaky(v, x, a, b, c):
    """``v = a*v + c*x + b``, evaluated left to right as in the IR."""
    for i in range(v.size):
        v[i] = a[i] * v[i] + c[i] * x[i] + b[i]


@njit(cache=True)
def _cuba(v, cur, x, a_syn, c_syn, a_mem, c_mem, b_mem):
    for i in range(v.size):
        cur[i] = a_syn[i] * cur[i] + c_syn[i] * x[i]
        v[i] = a_mem[i] * v[i] + c_mem[i] * cur[i] + b_mem[i]


@njit(cache=True)
def _integrate(v, x, c):
    for i in range(v.size):
        v[i] = v[i] + c[i] * x[i]


@njit(cache=True)
def _spike(z, v, params, thr, vr, spiking, sub):
    """``z = v > v_threshold`` then reset; non-spiking neurons output ``v``."""
    size = v.size
    if not spiking:
        z[:] = v
        return
    th = params[thr : thr + size]
    for i in range(size):
        if v[i] > th[i]:
            z[i] = 1
            v[i] = v[i] - th[i] if sub else params[vr + i]
        else:
            z[i] = 0


# ------------------------------------------------------------------------------------- EGRU


@njit(cache=True)
def _egru(m, o, params, iparams):
    """One step of an EGRU layer for one sample (op row: see ``program.py``).

    The projections start from their biases and add the inputs' weight rows in ascending index
    (event mode: only nonzero inputs, so the recurrent one touches only the columns of units whose
    last ``y`` was an event); then the cell of ``spikeflow.backends.numba.egru_kernels._cell``, operation
    for operation. Returns the number of multiply-adds performed.
    """
    dst, src, n, n_in, s, geo = o[1], o[2], o[3], o[4], o[5], o[6]
    c, y = m[s : s + n], m[s + n : s + 2 * n]
    xp, hp = m[s + 2 * n : s + 5 * n], m[s + 5 * n : s + 8 * n]
    w_ih, lay_ih, ip_ih, ix_ih, b_ih = iparams[geo], iparams[geo + 1], iparams[geo + 2], iparams[geo + 3], iparams[geo + 4]
    w_hh, lay_hh, ip_hh, ix_hh, b_hh = iparams[geo + 5], iparams[geo + 6], iparams[geo + 7], iparams[geo + 8], iparams[geo + 9]
    theta, trace = iparams[geo + 10], iparams[geo + 11]
    xp[:] = params[b_ih : b_ih + 3 * n]
    ops = _weights_times(xp, m[src : src + n_in], params, iparams, w_ih, lay_ih, ip_ih, ix_ih)
    hp[:] = params[b_hh : b_hh + 3 * n]
    ops += _weights_times(hp, y, params, iparams, w_hh, lay_hh, ip_hh, ix_hh)  # y: last step's events
    _egru_cell(xp, hp, c, params[theta : theta + n], y)
    out = m[dst : dst + n]
    if trace < 0:
        out[:] = y
    else:
        a = params[trace]
        for i in range(n):
            out[i] = a * out[i] + (1.0 - a) * y[i]
    return ops


@njit(cache=True)
def _egru_cell(xp, hp, c, theta, y):
    """Gates, state ``c`` (updated in place, reset by subtraction) and events ``y``.

    The interpreter's copy of ``egru_kernels._cell`` (without zoneout and gate outputs): numba
    caches each compiled function by its own source file, so compiled code here must not call into
    another file or its cache would go stale when that file changes. The EGRU equivalence tests
    check the two bit for bit (float64) on every change.
    """
    n = c.shape[0]
    for i in range(n):
        ri = 1.0 / (1.0 + math.exp(-(xp[i] + hp[i])))
        ui = 1.0 / (1.0 + math.exp(-(xp[n + i] + hp[n + i])))
        gi = math.tanh(xp[2 * n + i] + ri * hp[2 * n + i])
        cti = ui * c[i] + (1.0 - ui) * gi
        if cti > theta[i]:
            y[i] = cti
            c[i] = cti - theta[i]
        else:
            y[i] = 0.0
            c[i] = cti


# ------------------------------------------------------------------------------ fixed point


@njit(cache=True)
def _sat(x, lo, hi, counts):
    if x > hi:
        counts[2] += 1
        return hi
    if x < lo:
        counts[2] += 1
        return lo
    return x


@njit(cache=True)
def _shift(x, frac):
    """Divide by 2**frac, rounding half up (arithmetic shift)."""
    if frac <= 0:
        return x << (-frac)
    return (x + (np.int64(1) << (frac - 1))) >> frac


@njit(cache=True)
def _run_fixed(ops, params, iparams, mem, tcount, inputs, rec_table, rec, event, counts, fmt):
    """The integer interpreter: values in state format (``fmt[2]`` fractional bits), weights and
    coefficients rescaled by rounding shifts, every result saturated to ``fmt[0]..fmt[1]``.

    fmt = [state_lo, state_hi, state_frac, coef_frac]; counts[2] += saturations. Dense, conv and
    pool ops keep their per-op weight fraction in the op row (column 12).
    """
    lo, hi, frac, cfrac = fmt[0], fmt[1], fmt[2], fmt[3]
    one = np.int64(1) << frac
    steps = inputs.shape[0]
    for b in range(mem.shape[0]):
        m = mem[b]
        for t in range(steps):
            tt = tcount[b]
            for k in range(ops.shape[0]):
                o = ops[k]
                code = o[0]
                if code == OP_INPUT:
                    for i in range(o[2]):
                        m[o[1] + i] = inputs[t, b, o[3] + i]
                elif code == OP_COPY:
                    for i in range(o[3]):
                        m[o[1] + i] = m[o[2] + i]
                elif code == OP_ADD:
                    for i in range(o[3]):
                        m[o[1] + i] = _sat(m[o[1] + i] + m[o[2] + i], lo, hi, counts)
                elif code == OP_DENSE:
                    counts[0] += _dense_accumulate(m, o, params, iparams, event)
                    for i in range(o[3]):
                        y = _shift(m[o[1] + i], o[12])
                        if o[6] >= 0:
                            y += params[o[6] + i]
                        m[o[1] + i] = _sat(y, lo, hi, counts)
                elif code == OP_CONV:
                    counts[0] += _conv_accumulate(m, o, params, iparams, event)
                    n_out, per = o[6], o[7]
                    for i in range(n_out):
                        y = _shift(m[o[1] + i], o[12])
                        if o[5] >= 0:
                            y += params[o[5] + i // per]
                        m[o[1] + i] = _sat(y, lo, hi, counts)
                elif code == OP_POOL:
                    counts[0] += _pool_accumulate(m, o, iparams, event)
                    n = o[4]
                    for i in range(o[5]):
                        y = m[o[1] + i]
                        if n > 0:  # round half up: floor(y / n + 1/2)
                            y = (2 * y + n) // (2 * n)
                        m[o[1] + i] = _sat(y, lo, hi, counts)
                elif code == OP_SCALE:
                    for i in range(o[3]):
                        m[o[1] + i] = _sat(_shift(m[o[2] + i] * params[o[4] + i], cfrac), lo, hi, counts)
                elif code == OP_THRESHOLD:
                    for i in range(o[3]):
                        m[o[1] + i] = one if m[o[2] + i] > params[o[4] + i] else 0
                elif code == OP_DELAY:
                    _delay(m, o, iparams, tt)
                elif code == OP_LIF:
                    dst, src, size, v, a, bb, c = o[1], o[2], o[3], o[4], o[5], o[6], o[7]
                    for i in range(size):
                        y = _shift(params[a + i] * m[v + i], cfrac) + _shift(params[c + i] * m[src + i], cfrac) + params[bb + i]
                        m[v + i] = _sat(y, lo, hi, counts)
                    _spike_fixed(m, params, dst, v, size, o[8], o[9], o[10], o[11], one, lo, hi, counts)
                    counts[1] += size
                elif code == OP_CUBA:
                    dst, src, size, v, cur = o[1], o[2], o[3], o[4], o[5]
                    a_syn, c_syn, a_mem, c_mem, b_mem = o[6], o[7], o[8], o[9], o[10]
                    for i in range(size):
                        y = _shift(params[a_syn + i] * m[cur + i], cfrac) + _shift(params[c_syn + i] * m[src + i], cfrac)
                        m[cur + i] = _sat(y, lo, hi, counts)
                        y = _shift(params[a_mem + i] * m[v + i], cfrac) + _shift(params[c_mem + i] * m[cur + i], cfrac) + params[b_mem + i]
                        m[v + i] = _sat(y, lo, hi, counts)
                    _spike_fixed(m, params, dst, v, size, o[11], o[12], o[13], o[14], one, lo, hi, counts)
                    counts[1] += size
                elif code == OP_IF:
                    dst, src, size, v, c = o[1], o[2], o[3], o[4], o[5]
                    for i in range(size):
                        m[v + i] = _sat(m[v + i] + _shift(params[c + i] * m[src + i], cfrac), lo, hi, counts)
                    _spike_fixed(m, params, dst, v, size, o[6], o[7], o[8], o[9], one, lo, hi, counts)
                    counts[1] += size
            _record(m, rec_table, rec, t, b)
            tcount[b] += 1


@njit(cache=True)
def _spike_fixed(m, params, dst, v, size, thr, vr, spiking, sub, one, lo, hi, counts):
    if not spiking:
        for i in range(size):
            m[dst + i] = m[v + i]
        return
    for i in range(size):
        if m[v + i] > params[thr + i]:
            m[dst + i] = one
            if sub:
                m[v + i] = _sat(m[v + i] - params[thr + i], lo, hi, counts)
            else:
                m[v + i] = params[vr + i]
        else:
            m[dst + i] = 0


# ------------------------------------------------------------------------- early exit
# Used by ``spikeflow/exit/runners.py``; here so that numba's per-file cache sees every change to the
# interpreter the driver calls. ``confidence`` is the one decoder of every backend (the torch
# runner and the calibration call it too), so exits are bit-identical across backends.

@njit(cache=True)
def confidence(acc, temperature):
    """``(max softmax(acc / temperature), argmax acc)``; first index wins ties."""
    best, arg = acc[0], 0
    for j in range(1, acc.shape[0]):
        if acc[j] > best:
            best, arg = acc[j], j
    total = 0.0
    for j in range(acc.shape[0]):
        total += math.exp((acc[j] - best) / temperature)
    return 1.0 / total, arg


@njit(cache=True)
def accumulate(acc, active, y, decay, temperature, conf, arg):
    """For rows ``active`` of ``acc``: ``acc = decay * acc + y`` (``y`` row ``i`` for sample
    ``active[i]``), then their confidence and prediction into ``conf[i]``, ``arg[i]``."""
    for i in range(active.shape[0]):
        b = active[i]
        for j in range(acc.shape[1]):
            acc[b, j] = decay * acc[b, j] + y[i, j]
        conf[i], arg[i] = confidence(acc[b], temperature)


@njit(cache=True)
def trajectories(outputs, decay, temperature, conf, pred):
    """Confidence and prediction after every step of ``outputs[T, N, C]`` (into ``conf``, ``pred``)."""
    acc = np.zeros(outputs.shape[2])
    for b in range(outputs.shape[1]):
        acc[:] = 0.0
        for t in range(outputs.shape[0]):
            for j in range(outputs.shape[2]):
                acc[j] = decay * acc[j] + outputs[t, b, j]
            conf[t, b], pred[t, b] = confidence(acc, temperature)


@njit(cache=True)
def exit_drive(ops, params, iparams, inputs, rule, event, mem, tcount, step_in, rec_table, rec, counts, exit_steps, preds, confs,
           scores):
    """Early exit: step each sample of ``inputs`` ``[T, B, n_input]`` alone, from rest, one
    :func:`_run_float` step at a time in one sample's scratch (``mem`` ``[1, M]``, ``step_in``
    ``[1, 1, n_input]``, ``rec`` ``[1, 1, C]`` recording the decoded output), decode after every
    step and stop at the policy's exit; the scratch is reused, so a run allocates nothing per
    sample. ``rule``: ``[last step, threshold, min_steps, decay, temperature]``. Returns -1, or
    the sample whose input has a NaN or inf in a step it reached (the run stops there)."""
    batch, n_in = inputs.shape[1], inputs.shape[2]
    last, threshold, min_steps, decay, temperature = int(rule[0]), rule[1], rule[2], rule[3], rule[4]
    n_cls = rec.shape[2]
    acc = np.zeros(n_cls)
    x = step_in[0, 0]
    for b in range(batch):
        mem[:] = 0
        tcount[:] = 0
        acc[:] = 0.0
        for t in range(last):
            for j in range(n_in):
                x[j] = inputs[t, b, j]
            if _nonfinite(x):  # only the steps read are checked: the rest never reaches the network
                return b
            _run_float(ops, params, iparams, mem, tcount, step_in, rec_table, rec, event, counts)
            for j in range(n_cls):
                acc[j] = decay * acc[j] + rec[0, 0, j]
            conf, arg = confidence(acc, temperature)
            step = t + 1
            if (step >= min_steps and conf >= threshold) or step == last:
                exit_steps[b], preds[b], confs[b] = step, arg, conf
                for j in range(n_cls):
                    scores[b, j] = acc[j]
                break
    return -1


@njit(cache=True)
def _nonfinite(x):
    """Whether ``x`` holds a NaN or inf (``x - x`` is 0 only for finite values; an integer count,
    unlike a float sum, vectorises)."""
    count = 0
    for i in range(x.size):
        count += (x[i] - x[i]) != 0.0
    return count != 0


# ------------------------------------------------------------------------- event input binning


@njit(cache=True)
def event_keys(bins, p, y, x, sample, n_samples, height, width, n_steps, rows, cols, at):
    """Write the row ``bin * n_samples + sample`` and the flat pixel ``(p * height + y) * width + x``
    of each event in the first ``n_steps`` bins to ``rows[at:]``, ``cols[at:]``; returns the end."""
    for i in range(bins.size):
        if bins[i] < n_steps:
            rows[at] = bins[i] * n_samples + sample
            cols[at] = (p[i] * height + y[i]) * width + x[i]
            at += 1
    return at


@njit(cache=True)
def bin_entries(rows, cols, n_rows, n_cols):
    """CSR ``(indptr, indices, counts)`` of the pairs ``(rows[i], cols[i])`` (``cols < n_cols``):
    each row's columns ascending, a repeated pair counted once with its multiplicity (what
    ``np.unique`` of the keys ``row * n_cols + col`` gives), in O(n + n_rows + n_cols): a stable
    counting sort by column, then by row."""
    n = rows.size
    by_col = np.empty(n, dtype=np.int64)
    start = np.zeros(n_cols + 1, dtype=np.int64)
    for i in range(n):
        start[cols[i] + 1] += 1
    for c in range(n_cols):
        start[c + 1] += start[c]
    for i in range(n):
        c = cols[i]
        by_col[start[c]] = i
        start[c] += 1
    row_start = np.zeros(n_rows + 1, dtype=np.int64)
    for i in range(n):
        row_start[rows[i] + 1] += 1
    for r in range(n_rows):
        row_start[r + 1] += row_start[r]
    fill = row_start[:-1].copy()
    ordered = np.empty(n, dtype=np.int64)
    for k in range(n):
        i = by_col[k]
        r = rows[i]
        ordered[fill[r]] = cols[i]
        fill[r] += 1
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    indices = np.empty(n, dtype=np.int64)
    counts = np.empty(n, dtype=np.float64)
    m = 0
    for r in range(n_rows):
        lo, hi = row_start[r], row_start[r + 1]
        for i in range(lo, hi):
            if i > lo and ordered[i] == ordered[i - 1]:
                counts[m - 1] += 1.0
            else:
                indices[m] = ordered[i]
                counts[m] = 1.0
                m += 1
        indptr[r + 1] = m
    return indptr, indices[:m], counts[:m]


announce_first_compile(globals())
