"""The integers of an export: neuron parameters and the synapse list of every projection.

Neuron parameters are computed exactly as the numba fixed-point lowering computes them
(:func:`spikeflow.ir.discretise.coefficients`, then :meth:`FixedPoint.quantise_role`), so the
exported arithmetic and ``sf.simulate(prog.graph, precision=prog.precision)`` share every integer.
A projection's synapses are ``(pre, post, weight, delay)`` over the flat indices of its two
populations: a pool in front of the weight layer maps each pre neuron to its window (windows do
not overlap), a convolution is expanded from its kernel and geometry.
"""

from __future__ import annotations

import math

import numpy as np

from spikeflow.ir import nodes as n
from spikeflow.ir.discretise import coefficients

NEURON_FIELDS = {
    "lif": ("a", "c", "b", "v_threshold", "v_reset"),
    "if": ("c", "v_threshold", "v_reset"),
    "cuba": ("a_syn", "c_syn", "a_mem", "c_mem", "b_mem", "v_threshold", "v_reset"),
}
ROLES = {"a": "coef", "c": "coef", "b": "state", "a_syn": "coef", "c_syn": "coef", "a_mem": "coef", "c_mem": "coef",
         "b_mem": "state", "v_threshold": "threshold", "v_reset": "state"}
MODEL = {n.LIF: "lif", n.LI: "lif", n.IF: "if", n.CubaLIF: "cuba", n.CubaLI: "cuba"}


def neuron_params(node, shape, dt: float, integration: str, fixed) -> tuple[str, dict[str, np.ndarray]]:
    """``(model, {field: int64 per neuron})`` of a neuron node in the target's fixed point."""
    model = MODEL[type(node)]
    coef = coefficients(node, dt, integration)
    size = math.prod(shape)
    out = {}
    for k in NEURON_FIELDS[model]:
        if k in ("v_threshold", "v_reset") and not node.spiking:
            out[k] = np.zeros(size, np.int64)
            continue
        values = np.broadcast_to(np.asarray(coef[k], np.float64), shape).reshape(-1)
        out[k], _ = fixed.quantise_role(values, ROLES[k])
    return model, out


def weight_ints(weight, frac: int) -> np.ndarray | tuple:
    """The integers of a dequantised weight (exact: the values are on the ``2**-frac`` grid)."""
    if hasattr(weight, "tocsr"):
        m = weight.tocsr()
        m.sort_indices()
        return m.indptr.astype(np.int64), m.indices.astype(np.int64), np.rint(m.data * 2.0**frac).astype(np.int64), m.shape
    return np.rint(np.asarray(weight, np.float64) * 2.0**frac).astype(np.int64)


def pre_to_input(n_pre: int, pool, pool_in) -> np.ndarray:
    """Flat weight-input index of each pre neuron (-1: outside every pool window)."""
    if pool is None:
        return np.arange(n_pre, dtype=np.int64)
    c, h, w = pool_in
    (kh, kw), (ph, pw) = tuple(pool.kernel_size), tuple(pool.padding)
    oh, ow = pool.output_shape(tuple(pool_in))[1:]
    ch, y, x = np.unravel_index(np.arange(n_pre), (c, h, w))
    py, px = (y + ph) // kh, (x + pw) // kw
    ok = (py < oh) & (px < ow)
    return np.where(ok, (ch * oh + py) * ow + px, -1).astype(np.int64)


def conv_triplets(node, in_shape, kernel: np.ndarray):
    """``(input, output, kernel index)`` of every nonzero connection of a Conv1d/Conv2d (flat indices)."""
    if isinstance(node, n.Conv1d):
        (c_in, length) = in_shape
        h, w = 1, length
        k = kernel[:, :, None, :]
        stride, padding, dilation = (1, *node.stride), (0, *node.padding), (1, *node.dilation)
    else:
        c_in, h, w = in_shape
        k, stride, padding, dilation = kernel, node.stride, node.padding, node.dilation
    c_out, cin_g, kh, kw = k.shape
    groups = int(node.groups)
    out_shape = node.output_shape(tuple(in_shape))
    oh, ow = (1, out_shape[1]) if isinstance(node, n.Conv1d) else out_shape[1:]
    co, cl, ky, kx, oy, ox = np.meshgrid(np.arange(c_out), np.arange(cin_g), np.arange(kh), np.arange(kw), np.arange(oh), np.arange(ow),
                                         indexing="ij", sparse=False)
    iy = oy * stride[0] - padding[0] + ky * dilation[0]
    ix = ox * stride[1] - padding[1] + kx * dilation[1]
    ci = (co // (c_out // groups)) * cin_g + cl
    kidx = ((co * cin_g + cl) * kh + ky) * kw + kx
    ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w) & (k.reshape(-1)[kidx] != 0)
    src = (ci * h + iy) * w + ix
    dst = (co * oh + oy) * ow + ox
    return src[ok].astype(np.int64), dst[ok].astype(np.int64), kidx[ok].astype(np.int64)


def projection_synapses(proj, n_pre: int, frac: int):
    """``(pre, post, weight, delay)`` int64 arrays of one projection, sorted by pre then post."""
    to_in = pre_to_input(n_pre, proj.pool, proj.pool_in)
    if proj.one_to_one:
        factors = np.rint(np.broadcast_to(np.asarray(proj.node.scale, np.float64), proj.in_shape).reshape(-1) * 2.0**frac).astype(np.int64)
        src = dst = np.nonzero(factors)[0]
        wts = factors[src]
    elif proj.conv:
        kernel = weight_ints(proj.node.weight, frac)
        src, dst, kidx = conv_triplets(proj.node, proj.in_shape, kernel)
        wts = kernel.reshape(-1)[kidx]
    else:
        w = weight_ints(proj.node.weight, frac)
        if isinstance(w, tuple):
            indptr, indices, data, _ = w
            dst = np.repeat(np.arange(indptr.size - 1, dtype=np.int64), np.diff(indptr))
            src, wts = indices, data
            keep = wts != 0
            src, dst, wts = src[keep], dst[keep], wts[keep]
        else:
            dst, src = np.nonzero(w)
            wts = w[dst, src]
    # input element -> the pre neurons that feed it (one each without a pool, a window with one)
    valid = np.nonzero(to_in >= 0)[0]
    by_input = np.argsort(to_in[valid], kind="stable")
    pre_sorted = valid[by_input]
    first = np.searchsorted(to_in[valid][by_input], src, side="left")
    last = np.searchsorted(to_in[valid][by_input], src, side="right")
    reps = last - first
    pre = pre_sorted[np.repeat(first, reps) + _ranges(reps)]
    post = np.repeat(dst, reps)
    wts = np.repeat(wts, reps)
    delay = proj.delays(n_pre)[pre]
    order = np.lexsort((post, pre))
    return pre[order], post[order], wts[order].astype(np.int64), delay[order].astype(np.int64)


def _ranges(counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(c) for c in counts])`` without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total, dtype=np.int64) - starts


def post_bias(proj, frac_state: int, n_post: int) -> np.ndarray | None:
    """The projection's bias per post neuron in state-format integers (None: no bias)."""
    bias = getattr(proj.node, "bias", None)
    if bias is None or isinstance(proj.node, n.Linear):
        return None
    b = np.rint(np.asarray(bias, np.float64) * 2.0**frac_state).astype(np.int64)
    if not np.any(b):
        return None
    return np.repeat(b, n_post // b.size) if proj.conv else b
