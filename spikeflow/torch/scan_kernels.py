"""Private numba kernels of the fused neuron scans: the whole time loop forward, and backward.

Plain-array functions over ``x[T, B, N]`` (time, batch, neurons) with per-neuron coefficient
vectors ``[N]``. The forward kernels evaluate exactly the update order of
:mod:`spikeflow.ir.discretise` (``u = a*v + c*x + b``, spike ``u > v_threshold``, then reset), so
float64 results are bit-identical to the reference. The backward kernels run the reverse-time
recurrence of the surrogate gradient and return ``dL/du`` (pre-reset membrane) for every step; the
cheap reductions to coefficient gradients are left to vectorised torch code.

Batch rows are independent, so the outer loop runs in parallel over the batch; the inner loop over
neurons is contiguous and vectorises.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

_FLAGS = dict(cache=True, nogil=True, parallel=True, error_model="numpy")

# Surrogate kinds understood inside the kernels (must match Surrogate.kernel_id); -1: take the
# derivative from a precomputed array.
SG_ARRAY, SG_ATAN, SG_FAST_SIGMOID, SG_SIGMOID, SG_TRIANGLE, SG_STRAIGHT = -1, 0, 1, 2, 3, 4


@njit(inline="always", error_model="numpy")
def _surrogate(kind, slope, height, x):
    if kind == SG_ATAN:
        y = 0.5 * math.pi * slope * x
        return 0.5 * slope / (1.0 + y * y)
    if kind == SG_FAST_SIGMOID:
        d = 1.0 + slope * abs(x)
        return 1.0 / (d * d)
    if kind == SG_SIGMOID:
        s = 1.0 / (1.0 + math.exp(-slope * x))
        return slope * s * (1.0 - s)
    if kind == SG_TRIANGLE:
        return height * max(0.0, 1.0 - slope * abs(x))
    return slope


@njit(**_FLAGS)
def leaky_forward(x, a, b, c, th, vr, integrator, spiking, subtract, out, u_save, save):
    """LIF / LI / IF / I over time. ``out``: spikes (spiking) or membrane; ``u_save``: pre-reset membrane."""
    T, B, N = x.shape
    for bb in prange(B):
        v = np.zeros(N, dtype=x.dtype)
        for t in range(T):
            xt = x[t, bb]
            ot = out[t, bb]
            for n in range(N):
                if integrator:
                    u = v[n] + c[n] * xt[n]
                else:
                    u = a[n] * v[n] + c[n] * xt[n] + b[n]
                if save:
                    u_save[t, bb, n] = u
                if spiking:
                    if u > th[n]:
                        ot[n] = 1
                        v[n] = u - th[n] if subtract else vr[n]
                    else:
                        ot[n] = 0
                        v[n] = u
                else:
                    ot[n] = u
                    v[n] = u


@njit(**_FLAGS)
def cuba_forward(x, a_syn, c_syn, a, b, c, th, vr, spiking, subtract, out, u_save, i_save, save):
    """CubaLIF / CubaLI over time: ``i = a_syn*i + c_syn*x``; ``u = a*v + c*i + b``."""
    T, B, N = x.shape
    for bb in prange(B):
        v = np.zeros(N, dtype=x.dtype)
        cur = np.zeros(N, dtype=x.dtype)
        for t in range(T):
            xt = x[t, bb]
            ot = out[t, bb]
            for n in range(N):
                i = a_syn[n] * cur[n] + c_syn[n] * xt[n]
                cur[n] = i
                u = a[n] * v[n] + c[n] * i + b[n]
                if save:
                    u_save[t, bb, n] = u
                    i_save[t, bb, n] = i
                if spiking:
                    if u > th[n]:
                        ot[n] = 1
                        v[n] = u - th[n] if subtract else vr[n]
                    else:
                        ot[n] = 0
                        v[n] = u
                else:
                    ot[n] = u
                    v[n] = u


@njit(inline="always", error_model="numpy")
def _pre_reset_grad(g_out, gv, u, th, vr, s, spiking, subtract, detach):
    """(dL/du, dL/dth) of one step given dL/d(output) ``g_out``, dL/d(post-reset v) ``gv``, and
    the surrogate derivative ``s`` at ``u - th``."""
    if not spiking:
        return g_out + gv, 0.0 * gv
    z = u > th
    g_spike = g_out
    if not detach:  # the reset also depends on the spike
        g_spike = g_spike + gv * (-th if subtract else vr - u)
    gs = g_spike * s
    if subtract:
        return gs + gv, -gs - gv if z else -gs
    return gs + (0.0 * gv if z else gv), -gs


@njit(**_FLAGS)
def leaky_backward(g_out, u, a, th, vr, integrator, spiking, subtract, detach, sg_kind, sg_slope, sg_height, sg, g_u, g_th):
    """Reverse-time recurrence: fills ``g_u[T, B, N]`` = dL/du and ``g_th[B, N]`` = dL/dth."""
    T, B, N = g_out.shape
    for bb in prange(B):
        gv = np.zeros(N, dtype=g_out.dtype)
        gth = g_th[bb]
        for t in range(T - 1, -1, -1):
            go = g_out[t, bb]
            ut = u[t, bb]
            gut = g_u[t, bb]
            for n in range(N):
                s = 0.0
                if spiking:
                    s = sg[t, bb, n] if sg_kind == SG_ARRAY else _surrogate(sg_kind, sg_slope, sg_height, ut[n] - th[n])
                gu, gt = _pre_reset_grad(go[n], gv[n], ut[n], th[n], vr[n], s, spiking, subtract, detach)
                gut[n] = gu
                gth[n] += gt
                gv[n] = gu if integrator else a[n] * gu


@njit(**_FLAGS)
def cuba_backward(g_out, u, a_syn, a, c, th, vr, spiking, subtract, detach, sg_kind, sg_slope, sg_height, sg, g_u, g_i, g_th):
    """Reverse-time recurrence of the current-based neurons: fills dL/du, dL/di and dL/dth."""
    T, B, N = g_out.shape
    for bb in prange(B):
        gv = np.zeros(N, dtype=g_out.dtype)
        gi = np.zeros(N, dtype=g_out.dtype)
        gth = g_th[bb]
        for t in range(T - 1, -1, -1):
            go = g_out[t, bb]
            ut = u[t, bb]
            for n in range(N):
                s = 0.0
                if spiking:
                    s = sg[t, bb, n] if sg_kind == SG_ARRAY else _surrogate(sg_kind, sg_slope, sg_height, ut[n] - th[n])
                gu, gt = _pre_reset_grad(go[n], gv[n], ut[n], th[n], vr[n], s, spiking, subtract, detach)
                g_u[t, bb, n] = gu
                gth[n] += gt
                gi[n] = c[n] * gu + a_syn[n] * gi[n]
                g_i[t, bb, n] = gi[n]
                gv[n] = a[n] * gu


def set_threads(n: int) -> None:
    """Use ``n`` threads in the kernels (bounded by numba's configured maximum)."""
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
