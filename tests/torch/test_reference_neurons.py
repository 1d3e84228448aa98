"""The hand-derived backward of tests/reference/neurons.py against finite differences.

A hard spike has no useful derivative, so the check runs on the model that the surrogate
backward differentiates exactly: spikes relaxed to the surrogate's primitive, and (for
``detach=True``) reset spikes frozen at their values from the unperturbed run.
"""

import numpy as np
import pytest
import torch

from spikeflow.ir import nodes as n
from spikeflow.ir.discretise import coefficients
from spikeflow.torch.surrogate import surrogate
from tests.reference import neurons as ref

DT = 1e-3
SG = surrogate("sigmoid", slope=4.0)


def primitive(x):
    return SG.primitive(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy()


def derivative(x):
    return SG.derivative(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy()


def _model(kind, reset):
    rng = np.random.default_rng(0)
    if kind == "leaky":
        node = n.LIF(tau=rng.uniform(0.005, 0.02, 3), v_threshold=0.4, v_leak=0.1, r=1.3, v_reset=-0.1, reset=reset)
        c = coefficients(node, DT, "euler")
        p = {"c": c["c"], "a": c["a"], "b": c["b"], "th": c["v_threshold"] + np.zeros(3)}
    elif kind == "integrator":
        node = n.IF(v_threshold=0.4, r=rng.uniform(0.5, 2, 3), v_reset=0.05, reset=reset)
        c = coefficients(node, DT, "euler")
        p = {"c": c["c"], "th": c["v_threshold"] + np.zeros(3)}
    else:
        node = n.CubaLIF(tau_syn=0.004, tau_mem=rng.uniform(0.01, 0.03, 3), v_threshold=0.3, w_in=1.5, v_reset=0.02, reset=reset)
        c = coefficients(node, DT, "euler")
        p = {"a_syn": c["a_syn"] + np.zeros(3), "c_syn": c["c_syn"] + np.zeros(3), "a": c["a_mem"], "b": c["b_mem"] + np.zeros(3), "c": c["c_mem"] + np.zeros(3), "th": c["v_threshold"] + np.zeros(3)}
    scale = {"leaky": 30.0, "integrator": 300.0, "cuba": 50.0}[kind]
    x = rng.random((10, 2, 3)) * scale
    return p, x, float(c["v_reset"])


def _forward(kind, p, x, vr, reset, **kw):
    if kind == "cuba":
        return ref.cuba_forward(x, p["a_syn"], p["c_syn"], p["a"], p["b"], p["c"], p["th"], vr, reset, **kw)
    return ref.leaky_forward(x, p["c"], p.get("a"), p.get("b"), p["th"], vr, reset, **kw)


def _backward(kind, p, x, trace, g, vr, reset, detach):
    if kind == "cuba":
        return ref.cuba_backward(g, x, trace, p["a_syn"], p["c_syn"], p["a"], p["c"], p["th"], vr, reset, derivative, detach)
    return ref.leaky_backward(g, x, trace, p["c"], p.get("a"), p["th"], vr, reset, derivative, detach)


@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("kind", ["leaky", "integrator", "cuba"])
def test_hand_derived_backward_matches_finite_differences(kind, reset, detach):
    p, x, vr = _model(kind, reset)
    g = np.random.default_rng(1).normal(size=x.shape)
    frozen = _forward(kind, p, x, vr, reset)["z"] if detach else None
    assert 0 < frozen.mean() < 1 if detach else True

    def loss(p, x):
        return float((g * _forward(kind, p, x, vr, reset, spike=primitive, frozen=frozen)["out"]).sum())

    trace = _forward(kind, p, x, vr, reset, spike=primitive, frozen=frozen)
    grads = _backward(kind, p, x, trace, g, vr, reset, detach)
    eps = 1e-6
    for idx in [(0, 0, 0), (3, 1, 2), (7, 0, 1), (9, 1, 0)]:
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        fd = (loss(p, xp) - loss(p, xm)) / (2 * eps)
        assert np.isclose(grads["x"][idx], fd, rtol=1e-5, atol=1e-8), (idx, grads["x"][idx], fd)
    names = {"th": "v_threshold", "a": "a", "b": "b", "c": "c", "a_syn": "a_syn", "c_syn": "c_syn"}
    for key in p:
        for j in range(3):
            pp = {k: v.copy() for k, v in p.items()}
            pm = {k: v.copy() for k, v in p.items()}
            h = 1e-5 * abs(p[key][j]) + 1e-9  # coefficients span 1e-3..1: step relative to each
            pp[key][j] += h
            pm[key][j] -= h
            fd = (loss(pp, x) - loss(pm, x)) / (2 * h)
            assert np.isclose(grads[names[key]][j], fd, rtol=1e-5, atol=1e-7), (key, j, grads[names[key]][j], fd)
