"""Private numba kernels of the fused neuron scans: the whole time loop forward, and backward.

Plain-array functions over ``x[T, B, N]`` (time, batch, neurons) with per-neuron coefficient
vectors ``[N]``. The state arrays (``v_state``, ``i_state`` ``[B, N]``) hold the state before the
first step on entry and the state after the last step on return, so a sequence can run in chunks. The forward kernels evaluate exactly the update order of
:mod:`spikeflow.ir.discretise` (``u = a*v + c*x + b``, spike ``u > v_threshold``, then reset), so
float64 results are bit-identical to the reference. An integrator (I, IF) runs as ``a = 1``,
``b = 0``: ``1*v`` is exactly ``v`` and adding ``0`` changes at most the sign of a zero.

The backward kernels run the reverse-time recurrence of the surrogate gradient, evaluating the
surrogate derivative row by row (or reading it from an array for user-defined surrogates), and
return ``dL/du`` (pre-reset membrane) times ``scale`` for every step, plus ``dL/dth``. Their state
arrays (``gv_state``, ``gi_state``) hold the gradient w.r.t. the final state on entry and the
gradient w.r.t. the initial state on return.

Batch rows are independent, so the outer loop runs in parallel over the batch. Inner loops run over
whole row slices with mode flags tested outside them, which is what lets LLVM vectorise them.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from spikeflow._threads import announce_first_compile

# Batch rows are independent and each is computed by one thread in a fixed order, so results do not
# depend on the thread count. On a heavily oversubscribed machine parallel regions can stall: set
# NUMBA_NUM_THREADS=1 there.
_FLAGS = dict(cache=True, nogil=True, parallel=True, error_model="numpy")

# Surrogates evaluated inside the backward kernels (see spikeflow.torch.functional); SG_ARRAY:
# the derivative comes precomputed in an array (user-defined surrogates).
SG_ARRAY, SG_ATAN, SG_FAST_SIGMOID, SG_SIGMOID, SG_TRIANGLE, SG_STRAIGHT = -1, 0, 1, 2, 3, 4


@njit(inline="always")
def _surrogate_row(kind, slope, height, u, th, out):
    """``out[n] = derivative(u[n] - th[n])`` over one row for a built-in surrogate ``kind``."""
    half_pi_slope = 0.5 * math.pi * slope
    if kind == SG_ATAN:
        for n in range(u.shape[0]):
            y = half_pi_slope * (u[n] - th[n])
            out[n] = 0.5 * slope / (1.0 + y * y)
    elif kind == SG_FAST_SIGMOID:
        for n in range(u.shape[0]):
            d = 1.0 + slope * abs(u[n] - th[n])
            out[n] = 1.0 / (d * d)
    elif kind == SG_SIGMOID:
        for n in range(u.shape[0]):
            s = 1.0 / (1.0 + math.exp(-slope * (u[n] - th[n])))
            out[n] = slope * s * (1.0 - s)
    elif kind == SG_TRIANGLE:
        for n in range(u.shape[0]):
            out[n] = height * max(0.0, 1.0 - slope * abs(u[n] - th[n]))
    else:
        for n in range(u.shape[0]):
            out[n] = slope


@njit(inline="always")
def _fire(ut, ot, v, th, vr, spiking, subtract):
    """One step's output and new membrane from the pre-reset membrane ``ut``: the membrane itself
    (non-spiking), or spikes with subtractive or to-``vr`` reset. Inlined into each scan."""
    N = ut.shape[0]
    if not spiking:
        for n in range(N):
            ot[n] = ut[n]
            v[n] = ut[n]
    elif subtract:
        for n in range(N):
            z = ut[n] > th[n]
            ot[n] = 1.0 if z else 0.0
            v[n] = ut[n] - th[n] if z else ut[n]
    else:
        for n in range(N):
            z = ut[n] > th[n]
            ot[n] = 1.0 if z else 0.0
            v[n] = vr[n] if z else ut[n]


@njit(inline="always")
def _loop_input(xt, r, q, loop, delayed, order, xin):
    """``xin`` = the input row ``xt`` plus the loop terms of this step (``r``: the one-step loop's,
    ``q[0]``: the two-step loop's) in the graph's order: ``order`` 0: ``(x + r) + q``, 1: ``(x +
    q) + r``, 2: ``x + (r + q)``; a single term: ``x + term``."""
    N = xt.shape[0]
    if loop and delayed:
        if order == 0:
            for n in range(N):
                xin[n] = (xt[n] + r[n]) + q[0, n]
        elif order == 1:
            for n in range(N):
                xin[n] = (xt[n] + q[0, n]) + r[n]
        else:
            for n in range(N):
                xin[n] = xt[n] + (r[n] + q[0, n])
    elif loop:
        for n in range(N):
            xin[n] = xt[n] + r[n]
    elif delayed:
        for n in range(N):
            xin[n] = xt[n] + q[0, n]
    else:
        xin[:] = xt


@njit(inline="always")
def _loop_advance(ot, r, q, d, e, loop, delayed):
    """After a step with output ``ot``: the loop terms of the coming steps."""
    if loop:
        for n in range(ot.shape[0]):
            r[n] = ot[n] * d[n]
    if delayed:
        for n in range(ot.shape[0]):
            q[0, n] = q[1, n]
            q[1, n] = ot[n] * e[n]


@njit(**_FLAGS)
def leaky_forward(x, a, b, c, th, vr, spiking, subtract, out, u_save, v_state, loop, d, r0, delayed, e, q0, order):
    """LIF / LI / IF / I over time. ``out``: spikes (spiking) or membrane; ``u_save``: pre-reset
    membrane (a ``[1, B, N]`` scratch when it is not kept); ``v_state``: membrane in and out.

    ``loop``: the neuron's own output comes back one step later through the gain ``d`` (a
    ``X -> Scale -> X`` self-loop, e.g. snnTorch's late reset): the input of step ``t`` is
    ``x[t] + d*out[t-1]``, added in that order as the graph sums its edges; ``r0[B, N]`` is the
    loop's term at the first step (the carried value of the previous chunk, or zeros).
    ``delayed``: it also (or only) comes back two steps later through the gain ``e`` (a loop
    through a one-step Delay), ``q0[2, B, N]`` its terms at the first two steps; ``order``: how the
    terms join the input (:func:`_loop_input`)."""
    T, B, N = x.shape
    keep = u_save.shape[0] == T
    for bb in prange(B):
        v = v_state[bb].copy()  # a private row: no aliasing with the outputs, so the loops vectorise
        r = r0[bb].copy()
        q = q0[:, bb].copy()
        xin = np.zeros(N, dtype=x.dtype)
        for t in range(T):
            xt = x[t, bb]
            ot = out[t, bb]
            ut = u_save[t if keep else 0, bb]
            if loop or delayed:
                _loop_input(xt, r, q, loop, delayed, order, xin)
                for n in range(N):
                    ut[n] = a[n] * v[n] + c[n] * xin[n] + b[n]
            else:
                for n in range(N):
                    ut[n] = a[n] * v[n] + c[n] * xt[n] + b[n]
            _fire(ut, ot, v, th, vr, spiking, subtract)
            _loop_advance(ot, r, q, d, e, loop, delayed)
        v_state[bb, :] = v


@njit(**_FLAGS)
def cuba_forward(x, a_syn, c_syn, a, b, c, th, vr, spiking, subtract, out, u_save, i_save, v_state, i_state,
                 loop, d, r0, delayed, e, q0, order):
    """CubaLIF / CubaLI over time: ``i = a_syn*i + c_syn*x``; ``u = a*v + c*i + b``.

    ``loop``: the output comes back one step later through the gain ``d`` (a ``X -> Scale -> X``
    self-loop), ``r0[B, N]`` its term at the first step; ``delayed``: it comes back two steps later
    through the gain ``e`` (a loop through a one-step Delay, e.g. the tail of snnTorch
    ``Synaptic``'s late reset), ``q0[2, B, N]`` its terms at the first two steps; ``order``: how
    the terms join the input (:func:`_loop_input`)."""
    T, B, N = x.shape
    keep = u_save.shape[0] == T
    for bb in prange(B):
        v = v_state[bb].copy()
        cur = i_state[bb].copy()
        xin = np.zeros(N, dtype=x.dtype)
        r = r0[bb].copy()  # the loop's term of the coming step
        q = q0[:, bb].copy()  # the delayed loop's terms of the coming step and the one after
        for t in range(T):
            xt = x[t, bb]
            ot = out[t, bb]
            ut = u_save[t if keep else 0, bb]
            it = i_save[t if keep else 0, bb]
            _loop_input(xt, r, q, loop, delayed, order, xin)
            for n in range(N):
                cur[n] = a_syn[n] * cur[n] + c_syn[n] * xin[n]
                it[n] = cur[n]
                ut[n] = a[n] * v[n] + c[n] * cur[n] + b[n]
            _fire(ut, ot, v, th, vr, spiking, subtract)
            _loop_advance(ot, r, q, d, e, loop, delayed)
        v_state[bb, :] = v
        i_state[bb, :] = cur


@njit(inline="always")
def _spiking_grads(go, gv, u, sg, th, vr, gu, gth, f_sub, f_keep):
    """One step of the spiking backward over a row: fills ``gu`` = dL/du, adds dL/dth to ``gth``.

    Reset as ``v = u + z*(vr - u)`` (zero) or ``v = u - z*th`` (subtract); ``f_sub`` selects the
    mode and ``f_keep`` (0 when the reset is detached) keeps the reset's dependence on ``z``.
    """
    for n in range(go.shape[0]):
        z = 1.0 if u[n] > th[n] else 0.0
        dv_dz = f_sub * (-th[n]) + (1.0 - f_sub) * (vr[n] - u[n])
        gs = (go[n] + f_keep * gv[n] * dv_dz) * sg[n]
        gu[n] = gs + gv[n] * (f_sub + (1.0 - f_sub) * (1.0 - z))
        gth[n] += -gs - f_sub * z * gv[n]


@njit(inline="always")
def _loop_grads(gx, loop, d, e, near, far, gd, ge, y, t, bb):
    """The loops' backward step, given ``gx`` = dL/dx[t]: the shares ``d * gx`` (one step) and
    ``e * gx`` (two steps) that earlier outputs receive (``near``: the next step back's, ``far``:
    the one after), and, when wanted (``gd`` / ``ge`` of length > 0), dL/dd += ``gx * y[t-1]`` and
    dL/de += ``gx * y[t-2]``."""
    N = gx.shape[0]
    if loop:
        for n in range(N):
            near[n] = d[n] * gx[n] + far[n]
            far[n] = e[n] * gx[n]
    if gd.shape[0] and t > 0:
        before = y[t - 1, bb]
        for n in range(N):
            gd[n] += gx[n] * before[n]
    if ge.shape[0] and t > 1:
        before = y[t - 2, bb]
        for n in range(N):
            ge[n] += gx[n] * before[n]


@njit(**_FLAGS)
def leaky_backward(g_out, u, sg_kind, sg_slope, sg_height, sg, a, th, vr, scale, spiking, subtract, detach, g_u, g_th, gv_state,
                   loop, d, e, c, y, g_d, g_e):
    """Reverse-time recurrence: ``g_u[T, B, N]`` = scale * dL/du, ``g_th[B, N]`` += dL/dth;
    ``gv_state``: dL/d(final membrane) in, dL/d(initial membrane) out. ``loop``: the loops of
    :func:`leaky_forward` (gains ``d``, one step, and ``e``, two steps; a zero gain for an absent
    one): the output of step ``t`` also receives ``d * dL/dx[t+1] + e * dL/dx[t+2]``, with
    ``dL/dx = c * dL/du``; ``g_d`` / ``g_e`` (``[B, N]``, or ``[B, 0]``: not wanted) add dL/dd,
    ``dL/dx[t] * y[t-1]``, and dL/de, ``dL/dx[t] * y[t-2]`` (``y``: the forward outputs)."""
    T, B, N = g_out.shape
    f_sub = 1.0 if subtract else 0.0
    f_keep = 0.0 if detach else 1.0
    for bb in prange(B):
        gv = gv_state[bb].copy()
        gu = np.zeros(N, dtype=g_out.dtype)
        srow = np.zeros(N, dtype=g_out.dtype)
        grow = np.zeros(N, dtype=g_out.dtype)  # dL/d(output) with the loops' share
        near = np.zeros(N, dtype=g_out.dtype)  # the loops' share of dL/d(output) of this step
        far = np.zeros(N, dtype=g_out.dtype)  # the two-step loop's share of dL/d(output) one step earlier
        gx = np.zeros(N, dtype=g_out.dtype)  # dL/dx of this step (the loops' input)
        gth = g_th[bb]
        for t in range(T - 1, -1, -1):
            go = g_out[t, bb]
            if loop:
                for n in range(N):
                    grow[n] = go[n] + near[n]
                go = grow
            if spiking:
                if sg_kind == SG_ARRAY:
                    srow[:] = sg[t, bb]
                else:
                    _surrogate_row(sg_kind, sg_slope, sg_height, u[t, bb], th, srow)
                _spiking_grads(go, gv, u[t, bb], srow, th, vr, gu, gth, f_sub, f_keep)
            else:
                for n in range(N):
                    gu[n] = go[n] + gv[n]
            out = g_u[t, bb]
            for n in range(N):
                out[n] = gu[n] * scale[n]
                gv[n] = a[n] * gu[n]
            if loop or g_d.shape[1] or g_e.shape[1]:
                for n in range(N):
                    gx[n] = c[n] * gu[n]
                _loop_grads(gx, loop, d, e, near, far, g_d[bb], g_e[bb], y, t, bb)
        gv_state[bb, :] = gv


@njit(**_FLAGS)
def cuba_backward(g_out, u, sg_kind, sg_slope, sg_height, sg, a_syn, a, c, th, vr, scale, spiking, subtract, detach, g_u, g_i, g_th,
                  gv_state, gi_state, loop, d, e, c_syn, y, g_d, g_e):
    """Reverse-time recurrence of the current-based neurons: dL/du, scale * dL/di and dL/dth;
    ``gv_state`` / ``gi_state``: gradients w.r.t. the final state in, the initial state out.
    ``loop``: the loops of :func:`cuba_forward` (gains ``d``, one step, and ``e``, two steps; a
    zero gain for an absent one): the output of step ``t`` also receives ``d * dL/dx[t+1] + e *
    dL/dx[t+2]``, with ``dL/dx = c_syn * dL/di``. ``g_d`` / ``g_e`` (``[B, N]``, or ``[B, 0]``:
    not wanted) add dL/dd, ``dL/dx[t] * y[t-1]``, and dL/de, ``dL/dx[t] * y[t-2]`` (``y``: the
    forward outputs)."""
    T, B, N = g_out.shape
    f_sub = 1.0 if subtract else 0.0
    f_keep = 0.0 if detach else 1.0
    for bb in prange(B):
        gv = gv_state[bb].copy()
        # carry[n]: dL/di[t] through i[t+1] (a_syn * dL/di[t+1]), or through the final state.
        carry = gi_state[bb].copy()
        gi = np.zeros(N, dtype=g_out.dtype)
        gu = np.zeros(N, dtype=g_out.dtype)
        srow = np.zeros(N, dtype=g_out.dtype)
        grow = np.zeros(N, dtype=g_out.dtype)  # dL/d(output) with the loops' share
        near = np.zeros(N, dtype=g_out.dtype)  # the loops' share of dL/d(output) of this step
        far = np.zeros(N, dtype=g_out.dtype)  # the delayed loop's share of dL/d(output) one step earlier
        gx = np.zeros(N, dtype=g_out.dtype)  # dL/dx of this step (the loops' input)
        gth = g_th[bb]
        for t in range(T - 1, -1, -1):
            go = g_out[t, bb]
            if loop:
                for n in range(N):
                    grow[n] = go[n] + near[n]
                go = grow
            if spiking:
                if sg_kind == SG_ARRAY:
                    srow[:] = sg[t, bb]
                else:
                    _surrogate_row(sg_kind, sg_slope, sg_height, u[t, bb], th, srow)
                _spiking_grads(go, gv, u[t, bb], srow, th, vr, gu, gth, f_sub, f_keep)
            else:
                for n in range(N):
                    gu[n] = go[n] + gv[n]
            gut = g_u[t, bb]
            git = g_i[t, bb]
            for n in range(N):
                gut[n] = gu[n]
                gi[n] = c[n] * gu[n] + carry[n]
                git[n] = gi[n] * scale[n]
                carry[n] = a_syn[n] * gi[n]
                gv[n] = a[n] * gu[n]
            if loop or g_d.shape[1] or g_e.shape[1]:
                for n in range(N):
                    gx[n] = c_syn[n] * gi[n]
                _loop_grads(gx, loop, d, e, near, far, g_d[bb], g_e[bb], y, t, bb)
        gv_state[bb, :] = gv
        gi_state[bb, :] = carry


announce_first_compile(globals())
