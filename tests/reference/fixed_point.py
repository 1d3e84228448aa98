"""Slow, obvious fixed-point simulation: Python integers, one element at a time.

The statement of the integer semantics in ``spikeflow.backends.numba.fixed_point``: values in the
state format, products brought back by a rounding shift (half up), every result saturated to the
state width and each saturation counted. Parameters are quantised here with the same rules
(round half up, saturate; weights get per node as many fractional bits as fit).
"""

from __future__ import annotations

import math

import numpy as np

from spikeflow.ir import nodes as n
from spikeflow.ir.discretise import coefficients


def quantise(x: float, bits: int, frac: int) -> int:
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return min(max(math.floor(x * 2.0**frac + 0.5), lo), hi)


def weight_frac(weights, bits: int) -> int:
    top = max((abs(float(w)) for w in np.ravel(weights)), default=0.0)
    if top == 0.0:
        return bits - 1
    frac = bits - 1
    while top * 2.0**frac > 2 ** (bits - 1) - 1:
        frac -= 1
    while top * 2.0 ** (frac + 1) <= 2 ** (bits - 1) - 1:
        frac += 1
    return frac


def shift(x: int, frac: int) -> int:
    return x << -frac if frac <= 0 else (x + (1 << (frac - 1))) >> frac


class _Sat:
    def __init__(self, bits):
        self.lo, self.hi, self.count = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, 0

    def __call__(self, x: int) -> int:
        if x > self.hi or x < self.lo:
            self.count += 1
            return self.hi if x > self.hi else self.lo
        return x


def simulate(graph, inputs, fmt):
    """Run ``graph`` on float ``inputs`` [T, B, ...] with FixedPoint ``fmt``.

    Returns ({node: float [T, B, ...] output (dequantised)}, number of runtime saturations).
    """
    g = graph.flatten()
    shapes = g.shapes()
    order = g.order()
    delayed = set(g.delayed_edges())
    sat = _Sat(fmt.state_bits)
    sf, cf = fmt.state_frac, fmt.coef_frac
    one = 1 << sf
    T, B = inputs.shape[:2]
    out = {k: np.zeros((T, B, math.prod(shapes[k])), dtype=object) for k in order}

    def q(values, size, role, frac=None):
        flat = np.broadcast_to(np.asarray(values, dtype=np.float64), size).reshape(-1)
        bits = {"state": fmt.state_bits, "coef": fmt.coef_bits, "threshold": fmt.threshold_bits, "weight": fmt.weight_bits}[role]
        f = {"state": sf, "coef": cf, "threshold": sf, "weight": frac}[role]
        return [quantise(v, bits, f) for v in flat]

    params = {}
    for name in order:
        node, shape = g.nodes[name], shapes[name]
        c = coefficients(node, g.dt, g.integration)
        p = {}
        if isinstance(node, (n.Affine, n.Linear, n.Conv1d, n.Conv2d)):
            p["wf"] = fmt.weight_frac if fmt.weight_frac is not None else weight_frac(node.weight, fmt.weight_bits)
            p["w"] = np.array(q(node.weight, node.weight.shape, "weight", p["wf"]), dtype=object).reshape(node.weight.shape)
            if hasattr(node, "bias"):
                p["b"] = q(node.bias, node.bias.shape, "state")
        for key in ("a", "c", "a_syn", "c_syn", "a_mem", "c_mem"):
            if key in c:
                p[key] = q(c[key], shape, "coef")
        for key in ("b", "b_mem", "v_reset"):
            if key in c and not isinstance(node, (n.Affine, n.Linear)):
                p[key] = q(c[key], shape, "state")
        if "v_threshold" in c:
            p["thr"] = q(c["v_threshold"], shape, "threshold")
        if isinstance(node, n.Scale):
            p["s"] = q(node.scale, shape, "coef")
        if isinstance(node, n.Threshold):
            p["thr"] = q(node.threshold, shape, "threshold")
        if isinstance(node, n.Delay):
            p["steps"] = np.broadcast_to(c["steps"], shape).reshape(-1)
        params[name] = p

    for b in range(B):
        state = {k: {"v": [0] * out[k].shape[2], "i": [0] * out[k].shape[2]} for k in order}
        for t in range(T):
            for name in order:
                node, p = g.nodes[name], params[name]
                sources = sorted(a for a, d in g.edges if d == name)
                if not sources:
                    out[name][t, b] = [quantise(v, fmt.state_bits, sf) for v in np.ravel(inputs[t, b])]
                    continue
                x = None
                for a in sources:
                    value = list(out[a][t - 1, b]) if (a, name) in delayed else list(out[a][t, b])
                    if (a, name) in delayed and t == 0:
                        value = [0] * len(value)
                    x = value if x is None else [sat(u + w) for u, w in zip(x, value)]
                out[name][t, b] = _step(node, p, x, state[name], shapes[name], shapes[sources[0]], sat, sf, cf, one)
    floats = {k: (v.astype(np.float64) / one).reshape((T, B) + shapes[k]) for k, v in out.items()}
    return floats, sat.count


