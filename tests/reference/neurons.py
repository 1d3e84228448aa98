"""Slow, obvious NumPy references of the neurons: forward loop over time, hand-derived backward.

Arrays are ``x[T, B, N]``; coefficients are ``[N]`` vectors named as in
:mod:`spikeflow.ir.discretise`. The forward evaluates the discrete update in its exact order. The
backward runs backpropagation through time by hand, with a surrogate ``derivative`` in place of the
Heaviside step's derivative:

* ``u[t]`` pre-reset membrane, ``z[t] = H(u[t] - th)``, ``v[t]`` post-reset membrane;
* reset ``"zero"``: ``v = u + z * (vr - u)``; ``"subtract"``: ``v = u - z * th``;
* ``detach=True`` treats ``z`` in the reset as a constant.

``spike=`` and ``frozen=`` exist to check the backward by finite differences: with a smooth
``spike`` (the surrogate's primitive) the model is differentiable, and with ``frozen`` spikes in the
reset it is exactly the model that ``detach=True`` differentiates.
"""

from __future__ import annotations

import numpy as np


def heaviside(x):
    return (x > 0).astype(np.float64)


def _reset(u, z, th, vr, reset, hard):
    if hard:  # exact values, as the backends compute them
        return np.where(z > 0, u - th, u) if reset == "subtract" else np.where(z > 0, vr + 0 * u, u)
    return u - z * th if reset == "subtract" else u + z * (vr - u)


def leaky_forward(x, c, a=None, b=None, th=None, vr=0.0, reset="zero", spike=heaviside, frozen=None):
    """LIF (``a`` given, ``th`` given), LI (``th`` None), IF / I (``a`` None: ``v = v + c*x``)."""
    T = x.shape[0]
    v = np.zeros(x.shape[1:])
    out, us, zs, zr, vs = (np.zeros(x.shape) for _ in range(5))
    hard = spike is heaviside and frozen is None
    for t in range(T):
        u = v + c * x[t] if a is None else a * v + c * x[t] + b
        us[t] = u
        if th is None:
            v = u
            out[t] = u
        else:
            z = spike(u - th)
            zs[t], zr[t] = z, z if frozen is None else frozen[t]
            out[t] = z
            v = _reset(u, zr[t], th, vr, reset, hard)
        vs[t] = v
    return {"out": out, "u": us, "z": zs, "z_reset": zr, "v": vs}


def leaky_backward(g_out, x, trace, c, a=None, th=None, vr=0.0, reset="zero", derivative=None, detach=True):
    """Gradients of ``sum(g_out * out)``: dict with ``x`` [T,B,N] and ``a``, ``b``, ``c``,
    ``v_threshold`` summed over time and batch ([N])."""
    T = x.shape[0]
    u, z, v = trace["u"], trace["z_reset"], trace["v"]
    gv = np.zeros(x.shape[1:])
    grads = {k: np.zeros(x.shape[2:]) for k in ("a", "b", "c", "v_threshold")}
    gx = np.zeros(x.shape)
    for t in range(T - 1, -1, -1):
        if th is None:
            gu = g_out[t] + gv
        else:
            s = derivative(u[t] - th)
            g_spike = g_out[t]
            if not detach:
                g_spike = g_spike + gv * (-th if reset == "subtract" else vr - u[t])
            if reset == "subtract":
                gu = g_spike * s + gv
                grads["v_threshold"] += (-g_spike * s - gv * z[t]).sum(0)
            else:
                gu = g_spike * s + gv * (1 - z[t])
                grads["v_threshold"] += (-g_spike * s).sum(0)
        gx[t] = c * gu
        v_prev = v[t - 1] if t > 0 else np.zeros_like(gu)
        grads["a"] += (gu * v_prev).sum(0)
        grads["b"] += gu.sum(0)
        grads["c"] += (gu * x[t]).sum(0)
        gv = gu if a is None else a * gu
    grads["x"] = gx
    return grads


