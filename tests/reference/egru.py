"""Slow, obvious NumPy EGRU: one layer, loop over time and samples, and hand-derived BPTT.

The executable spec of :class:`spikeflow.ir.egru.EGRU` (torch.nn.GRU gate layout r, u, g):
``r = σ(W_r x + b_r + R_r y' + c_r)``, ``u = σ(...)``, ``g = tanh(W_g x + b_g + r (R_g y' + c_g))``,
``ct = u c' + (1-u) g``, ``e = ct > θ``, ``y = ct e``, ``c = ct - θ e``; the event's derivative is
the pseudo-derivative ``γ max(0, 1 - ε|ct - θ|)``.
"""

from __future__ import annotations

import numpy as np


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def forward(p: dict, x: np.ndarray, c0: np.ndarray | None = None, y0: np.ndarray | None = None) -> dict:
    """Run one layer over ``x`` (T, B, in); returns y, e, ct, c and the gates, each (T, B, H)."""
    T, B = x.shape[:2]
    n = p["weight_hh"].shape[1]
    c_prev = np.zeros((B, n)) if c0 is None else c0.copy()
    y_prev = np.zeros((B, n)) if y0 is None else y0.copy()
    keys = ("r", "u", "g", "hg", "ct", "e", "y", "c")
    out = {key: np.zeros((T, B, n)) for key in keys}
    for t in range(T):
        for b in range(B):
            xi = p["weight_ih"] @ x[t, b] + p["bias_ih"]
            hi = p["weight_hh"] @ y_prev[b] + p["bias_hh"]
            r = sigmoid(xi[:n] + hi[:n])
            u = sigmoid(xi[n : 2 * n] + hi[n : 2 * n])
            g = np.tanh(xi[2 * n :] + r * hi[2 * n :])
            ct = u * c_prev[b] + (1 - u) * g
            e = (ct > p["threshold"]).astype(float)
            vals = dict(r=r, u=u, g=g, hg=hi[2 * n :], ct=ct, e=e, y=ct * e, c=ct - p["threshold"] * e)
            for key in keys:
                out[key][t, b] = vals[key]
        c_prev, y_prev = out["c"][t].copy(), out["y"][t].copy()
    return out


def backward(p: dict, x: np.ndarray, fw: dict, dy: np.ndarray, dc_last: np.ndarray, gamma: float, eps: float,
             c0: np.ndarray | None = None, y0: np.ndarray | None = None) -> dict:
    """Gradients of ``sum(dy * y) + sum(dc_last * c[-1])`` for every parameter, ``x``, ``c0``, ``y0``."""
    T, B = x.shape[:2]
    n = p["weight_hh"].shape[1]
    c0 = np.zeros((B, n)) if c0 is None else c0
    y0 = np.zeros((B, n)) if y0 is None else y0
    grads = {name: np.zeros_like(v) for name, v in p.items()}
    grads["x"] = np.zeros_like(x)
    th = p["threshold"]
    dc = dc_last.copy()
    dy_rec = np.zeros((B, n))
    for t in reversed(range(T)):
        for b in range(B):
            ct, e = fw["ct"][t, b], fw["e"][t, b]
            r, u, g, hg = fw["r"][t, b], fw["u"][t, b], fw["g"][t, b], fw["hg"][t, b]
            c_prev = c0[b] if t == 0 else fw["c"][t - 1, b]
            y_prev = y0[b] if t == 0 else fw["y"][t - 1, b]
            hd = gamma * np.maximum(0.0, 1.0 - eps * np.abs(ct - th))
            dyt = dy[t, b] + dy_rec[b]
            # y = ct * e, c = ct - th * e, de/dct = hd = -de/dth
            dct = dyt * (e + ct * hd) + dc[b] * (1 - th * hd)
            grads["threshold"] += dyt * (-ct * hd) + dc[b] * (-e + th * hd)
            du, dg = dct * (c_prev - g), dct * (1 - u)
            dag = dg * (1 - g**2)
            dar = dag * hg * r * (1 - r)
            dau = du * u * (1 - u)
            dxi = np.concatenate([dar, dau, dag])
            dhi = np.concatenate([dar, dau, dag * r])
            grads["weight_ih"] += np.outer(dxi, x[t, b])
            grads["bias_ih"] += dxi
            grads["weight_hh"] += np.outer(dhi, y_prev)
            grads["bias_hh"] += dhi
            grads["x"][t, b] = p["weight_ih"].T @ dxi
            dy_rec[b] = p["weight_hh"].T @ dhi
            dc[b] = dct * u
    grads["c0"], grads["y0"] = dc, dy_rec
    return grads
