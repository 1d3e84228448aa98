"""Neuron cases shared by the torch tests: IR node, functional params, NumPy reference."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import torch

from spikeflow.ir import nodes as n
from spikeflow.ir.discretise import coefficients
from spikeflow.torch import functional as F
from tests.reference import neurons as ref

DT = 1e-3
N = 5

PARAMS = {
    n.LIF: F.LIFParams, n.LI: F.LIParams, n.IF: F.IFParams, n.I: F.IParams,
    n.CubaLIF: F.CubaLIFParams, n.CubaLI: F.CubaLIParams,
}

CASES = {
    "lif_zero": lambda: n.LIF(tau=np.linspace(0.005, 0.03, N), v_threshold=0.5, r=1.5, v_leak=0.1, v_reset=-0.05),
    "lif_subtract": lambda: n.LIF(tau=0.02, v_threshold=np.linspace(0.3, 0.7, N), reset="subtract"),
    "li": lambda: n.LI(tau=np.linspace(0.005, 0.03, N), r=2.0, v_leak=-0.1),
    "if_zero": lambda: n.IF(v_threshold=0.4, r=np.linspace(0.5, 2.0, N), v_reset=0.1),
    "if_subtract": lambda: n.IF(v_threshold=0.4, reset="subtract"),
    "i": lambda: n.I(r=np.linspace(0.5, 2.0, N)),
    "cuba_lif_zero": lambda: n.CubaLIF(tau_syn=0.004, tau_mem=np.linspace(0.01, 0.03, N), v_threshold=0.2, w_in=2.0, v_leak=0.05),
    "cuba_lif_subtract": lambda: n.CubaLIF(tau_syn=np.linspace(0.003, 0.006, N), tau_mem=0.02, v_threshold=0.2, reset="subtract"),
    "cuba_li": lambda: n.CubaLI(tau_syn=0.004, tau_mem=0.02, r=3.0),
}
TAUS = {n.LIF: ("tau",), n.LI: ("tau",), n.CubaLIF: ("tau_syn", "tau_mem"), n.CubaLI: ("tau_syn", "tau_mem")}


def params_for(node, integration="euler", **kw):
    values = {f.name: getattr(node, f.name) for f in fields(node)}
    cls = PARAMS[type(node)]
    if "integration" in cls._fields:
        kw.setdefault("integration", integration)
    return cls(**values, dt=DT, **kw)


def inputs(node, rng, T=14, B=3, dtype=np.float64):
    """Random drive strong enough that every spiking neuron fires sometimes."""
    scale = {n.LIF: 40.0, n.LI: 40.0, n.IF: 300.0, n.I: 300.0, n.CubaLIF: 60.0, n.CubaLI: 60.0}[type(node)]
    return (rng.random((T, B, N)) * scale - 0.2 * scale).astype(dtype)


def reference_forward(node, x, integration="euler", **kw):
    coef = coefficients(node, DT, integration)
    th, vr = coef.get("v_threshold"), coef.get("v_reset", 0.0)
    reset = getattr(node, "reset", "zero")
    if isinstance(node, (n.CubaLI, n.CubaLIF)):
        return ref.cuba_forward(x, coef["a_syn"], coef["c_syn"], coef["a_mem"], coef["b_mem"], coef["c_mem"], th, vr, reset, **kw)
    if isinstance(node, (n.LI, n.LIF)):
        return ref.leaky_forward(x, coef["c"], coef["a"], coef["b"], th, vr, reset, **kw)
    return ref.leaky_forward(x, coef["c"], None, None, th, vr, reset, **kw)


def reference_backward(node, x, trace, g_out, derivative, detach, integration="euler"):
    """Reference gradients including dL/dtau for each time constant (as ``tau``, ``tau_syn``, ``tau_mem``)."""
    coef = coefficients(node, DT, integration)
    th, vr = coef.get("v_threshold"), coef.get("v_reset", 0.0)
    reset = getattr(node, "reset", "zero")
    if isinstance(node, (n.CubaLI, n.CubaLIF)):
        g = ref.cuba_backward(g_out, x, trace, coef["a_syn"], coef["c_syn"], coef["a_mem"], coef["c_mem"], th, vr, reset, derivative, detach)
        g["tau_mem"] = ref.tau_gradient(node.tau_mem, DT, integration, g["a"], g["b"] * node.v_leak + g["c"] * node.r)
        g["tau_syn"] = ref.tau_gradient(node.tau_syn, DT, integration, g["a_syn"], g["c_syn"] * node.w_in)
        return g
    a = coef.get("a")
    g = ref.leaky_backward(g_out, x, trace, coef["c"], a, th, vr, reset, derivative, detach)
    if a is not None:
        g["tau"] = ref.tau_gradient(node.tau, DT, integration, g["a"], g["b"] * node.v_leak + g["c"] * node.r)
    return g


def reduce_to(grad, shape):
    """Sum a per-neuron [N] gradient down to a parameter's (broadcast) shape."""
    grad = np.asarray(grad)
    return grad.sum() if shape == () else grad


def torch_derivative(sg):
    return lambda v: sg.derivative(torch.from_numpy(np.asarray(v, dtype=np.float64))).numpy()
