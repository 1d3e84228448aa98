"""From continuous equations to one discrete update, shared by every backend.

The graph fixes the time step ``dt`` and the rule ``integration``: ``"euler"`` (forward Euler,
decay :math:`a = 1 - dt/\\tau`, input gain :math:`g = dt/\\tau`) or ``"exact"`` (exponential
integration with the input held over the step, :math:`a = e^{-dt/\\tau}`, :math:`g = 1 - a`).
Every backend evaluates the same float64 coefficients in the same order, which is what makes
spike trains bit-identical across torch, numba-clock and numba-event in float64:

=========  ==========================================================================
LI, LIF    ``v = a*v + c*x + b``  with ``a``, ``b = g*v_leak``, ``c = g*r``
CubaLI(F)  ``i = a_syn*i + c_syn*x``; ``v = a_mem*v + c_mem*i + b_mem``  (``c_syn = g_syn*w_in``)
I, IF      ``v = v + c*x``  with ``c = dt*r``
spikes     ``z = v > v_threshold``; reset ``"zero"``: ``v = v_reset`` where ``z``;
           ``"subtract"``: ``v = v - v_threshold`` where ``z``
Threshold  ``z = x > threshold``
Delay      ``y[t] = x[t - round(delay/dt)]``
=========  ==========================================================================

State starts at zero. The input ``x`` of a node is the sum of its incoming edges; an edge that
closes a cycle (see :meth:`spikeflow.ir.Graph.delayed_edges`) carries the previous step's value.
"""

from __future__ import annotations

import numpy as np

from spikeflow.errors import GraphError
from spikeflow.ir import nodes as n

INTEGRATIONS = ("euler", "exact")


def leak(tau: np.ndarray, dt: float, integration: str, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Decay ``a`` and input gain ``g`` of :math:`\\tau \\dot v = -v + u` over one step."""
    ratio = dt / np.asarray(tau, dtype=np.float64)
    if integration == "euler":
        if np.any(ratio > 1):
            raise GraphError(
                f"{where}dt={dt:g} exceeds tau={np.min(tau):g}: forward Euler would oscillate; "
                "use a smaller dt or integration='exact'"
            )
        return 1.0 - ratio, ratio
    if integration == "exact":
        a = np.exp(-ratio)
        return a, 1.0 - a
    raise GraphError(f"unknown integration {integration!r}; expected one of {INTEGRATIONS}")


MAX_DELAY_STEPS = 1 << 20
"""Longest delay in steps (each step of delay is buffered, per neuron)."""


def coefficients(node: n.Node, dt: float, integration: str, where: str = "") -> dict[str, np.ndarray]:
    """The float64 arrays a backend needs to step ``node`` (empty for stateless nodes)."""
    if isinstance(node, (n.LI, n.LIF)):
        a, g = leak(node.tau, dt, integration, where)
        out = {"a": a, "b": g * node.v_leak, "c": g * node.r}
    elif isinstance(node, (n.CubaLI, n.CubaLIF)):
        a_syn, g_syn = leak(node.tau_syn, dt, integration, where)
        a_mem, g_mem = leak(node.tau_mem, dt, integration, where)
        out = {"a_syn": a_syn, "c_syn": g_syn * node.w_in, "a_mem": a_mem, "b_mem": g_mem * node.v_leak, "c_mem": g_mem * node.r}
    elif isinstance(node, (n.I, n.IF)):
        out = {"c": dt * node.r}
    elif isinstance(node, n.Delay):
        steps = node.delay / dt
        if np.any(steps > MAX_DELAY_STEPS):
            # Cast to int64, a huge delay would wrap around (to no delay or a negative one).
            raise GraphError(
                f"{where}field 'delay': {float(np.max(node.delay)):g} s is {float(np.max(steps)):.3g} steps of dt={dt:g} s; "
                f"a delay holds at most {MAX_DELAY_STEPS:,} steps"
            )
        out = {"steps": np.rint(steps).astype(np.int64)}
    else:
        return {}
    if node.spiking:
        out["v_threshold"] = node.v_threshold
        out["v_reset"] = node.v_reset
    return out