def cuba_forward(x, a_syn, c_syn, a, b, c, th=None, vr=0.0, reset="zero", spike=heaviside, frozen=None):
    """CubaLIF (``th`` given) / CubaLI: ``i = a_syn*i + c_syn*x``; ``u = a*v + c*i + b``."""
    T = x.shape[0]
    v = np.zeros(x.shape[1:])
    i = np.zeros(x.shape[1:])
    out, us, zs, zr, vs, cur = (np.zeros(x.shape) for _ in range(6))
    hard = spike is heaviside and frozen is None
    for t in range(T):
        i = a_syn * i + c_syn * x[t]
        u = a * v + c * i + b
        cur[t], us[t] = i, u
        if th is None:
            v = u
            out[t] = u
        else:
            z = spike(u - th)
            zs[t], zr[t] = z, z if frozen is None else frozen[t]
            out[t] = z
            v = _reset(u, zr[t], th, vr, reset, hard)
        vs[t] = v
    return {"out": out, "u": us, "z": zs, "z_reset": zr, "v": vs, "i": cur}


def cuba_backward(g_out, x, trace, a_syn, c_syn, a, c, th=None, vr=0.0, reset="zero", derivative=None, detach=True):
    """Like :func:`leaky_backward`, plus ``a_syn`` and ``c_syn``."""
    # The membrane part is a leaky neuron driven by i: reuse it, then run the synaptic recurrence.
    mem = leaky_backward(g_out, trace["i"], trace, c, a, th, vr, reset, derivative, detach)
    g_i_direct = mem.pop("x")  # c * dL/du: the gradient reaching i[t] through u[t]
    T = x.shape[0]
    gi = np.zeros(x.shape[1:])
    gx = np.zeros(x.shape)
    mem["a_syn"] = np.zeros(x.shape[2:])
    mem["c_syn"] = np.zeros(x.shape[2:])
    for t in range(T - 1, -1, -1):
        gi = g_i_direct[t] + a_syn * gi
        gx[t] = c_syn * gi
        i_prev = trace["i"][t - 1] if t > 0 else np.zeros_like(gi)
        mem["a_syn"] += (gi * i_prev).sum(0)
        mem["c_syn"] += (gi * x[t]).sum(0)
    mem["x"] = gx
    return mem


def tau_gradient(tau, dt, integration, g_a, g_g):
    """dL/dtau from dL/da and dL/dg (``g`` is the input gain: ``b = g*v_leak``, ``c = g*r``)."""
    tau = np.asarray(tau, dtype=np.float64)
    if integration == "euler":  # a = 1 - dt/tau, g = dt/tau
        return (g_a - g_g) * dt / tau**2
    a = np.exp(-dt / tau)  # a = exp(-dt/tau), g = 1 - a
    return (g_a - g_g) * a * dt / tau**2


# Readable names for the individual neurons.
def lif(x, a, b, c, th, vr=0.0, reset="zero", **kw):
    return leaky_forward(x, c, a, b, th, vr, reset, **kw)


def li(x, a, b, c, **kw):
    return leaky_forward(x, c, a, b, **kw)


def if_(x, c, th, vr=0.0, reset="zero", **kw):
    return leaky_forward(x, c, None, None, th, vr, reset, **kw)


def integrator(x, c, **kw):
    return leaky_forward(x, c, **kw)


def cuba_lif(x, a_syn, c_syn, a, b, c, th, vr=0.0, reset="zero", **kw):
    return cuba_forward(x, a_syn, c_syn, a, b, c, th, vr, reset, **kw)


def cuba_li(x, a_syn, c_syn, a, b, c, **kw):
    return cuba_forward(x, a_syn, c_syn, a, b, c, **kw)


def leaky_loop_forward(x, gain, c, a=None, b=None, th=None, vr=0.0, reset="zero", first=None,
                       delayed_gain=None, delayed_first=None, order="x+gain+delayed"):
    """:func:`leaky_forward` with the output fed back one step later through ``gain`` (a graph's
    ``neuron -> Scale -> neuron`` loop, e.g. snnTorch's late reset): the input of step ``t`` is
    ``x[t] + gain * out[t-1]``, of step 0 ``x[0] + first`` (``first`` None: ``x[0]``); and two
    steps later through ``delayed_gain`` (a loop through a one-step Delay; ``delayed_first[0]``,
    ``delayed_first[1]`` at steps 0 and 1), the terms added in ``order`` (:func:`_join`). Either
    gain may be None (no such loop)."""
    T = x.shape[0]
    v = np.zeros(x.shape[1:])
    out, us, zs, vs, xin = (np.zeros(x.shape) for _ in range(5))
    for t in range(T):
        near = None if gain is None else (first if t == 0 else gain * out[t - 1])
        far = None
        if delayed_gain is not None:
            far = (None if delayed_first is None else delayed_first[t]) if t < 2 else delayed_gain * out[t - 2]
        xin[t] = _join(x[t], near, far, order)
        u = v + c * xin[t] if a is None else a * v + c * xin[t] + b
        us[t] = u
        if th is None:
            v = u
            out[t] = u
        else:
            z = heaviside(u - th)
            zs[t] = z
            out[t] = z
            v = _reset(u, z, th, vr, reset, hard=True)
        vs[t] = v
    return {"out": out, "u": us, "z": zs, "z_reset": zs, "v": vs, "x_in": xin}


