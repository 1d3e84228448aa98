"""Slow, obvious NumPy simulation of a graph: one time step, one node, one element at a time.

This is the executable statement of the semantics in ``spikeflow.ir.discretise``; every fast path
(torch, numba-clock, numba-event) is tested against it. Keep sizes small when using it.
"""

from __future__ import annotations

import numpy as np

from spikeflow.ir import nodes as n
from spikeflow.ir.discretise import coefficients


def _conv(x, w, b, stride, padding, dilation, groups):
    """x: (C_in, *spatial); w: (C_out, C_in/groups, *kernel)."""
    spatial = x.shape[1:]
    xp = np.zeros((x.shape[0],) + tuple(s + 2 * p for s, p in zip(spatial, padding)))
    xp[(slice(None),) + tuple(slice(p, p + s) for s, p in zip(spatial, padding))] = x
    kernel = w.shape[2:]
    out_sp = tuple((s + 2 * p - d * (k - 1) - 1) // st + 1 for s, p, d, k, st in zip(spatial, padding, dilation, kernel, stride))
    c_out, c_in_g = w.shape[:2]
    per_group = c_out // groups
    y = np.zeros((c_out,) + out_sp)
    for co in range(c_out):
        g = co // per_group
        for pos in np.ndindex(*out_sp):
            acc = 0.0
            for ci in range(c_in_g):
                for k in np.ndindex(*kernel):
                    idx = tuple(p * st + kk * d for p, st, kk, d in zip(pos, stride, k, dilation))
                    acc += w[(co, ci) + k] * xp[(g * c_in_g + ci,) + idx]
            y[(co,) + pos] = acc + b[co]
    return y


def _pool(x, kernel, stride, padding, average):
    c, h, w = x.shape
    xp = np.zeros((c, h + 2 * padding[0], w + 2 * padding[1]))
    xp[:, padding[0] : padding[0] + h, padding[1] : padding[1] + w] = x
    oh = (h + 2 * padding[0] - kernel[0]) // stride[0] + 1
    ow = (w + 2 * padding[1] - kernel[1]) // stride[1] + 1
    y = np.zeros((c, oh, ow))
    for ch in range(c):
        for i in range(oh):
            for j in range(ow):
                window = xp[ch, i * stride[0] : i * stride[0] + kernel[0], j * stride[1] : j * stride[1] + kernel[1]]
                y[ch, i, j] = window.sum() / (kernel[0] * kernel[1]) if average else window.sum()
    return y


def _spike_reset(v, coef, reset):
    z = (v > coef["v_threshold"]).astype(np.float64)
    if reset == "zero":
        v = np.where(z > 0, coef["v_reset"] + 0 * v, v)
    else:
        v = np.where(z > 0, v - coef["v_threshold"], v)
    return z, v


def step_sample(node, x, state, coef, t):
    """Advance one node by one step for one sample; returns (output, new state)."""
    if isinstance(node, (n.Input, n.Output)):
        return x, state
    if isinstance(node, n.Affine):
        return node.weight @ x + node.bias, state
    if isinstance(node, n.Linear):
        return node.weight @ x, state
    if isinstance(node, n.Scale):
        return x * node.scale, state
    if isinstance(node, (n.Conv1d, n.Conv2d)):
        return _conv(x, node.weight, node.bias, node.stride, node.padding, node.dilation, node.groups), state
    if isinstance(node, (n.SumPool2d, n.AvgPool2d)):
        return _pool(x, node.kernel_size, node.stride, node.padding, isinstance(node, n.AvgPool2d)), state
    if isinstance(node, n.Flatten):
        return x.reshape(node.output_shape(x.shape)), state
    if isinstance(node, n.Threshold):
        return (x > node.threshold).astype(np.float64), state
    if isinstance(node, n.Delay):
        history = state if state is not None else []
        history = history + [x]
        steps = np.broadcast_to(coef["steps"], x.shape)
        y = np.zeros_like(x)
        for idx in np.ndindex(*x.shape):
            back = steps[idx]
            if len(history) - 1 - back >= 0:
                y[idx] = history[len(history) - 1 - back][idx]
        return y, history
    v = state["v"] if state is not None else np.zeros_like(x)
    if isinstance(node, (n.I, n.IF)):
        v = v + coef["c"] * x
    elif isinstance(node, (n.LI, n.LIF)):
        v = coef["a"] * v + coef["c"] * x + coef["b"]
    elif isinstance(node, (n.CubaLI, n.CubaLIF)):
        i = state["i"] if state is not None else np.zeros_like(x)
        i = coef["a_syn"] * i + coef["c_syn"] * x
        v = coef["a_mem"] * v + coef["c_mem"] * i + coef["b_mem"]
        if not node.spiking:
            return v, {"v": v, "i": i}
        z, v = _spike_reset(v, coef, node.reset)
        return z, {"v": v, "i": i}
    else:
        raise NotImplementedError(type(node).__name__)
    if not node.spiking:
        return v, {"v": v}
    z, v = _spike_reset(v, coef, node.reset)
    return z, {"v": v}


def simulate(graph, inputs, record_state: bool = False):
    """Run ``graph`` on ``inputs`` ([T, B, ...] array, or a dict by Input name).

    Returns ``{node name: [T, B, ...] output}`` for every node of the flattened graph, plus
    ``{name + ":v": membrane}`` for neurons when ``record_state``.
    """
    graph.validate()
    g = graph.flatten()
    if not isinstance(inputs, dict):
        (only,) = g.inputs
        inputs = {only: inputs}
    inputs = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}
    T, B = next(iter(inputs.values())).shape[:2]
    shapes = graph.shapes()
    delayed = set(g.delayed_edges())
    coefs = {k: coefficients(v, g.dt, g.integration) for k, v in g.nodes.items()}
    out = {k: np.zeros((T, B) + shapes[k]) for k in g.nodes}
    mem = {k: np.zeros((T, B) + shapes[k]) for k in g.nodes if g.nodes[k].stateful}
    for b in range(B):
        state = {k: None for k in g.nodes}
        for t in range(T):
            for name in g.order():
                sources = sorted(a for a, c in g.edges if c == name)
                if not sources:
                    x = inputs[name][t, b]
                else:
                    x = np.zeros(shapes[sources[0]])
                    for a in sources:
                        if (a, name) in delayed:
                            if t > 0:
                                x = x + out[a][t - 1, b]
                        else:
                            x = x + out[a][t, b]
                y, state[name] = step_sample(g.nodes[name], x, state[name], coefs[name], t)
                out[name][t, b] = y
                if name in mem and isinstance(state[name], dict):
                    mem[name][t, b] = state[name]["v"]
    if record_state:
        out.update({k + ":v": v for k, v in mem.items()})
    return out
