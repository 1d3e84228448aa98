"""Slow, obvious NumPy reference of OTTT (online training through time) for a stack of
Affine -> LIF layers: a loop over time, each step's gradient derived by hand through space only,
weight gradients from presynaptic traces.

Per step ``t`` and layer ``l`` (zero reset, reset detached, scalar membrane decay ``a_l``):
``y = W s + b``, ``u = a v + c y + b_leak``, ``z = H(u - th)``; the backward of step ``t`` is
``g_u = g_z * sg(u - th)``, ``g_y = c g_u``, ``g_s = W^T g_y`` (no gradient through ``v``); the
trace ``tr = a tr + s`` and ``dW += g_y^T tr``, ``db += sum g_y``.
"""

from __future__ import annotations

import numpy as np


def ottt_grads(x, layers, g_out, derivative):
    """Gradients ``[(dW, db), ...]`` of OTTT.

    Args:
        x: input ``[T, B, N]``.
        layers: per layer ``dict(W, b, a, c, b_leak, th)`` (``a``, ``c``: scalars).
        g_out: dL/d(output spikes) ``[T, B, C]``, the loss gradient at each step.
        derivative: the surrogate derivative, applied elementwise.
    """
    T, B, _ = x.shape
    v = [np.zeros((B, p["W"].shape[0])) for p in layers]
    tr = [np.zeros((B, p["W"].shape[1])) for p in layers]
    grads = [(np.zeros_like(p["W"]), np.zeros_like(p["b"])) for p in layers]
    for t in range(T):
        s, inputs, us = x[t], [], []
        for k, p in enumerate(layers):
            inputs.append(s)
            u = p["a"] * v[k] + p["c"] * (s @ p["W"].T + p["b"]) + p["b_leak"]
            z = (u > p["th"]).astype(np.float64)
            v[k] = np.where(z > 0, 0.0, u)
            us.append(u)
            s = z
        g = g_out[t]
        for k in range(len(layers) - 1, -1, -1):
            p = layers[k]
            tr[k] = p["a"] * tr[k] + inputs[k]
            g_y = p["c"] * g * derivative(us[k] - p["th"])
            grads[k][0][...] += g_y.T @ tr[k]
            grads[k][1][...] += g_y.sum(0)
            g = g_y @ p["W"]
    return grads