def leaky_loop_backward(g_out, trace, gain, c, a=None, th=None, vr=0.0, reset="zero", derivative=None, detach=True,
                        delayed_gain=None):
    """Gradients of ``sum(g_out * out)`` through :func:`leaky_loop_forward`: dict with ``x``
    [T,B,N], ``first`` [B,N], ``delayed_first`` [2,B,N], and ``gain``, ``delayed_gain``, ``a``,
    ``b``, ``c``, ``v_threshold`` summed over time and batch ([N]). The loops are differentiated
    like any edge: ``out[t-1]`` receives ``gain * dL/dx_in[t]`` and ``out[t-2]``
    ``delayed_gain * dL/dx_in[t]``, through the surrogate when spiking."""
    xin, u, z, v, out = trace["x_in"], trace["u"], trace["z"], trace["v"], trace["out"]
    T = xin.shape[0]
    g1 = np.zeros(xin.shape[2:]) if gain is None else gain
    g2 = np.zeros(xin.shape[2:]) if delayed_gain is None else delayed_gain
    gv = np.zeros(xin.shape[1:])
    grads = {k: np.zeros(xin.shape[2:]) for k in ("gain", "delayed_gain", "a", "b", "c", "v_threshold")}
    gx = np.zeros(xin.shape)
    for t in range(T - 1, -1, -1):
        g_o = g_out[t].copy()
        if t + 1 < T:
            g_o += g1 * gx[t + 1]
        if t + 2 < T:
            g_o += g2 * gx[t + 2]
        if th is None:
            gu = g_o + gv
        else:
            s = derivative(u[t] - th)
            g_spike = g_o
            if not detach:
                g_spike = g_spike + gv * (-th if reset == "subtract" else vr - u[t])
            if reset == "subtract":
                gu = g_spike * s + gv
                grads["v_threshold"] += (-g_spike * s - gv * z[t]).sum(0)
            else:
                gu = g_spike * s + gv * (1 - z[t])
                grads["v_threshold"] += (-g_spike * s).sum(0)
        gx[t] = c * gu
        v_prev = v[t - 1] if t > 0 else np.zeros_like(gu)
        grads["a"] += (gu * v_prev).sum(0)
        grads["b"] += gu.sum(0)
        grads["c"] += (gu * xin[t]).sum(0)
        if t > 0:
            grads["gain"] += (gx[t] * out[t - 1]).sum(0)
        if t > 1:
            grads["delayed_gain"] += (gx[t] * out[t - 2]).sum(0)
        gv = gu if a is None else a * gu
    grads["x"] = gx
    grads["first"] = gx[0]
    grads["delayed_first"] = np.stack([gx[0], gx[1] if T > 1 else np.zeros_like(gx[0])])
    return grads


def _join(x, near, far, order):
    """``x`` plus the loop terms in the graph's order (``spikeflow.torch.functional.LOOP_ORDERS``)."""
    if near is None:
        return x if far is None else x + far
    if far is None:
        return x + near
    if order == "x+gain+delayed":
        return (x + near) + far
    if order == "x+delayed+gain":
        return (x + far) + near
    return x + (near + far)


