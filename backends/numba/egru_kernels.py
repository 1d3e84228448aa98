"""numba kernels of the EGRU: the event-ordered projection, one cell step, the fused BPTT scan.

Plain-array functions, no torch. The same ``_accumulate`` and ``_cell`` run in the training scan
and in the sparse inference runner (:mod:`spikeflow.backends.numba.egru`), so both perform the
same float operations in the same order: every projection starts from its bias and adds
``x[j] * W[:, j]`` for the nonzero ``x[j]`` in ascending ``j``. Skipping a zero input only skips
an exact ``+ 0``, so dense, event-driven and CSR weights give bit-identical sums.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from spikeflow._threads import announce_first_compile


@njit(cache=True)
def _accumulate(acc, wt, x):
    """``acc += sum_j x[j] * wt[j, :]`` over the nonzero ``x[j]``, ascending ``j``."""
    n = acc.shape[0]
    for j in range(x.shape[0]):
        v = x[j]
        if v != 0:
            row = wt[j]
            for i in range(n):
                acc[i] += v * row[i]


@njit(cache=True)
def _accumulate_csr(acc, indptr, indices, data, x):
    """As :func:`_accumulate` with ``wt`` in CSR (row ``j`` = targets of input ``j``)."""
    for j in range(x.shape[0]):
        v = x[j]
        if v != 0:
            for p in range(indptr[j], indptr[j + 1]):
                acc[indices[p]] += v * data[p]


@njit(cache=True)
def _cell(xp, hp, c_prev, theta, keep, r, u, g, ct, y, c):
    """One EGRU step for one sample from the projections ``xp`` (input) and ``hp`` (recurrent).

    Writes the gates ``r, u, g``, the pre-threshold state ``ct``, the events ``y`` and the state
    after reset ``c``; returns the number of events. ``keep[i]`` (zoneout) holds unit ``i``'s state.
    """
    n = c.shape[0]
    events = 0
    for i in range(n):
        ri = 1.0 / (1.0 + math.exp(-(xp[i] + hp[i])))
        ui = 1.0 / (1.0 + math.exp(-(xp[n + i] + hp[n + i])))
        gi = math.tanh(xp[2 * n + i] + ri * hp[2 * n + i])
        if keep[i]:
            cti = c_prev[i]
        else:
            cti = ui * c_prev[i] + (1.0 - ui) * gi
        r[i] = ri
        u[i] = ui
        g[i] = gi
        ct[i] = cti
        if cti > theta[i]:
            y[i] = cti
            c[i] = cti - theta[i]
            events += 1
        else:
            y[i] = 0.0
            c[i] = cti
    return events


@njit(cache=True, parallel=True)
def _project(x, wt, bias, out):
    """``out[t, b] = bias + x[t, b] @ wt`` in the event order (x: T,B,in; wt: in,out)."""
    T, B = x.shape[0], x.shape[1]
    for k in prange(T * B):
        t, b = k // B, k % B
        acc = out[t, b]
        acc[:] = bias
        _accumulate(acc, wt, x[t, b])


@njit(cache=True, parallel=True)
def _scan_forward(xp, wt_hh, b_hh, theta, c0, y0, keep, r, u, g, hg, ct, y, c):
    """The recurrent scan over ``T`` steps for every sample; fills the saved tensors for BPTT.

    xp: (T,B,3H) input projections with ``bias_ih``; wt_hh: (H,3H) = ``weight_hh.T``.
    """
    T, B, n = xp.shape[0], xp.shape[1], c0.shape[1]
    for b in prange(B):
        hp = np.empty(3 * n, dtype=xp.dtype)
        for t in range(T):
            c_prev = c0[b] if t == 0 else c[t - 1, b]
            y_prev = y0[b] if t == 0 else y[t - 1, b]
            hp[:] = b_hh
            _accumulate(hp, wt_hh, y_prev)
            hg[t, b] = hp[2 * n :]
            _cell(xp[t, b], hp, c_prev, theta, keep[t, b], r[t, b], u[t, b], g[t, b], ct[t, b], y[t, b], c[t, b])


@njit(cache=True, parallel=True)
def _scan_backward(w_hh, theta, gamma, eps, c0, keep, r, u, g, hg, ct, c, dy_out, de_out, dc_last, dxp, dhp, dtheta, dc0, dy0):
    """BPTT through :func:`_scan_forward` with the pseudo-derivative ``gamma*max(0, 1-eps|ct-theta|)``.

    Writes dxp (grad of the input projections), dhp (grad of ``weight_hh @ y_prev + bias_hh``),
    dtheta (B,H partial sums), dc0 and dy0 (grads of the initial state). Samples are independent,
    so one parallel region covers the whole scan (a region per step costs more than the step).
    """
    T, B, n = ct.shape[0], ct.shape[1], ct.shape[2]
    for b in prange(B):
        dc = dc_last[b].copy()
        dy_rec = np.zeros_like(dc)
        dth = np.zeros_like(dc)
        for t in range(T - 1, -1, -1):
            dxt, dht = dxp[t, b], dhp[t, b]
            for i in range(n):
                cti = ct[t, b, i]
                th = theta[i]
                v = cti - th
                e = 1.0 if v > 0 else 0.0
                hd = gamma * max(0.0, 1.0 - eps * abs(v))
                dyi = dy_out[t, b, i] + dy_rec[i]
                dci = dc[i]
                dct = dyi * (e + cti * hd) + dci * (1.0 - th * hd) + de_out[t, b, i] * hd
                dth[i] += -dyi * cti * hd + dci * (th * hd - e) - de_out[t, b, i] * hd
                if keep[t, b, i]:
                    dxt[i] = 0.0
                    dxt[n + i] = 0.0
                    dxt[2 * n + i] = 0.0
                    dht[i] = 0.0
                    dht[n + i] = 0.0
                    dht[2 * n + i] = 0.0
                    dc[i] = dct
                    continue
                c_prev = c0[b, i] if t == 0 else c[t - 1, b, i]
                ui, gi, ri = u[t, b, i], g[t, b, i], r[t, b, i]
                dag = dct * (1.0 - ui) * (1.0 - gi * gi)
                dau = dct * (c_prev - gi) * ui * (1.0 - ui)
                dar = dag * hg[t, b, i] * ri * (1.0 - ri)
                dxt[i] = dar
                dxt[n + i] = dau
                dxt[2 * n + i] = dag
                dht[i] = dar
                dht[n + i] = dau
                dht[2 * n + i] = dag * ri
                dc[i] = dct * ui
            dy_rec = np.dot(dht, w_hh)
        dc0[b] = dc
        dy0[b] = dy_rec
        dtheta[b] = dth


announce_first_compile(globals())
