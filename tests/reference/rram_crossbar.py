"""Slow, obvious crossbar read: one cell at a time, Python floats.

A tile's column current is ``sum_j (G+_ij - G-_ij) / step * x_j`` with the conductances after drift
``G (t / t0)^-nu`` (each cell its own nu) and the compensation gain ``sum G(t0) / sum G(t)``; the
ADC rounds the current half up at ``2**frac`` level units, adds the bias and saturates.
"""

from __future__ import annotations

import math

import numpy as np


def drifted(g, nu, age_s: float, t0: float):
    out = np.empty_like(g)
    for idx in np.ndindex(g.shape):
        out[idx] = g[idx] * (max(age_s, t0) / t0) ** (-nu[idx])
    return out


def read(g_plus, g_minus, nu, x_codes, *, step: float, frac: int, lo: int, hi: int, age_s: float, t0: float,
         compensate: bool, bias=None):
    """``[B, n_out]`` ADC codes of one tile for input codes ``x_codes`` ``[B, n_in]``."""
    gp, gm = drifted(g_plus, nu[0], age_s, t0), drifted(g_minus, nu[1], age_s, t0)
    gain = 1.0
    if compensate:
        gain = (float(np.sum(g_plus)) + float(np.sum(g_minus))) / (float(np.sum(gp)) + float(np.sum(gm)))
    n_out, n_in = g_plus.shape
    out = np.zeros((len(x_codes), n_out), dtype=np.int64)
    for b in range(len(x_codes)):
        for i in range(n_out):
            acc = 0.0
            for j in range(n_in):
                acc += (gp[i, j] * gain - gm[i, j] * gain) / step * float(x_codes[b][j])
            y = math.floor(acc / 2.0**frac + 0.5) + (0 if bias is None else int(bias[i]))
            out[b, i] = min(max(y, lo), hi)
    return out


def quantise_code(x: float, bits: int, frac: int) -> int:
    """An input through the DAC: ``x * 2**frac`` rounded half up, saturated to ``bits``."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return min(max(math.floor(x * 2.0**frac + 0.5), lo), hi)