def cuba_loop_forward(x, a_syn, c_syn, a, b, c, th=None, vr=0.0, reset="zero", gain=None, first=None,
                      delayed_gain=None, delayed_first=None, order="x+gain+delayed"):
    """:func:`cuba_forward` with the output fed back one step later through ``gain`` (``first``
    at step 0) and two steps later through ``delayed_gain`` (``delayed_first[0]``,
    ``delayed_first[1]`` at steps 0 and 1; a loop through a one-step Delay, e.g. snnTorch
    ``Synaptic``'s late reset): the input of step ``t`` is ``x[t] + gain*out[t-1] +
    delayed_gain*out[t-2]``, added in ``order``. Either gain may be None (no such loop)."""
    T = x.shape[0]
    v = np.zeros(x.shape[1:])
    i = np.zeros(x.shape[1:])
    out, us, zs, vs, cur, xin = (np.zeros(x.shape) for _ in range(6))
    for t in range(T):
        near = None if gain is None else (first if t == 0 else gain * out[t - 1])
        far = None
        if delayed_gain is not None:
            far = (None if delayed_first is None else delayed_first[t]) if t < 2 else delayed_gain * out[t - 2]
        xin[t] = _join(x[t], near, far, order)
        i = a_syn * i + c_syn * xin[t]
        u = a * v + c * i + b
        cur[t], us[t] = i, u
        if th is None:
            v = u
            out[t] = u
        else:
            z = heaviside(u - th)
            zs[t] = z
            out[t] = z
            v = _reset(u, z, th, vr, reset, hard=True)
        vs[t] = v
    return {"out": out, "u": us, "z": zs, "z_reset": zs, "v": vs, "i": cur, "x_in": xin}


def cuba_loop_backward(g_out, trace, a_syn, c_syn, a, c, th=None, vr=0.0, reset="zero", derivative=None, detach=True,
                       gain=None, delayed_gain=None):
    """Gradients of ``sum(g_out * out)`` through :func:`cuba_loop_forward`: dict with ``x``
    [T,B,N], ``first`` [B,N], ``delayed_first`` [2,B,N], and ``gain``, ``delayed_gain``, ``a_syn``,
    ``c_syn``, ``a``, ``b``, ``c``, ``v_threshold`` summed over time and batch ([N]).

    By hand, backwards in time: ``out[t]`` receives ``g_out[t] + gain*gx[t+1] +
    delayed_gain*gx[t+2]`` (``gx``: dL/d(input)); the membrane as in :func:`leaky_backward`;
    ``gi[t] = c*gu[t] + a_syn*gi[t+1]``; ``gx[t] = c_syn*gi[t]``."""
    xin, u, z, v, out, cur = trace["x_in"], trace["u"], trace["z"], trace["v"], trace["out"], trace["i"]
    T = xin.shape[0]
    g1 = np.zeros(xin.shape[2:]) if gain is None else gain
    g2 = np.zeros(xin.shape[2:]) if delayed_gain is None else delayed_gain
    gv = np.zeros(xin.shape[1:])
    gi = np.zeros(xin.shape[1:])
    gx = np.zeros(xin.shape)
    names = ("gain", "delayed_gain", "a_syn", "c_syn", "a", "b", "c", "v_threshold")
    grads = {k: np.zeros(xin.shape[2:]) for k in names}
    for t in range(T - 1, -1, -1):
        g_o = g_out[t].copy()
        if t + 1 < T:
            g_o += g1 * gx[t + 1]
        if t + 2 < T:
            g_o += g2 * gx[t + 2]
        if th is None:
            gu = g_o + gv
        else:
            s = derivative(u[t] - th)
            g_spike = g_o
            if not detach:
                g_spike = g_spike + gv * (-th if reset == "subtract" else vr - u[t])
            if reset == "subtract":
                gu = g_spike * s + gv
                grads["v_threshold"] += (-g_spike * s - gv * z[t]).sum(0)
            else:
                gu = g_spike * s + gv * (1 - z[t])
                grads["v_threshold"] += (-g_spike * s).sum(0)
        gi = c * gu + (a_syn * gi)
        gx[t] = c_syn * gi
        v_prev = v[t - 1] if t > 0 else np.zeros_like(gu)
        i_prev = cur[t - 1] if t > 0 else np.zeros_like(gu)
        grads["a"] += (gu * v_prev).sum(0)
        grads["b"] += gu.sum(0)
        grads["c"] += (gu * cur[t]).sum(0)
        grads["a_syn"] += (gi * i_prev).sum(0)
        grads["c_syn"] += (gi * xin[t]).sum(0)
        if t > 0:
            grads["gain"] += (gx[t] * out[t - 1]).sum(0)
        if t > 1:
            grads["delayed_gain"] += (gx[t] * out[t - 2]).sum(0)
        gv = a * gu
    grads["x"] = gx
    grads["first"] = gx[0]
    grads["delayed_first"] = np.stack([gx[0], gx[1] if T > 1 else np.zeros_like(gx[0])])
    return grads