def _step(node, p, x, st, shape, in_shape, sat, sf, cf, one):
    size = math.prod(shape)
    if isinstance(node, (n.Output, n.Flatten)):
        return list(x)
    if isinstance(node, (n.Affine, n.Linear)):
        w = p["w"]
        return [sat(shift(sum(w[i, j] * x[j] for j in range(len(x))), p["wf"]) + (p["b"][i] if "b" in p else 0)) for i in range(size)]
    if isinstance(node, n.Scale):
        return [sat(shift(x[i] * p["s"][i], cf)) for i in range(size)]
    if isinstance(node, (n.Conv1d, n.Conv2d)):
        return _conv(node, p, x, in_shape, shape, sat)
    if isinstance(node, (n.SumPool2d, n.AvgPool2d)):
        return _pool(node, x, in_shape, shape, sat)
    if isinstance(node, n.Threshold):
        return [one if x[i] > p["thr"][i] else 0 for i in range(size)]
    if isinstance(node, n.Delay):
        st.setdefault("hist", []).append(list(x))
        hist = st["hist"]
        return [hist[len(hist) - 1 - int(p["steps"][i])][i] if len(hist) - 1 - int(p["steps"][i]) >= 0 else 0 for i in range(size)]
    v = st["v"]
    for i in range(size):
        if isinstance(node, (n.I, n.IF)):
            v[i] = sat(v[i] + shift(p["c"][i] * x[i], cf))
        elif isinstance(node, (n.LI, n.LIF)):
            v[i] = sat(shift(p["a"][i] * v[i], cf) + shift(p["c"][i] * x[i], cf) + p["b"][i])
        else:
            cur = st["i"]
            cur[i] = sat(shift(p["a_syn"][i] * cur[i], cf) + shift(p["c_syn"][i] * x[i], cf))
            v[i] = sat(shift(p["a_mem"][i] * v[i], cf) + shift(p["c_mem"][i] * cur[i], cf) + p["b_mem"][i])
    if not node.spiking:
        return list(v)
    z = []
    for i in range(size):
        if v[i] > p["thr"][i]:
            z.append(one)
            v[i] = sat(v[i] - p["thr"][i]) if node.reset == "subtract" else p["v_reset"][i]
        else:
            z.append(0)
    return z


def _conv(node, p, x, in_shape, shape, sat):
    w = p["w"] if isinstance(node, n.Conv2d) else p["w"][:, :, None, :]
    if isinstance(node, n.Conv1d):
        in_shape, shape = (in_shape[0], 1, in_shape[1]), (shape[0], 1, shape[1])
        stride, pad, dil = (1, *node.stride), (0, *node.padding), (1, *node.dilation)
    else:
        stride, pad, dil = node.stride, node.padding, node.dilation
    c_in, h, wd = in_shape
    c_out, oh, ow = shape
    cin_g, per_group = c_in // node.groups, c_out // node.groups
    xs = np.array(x, dtype=object).reshape(in_shape)
    y = []
    for co in range(c_out):
        for oy in range(oh):
            for ox in range(ow):
                acc = 0
                for cl in range(cin_g):
                    for ky in range(w.shape[2]):
                        for kx in range(w.shape[3]):
                            iy, ix = oy * stride[0] - pad[0] + ky * dil[0], ox * stride[1] - pad[1] + kx * dil[1]
                            if 0 <= iy < h and 0 <= ix < wd:
                                acc += w[co, cl, ky, kx] * xs[(co // per_group) * cin_g + cl, iy, ix]
                y.append(sat(shift(acc, p["wf"]) + p["b"][co]))
    return y


def _pool(node, x, in_shape, shape, sat):
    xs = np.array(x, dtype=object).reshape(in_shape)
    (c, h, wd), (_, oh, ow) = in_shape, shape
    kh, kw = node.kernel_size
    y = []
    for ch in range(c):
        for oy in range(oh):
            for ox in range(ow):
                s = 0
                for ky in range(kh):
                    for kx in range(kw):
                        iy, ix = oy * node.stride[0] - node.padding[0] + ky, ox * node.stride[1] - node.padding[1] + kx
                        if 0 <= iy < h and 0 <= ix < wd:
                            s += xs[ch, iy, ix]
                if isinstance(node, n.AvgPool2d):
                    s = (2 * s + kh * kw) // (2 * kh * kw)
                y.append(sat(s))
    return y
