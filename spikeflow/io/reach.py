"""Can a foreign graph's neurons reach their thresholds at the chosen ``dt``?

NIR has no time step, so :func:`~spikeflow.io.nir_bridge.from_nir` takes ``dt`` from the caller. A
wrong one silences a network without an error: Sinabs, for instance, writes per-step parameters
(an IF neuron with ``r = 1`` adds its whole input each step only when ``dt = 1``; at ``dt = 1e-3``
it adds a thousandth). :func:`unreachable_thresholds` bounds, layer by layer, the largest value
each node can output (spikes and Inputs 1 per step, weights by their positive parts, pools by their
window sums) and names every spiking node that cannot reach its threshold within ``horizon``
steps even under that largest drive, with the reason and the ``dt`` at which it could.
"""

from __future__ import annotations

import math

import numpy as np

from spikeflow.errors import GraphError
from spikeflow.ir import nodes as n
from spikeflow.ir.discretise import leak

HORIZON = 1000
"""Steps within which a neuron should be able to reach its threshold."""


def _drive(node, x: float) -> float:
    """Upper bound of a synaptic or stateless node's output when every input is at most ``x``."""
    if isinstance(node, (n.Affine, n.Linear)):
        w = np.maximum(n.dense_weight(node.weight) if n.is_sparse(node.weight) else np.asarray(node.weight), 0)
        bias = np.maximum(np.asarray(getattr(node, "bias", 0.0)), 0)
        return float(np.max(w.sum(axis=1) * x + bias, initial=0.0))
    if isinstance(node, (n.Conv1d, n.Conv2d)):
        w = np.maximum(np.asarray(node.weight), 0).reshape(node.weight.shape[0], -1).sum(axis=1)
        return float(np.max(w * x + np.maximum(node.bias, 0), initial=0.0))
    if isinstance(node, n.SumPool2d):
        return x * math.prod(node.kernel_size)
    if isinstance(node, n.Scale):
        return x * float(np.max(np.abs(node.scale), initial=0.0))
    if isinstance(node, n.Threshold):
        return 1.0
    return x  # Flatten, Output, Delay, AvgPool2d pass the bound through


def unreachable_thresholds(graph, horizon: int = HORIZON) -> list[str]:
    """One message per spiking node that cannot reach its threshold within ``horizon`` steps."""
    flat = graph.flatten()
    dt, integration = flat.dt, flat.integration
    bound: dict[str, float] = {}
    messages = []
    for name in flat.order():
        node = flat.nodes[name]
        x = sum(bound.get(a, 1.0) for a in flat.predecessors(name))  # a delayed source not yet bounded: a spike
        if isinstance(node, n.Input):
            bound[name] = 1.0
        elif getattr(node, "spiking", False):
            bound[name] = 1.0
            reason = _unreachable(node, x, dt, integration, horizon)
            if reason:
                messages.append(f"node {name!r} ({type(node).__name__}): {reason}")
        elif isinstance(node, (n.LI, n.CubaLI)):
            gain = np.asarray(node.r) * np.asarray(getattr(node, "w_in", 1.0))
            bound[name] = float(np.max(gain * x + np.maximum(node.v_leak, 0), initial=0.0))
        elif isinstance(node, n.I):
            bound[name] = float(np.max(dt * np.asarray(node.r), initial=0.0)) * x * horizon
        elif isinstance(node, n.Node) and not node.stateful:
            bound[name] = _drive(node, x)
        else:
            bound[name] = 1.0  # other stateful nodes (EGRU): events of order one
    return messages


def _unreachable(node, x: float, dt: float, integration: str, horizon: int) -> str | None:
    threshold = float(np.min(node.v_threshold))
    if threshold <= 0:
        return None
    if isinstance(node, n.IF):
        step = float(np.max(dt * np.asarray(node.r), initial=0.0)) * x
        if step * horizon >= threshold:
            return None
        likely = threshold / (float(np.max(node.r)) * max(x, 1e-300) * horizon)
        return (f"one step adds at most {step:.3g} (dt*r*input) to v, so v_threshold={threshold:g} needs more than {horizon} "
                f"steps at dt={dt:g}; the tool that wrote it likely used a larger dt (>= {likely:.3g}; dt = 1 if its parameters "
                "are per step, as Sinabs writes them)")
    if isinstance(node, (n.LIF, n.CubaLIF)):
        tau = np.asarray(node.tau if isinstance(node, n.LIF) else node.tau_mem)
        gain = float(np.max(np.asarray(node.r) * np.asarray(getattr(node, "w_in", 1.0)), initial=0.0))
        steady = gain * x + float(np.max(node.v_leak, initial=0.0))
        if steady < threshold:
            return (f"its largest steady-state potential r*input+v_leak = {steady:.3g} stays below v_threshold={threshold:g} at any dt "
                    "(an input gain r lost in export?)")
        try:
            a = float(leak(np.max(tau), dt, integration)[0])
        except GraphError:  # forward Euler with dt > tau: validate() names that problem
            return None
        reached = steady * (1 - a**horizon)
        if reached >= threshold:
            return None
        likely = -float(np.max(tau)) * math.log(1 - threshold / steady) / horizon
        return (f"with tau={float(np.max(tau)):g} s at dt={dt:g} v rises to at most {reached:.3g} (v_threshold={threshold:g}) in "
                f"{horizon} steps; the tool that wrote it likely used a larger dt (>= {likely:.3g}; dt = 1 if its time constants "
                "count steps, as Sinabs writes them)")
    return None
