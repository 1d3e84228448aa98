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


def patch(x, c_in: int, h: int, w: int, oy: int, ox: int, kernel, stride, padding, dilation) -> list:
    """The im2col input row of output position ``(oy, ox)``: ``x[c, iy, ix]`` for every tap in
    (channel, ky, kx) order, 0 on the padding. ``x`` is one sample, flat ``[c_in * h * w]``."""
    out = []
    for c in range(c_in):
        for ky in range(kernel[0]):
            for kx in range(kernel[1]):
                iy = oy * stride[0] - padding[0] + ky * dilation[0]
                ix = ox * stride[1] - padding[1] + kx * dilation[1]
                out.append(x[(c * h + iy) * w + ix] if 0 <= iy < h and 0 <= ix < w else 0)
    return out


def conv_read(g_plus, g_minus, nu, x_codes, geo: dict, rows, **read_options):
    """``[B, c_out * oh * ow]`` ADC codes of a convolution's row tile: the tile read once per output
    position with that position's patch (rows ``rows[0]:rows[1]``), outputs channel-major."""
    c_in, h, w = geo["in_shape"]
    c_out, oh, ow = geo["out_shape"]
    out = np.zeros((len(x_codes), c_out * oh * ow), dtype=np.int64)
    for oy in range(oh):
        for ox in range(ow):
            patches = [patch(x, c_in, h, w, oy, ox, geo["kernel"], geo["stride"], geo["padding"], geo["dilation"])[rows[0] : rows[1]]
                       for x in x_codes]
            codes = read(g_plus, g_minus, nu, patches, **read_options)
            for b in range(len(x_codes)):
                for co in range(c_out):
                    out[b, (co * oh + oy) * ow + ox] = codes[b, co]
    return out


def pool(x_codes, geo: dict, average: bool, lo: int, hi: int):
    """``[B, c * oh * ow]`` window sums of integer inputs (an average divides by the window,
    rounding half up), saturated: the digital periphery's pooling."""
    c, h, w = geo["in_shape"]
    _, oh, ow = geo["out_shape"]
    taps = geo["kernel"][0] * geo["kernel"][1]
    out = np.zeros((len(x_codes), c * oh * ow), dtype=np.int64)
    for b, x in enumerate(x_codes):
        for oy in range(oh):
            for ox in range(ow):
                window = patch(x, c, h, w, oy, ox, geo["kernel"], geo["stride"], geo["padding"], (1, 1))
                for ch in range(c):
                    y = sum(int(v) for v in window[ch * taps : (ch + 1) * taps])
                    if average:
                        y = math.floor(y / taps + 0.5)
                    out[b, (ch * oh + oy) * ow + ox] = min(max(y, lo), hi)
    return out
