"""The half-threshold pulse of a converted graph (:func:`spikeflow.convert.ann_to_snn`) as what it
stands for: an initial membrane value per neuron of each IF layer. Shared by the hardware targets.

The conversion starts every IF membrane at :math:`\\lambda/2`. The IR has no initial-state field,
so the graph carries a small *pulse sub-graph* (``graph.metadata["conversion"]["pulse_nodes"]``)
that adds the value to each IF layer's input at step 0 only. A target whose neuron state can start
at any value splits the pulse off (:func:`split`: it then takes no hardware), keeps it in its
dequantised graph (:func:`restore`) so that ``sf.simulate(prog.graph, ...)`` still runs it, and
stores the initial membranes that a fixed-point run of that graph computes
(:func:`initial_values`): the exported integers are the simulator's own.

:func:`split` checks that the pulse really is one: only pulse nodes and an Input feed it, it
ignores the Input's values, every node leaving it is a Linear / Conv2d *injector* feeding one IF
layer, and float runs show each injector nonzero at step 0 only. Starting the membrane at the
pulse's value gives the simulator's step 0 exactly when the IF layer's gain ``dt*r`` is exactly one
in fixed point (then ``shift(c*x) == x``) and the pulse is summed last among the layer's sources
(or the layer has one other source): both then compute ``sat(S + y_pulse)`` with ``S`` the
saturating sum of the other sources. Anything else is refused, naming the node, with the target's
error class.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from spikeflow.ir import Graph
from spikeflow.ir import nodes as n
from spikeflow.ir.discretise import coefficients

PULSE_TYPES = (n.Affine, n.Linear, n.Conv2d, n.Scale, n.Delay, n.Flatten, n.AvgPool2d)
"""Node types the conversion's pulse sub-graph is made of."""
INJECTORS = (n.Linear, n.Conv2d)


@dataclass
class Pulse:
    """The pulse sub-graph of a converted graph, split off the graph the chip maps."""

    nodes: dict  # name -> node (every pulse node)
    edges: list  # every edge with a pulse node at either end
    injectors: dict  # IF population -> the pulse node feeding it


def pulse_names(g: Graph, error) -> list[str]:
    """The pulse nodes a converted graph's metadata lists (empty for other graphs)."""
    meta = g.metadata.get("conversion")
    names = (meta.get("pulse_nodes") or []) if isinstance(meta, dict) else []
    if not isinstance(names, (list, tuple)) or not all(isinstance(k, str) for k in names):
        raise error(f"graph metadata conversion.pulse_nodes: expected a list of node names, got {names!r}")
    return list(names)


def split(g: Graph, error, fixed=None) -> tuple[Graph, Pulse | None]:
    """``(graph without the pulse, pulse)`` of a flat, validated graph; ``pulse`` is None for a graph
    without one. ``fixed``: the target's FixedPoint, to check each IF layer's gain now (else
    :func:`initial_values` does). Raises ``error`` (the target's error class) naming the node."""
    names = pulse_names(g, error)
    if not names:
        return g, None
    pulse = set(names)
    for name in names:
        if name not in g.nodes:
            raise error(f"node {name!r}: listed as a pulse node in metadata['conversion'] but not in the graph")
        if not isinstance(g.nodes[name], PULSE_TYPES):
            raise error(f"node {name!r} of type {type(g.nodes[name]).__name__}: not a node of the half-threshold pulse "
                         "(Affine, Linear, Conv2d, Scale, Delay, Flatten, AvgPool2d); the pulse sub-graph was edited")
    injectors: dict[str, str] = {}
    for a, b in g.edges:
        if b in pulse and a not in pulse:
            if not isinstance(g.nodes[a], n.Input):
                raise error(f"node {b!r}: pulse node fed by {a!r} ({type(g.nodes[a]).__name__}); only an Input may feed the pulse")
        elif a in pulse and b not in pulse:
            target, node = g.nodes[b], g.nodes[a]
            if not isinstance(target, n.IF):
                raise error(f"node {a!r}: the pulse feeds {b!r} of type {type(target).__name__}; an initial membrane maps onto IF "
                             "layers only")
            if not isinstance(node, INJECTORS) or b in injectors or a in injectors.values():
                raise error(f"node {a!r}: the pulse must reach IF layer {b!r} through one Linear or Conv2d node of its own")
            if isinstance(node, n.Conv2d) and np.any(np.asarray(node.bias) != 0):
                raise error(f"node {a!r}: pulse convolution with a nonzero bias adds input at every step")
            injectors[b] = a
    if not injectors:
        raise error(f"graph metadata conversion.pulse_nodes {sorted(pulse)}: no pulse node feeds an IF layer")
    for post, inj in injectors.items():
        _check_order(g, post, inj, error)
        if fixed is not None:
            _check_gain(g, post, inj, fixed, error)
    _check_step_zero_only(g, pulse, injectors, error)
    nodes = {k: v for k, v in g.nodes.items() if k not in pulse}
    edges = [(a, b) for a, b in g.edges if a not in pulse and b not in pulse]
    meta = {**g.metadata, "conversion": {k: v for k, v in g.metadata["conversion"].items() if k != "pulse_nodes"}}  # split off
    core = Graph(nodes, edges, dt=g.dt, integration=g.integration, metadata=meta).validate()
    return core, Pulse({k: g.nodes[k] for k in names}, [(a, b) for a, b in g.edges if a in pulse or b in pulse], injectors)


def _check_order(g: Graph, post: str, inj: str, error) -> None:
    others = sorted(a for a, b in g.edges if b == post and a != inj)
    if len(others) > 1 and others[-1] > inj:
        raise error(f"node {inj!r}: IF layer {post!r} sums {others} besides the pulse, and {others[-1]!r} after it (sources add in "
                    "name order); the initial membrane matches the simulator's step exactly when the pulse is added last")


def _check_gain(g: Graph, post: str, inj: str, fixed, error) -> None:
    c = coefficients(g.nodes[post], g.dt, g.integration)["c"]
    ints, _ = fixed.quantise_role(np.asarray(c, np.float64).reshape(-1), "coef")
    if np.any(ints != 1 << fixed.coef_frac):
        raise error(f"node {inj!r}: IF layer {post!r} has input gain {np.unique(np.asarray(c)).tolist()}; folding the pulse into "
                    "an initial membrane needs gain dt*r = 1 (what ann_to_snn builds)")


def _check_step_zero_only(g: Graph, pulse: set, injectors: dict, error) -> None:
    """Float runs of the pulse alone, on zeros and on random inputs: every injector must be the same
    in both (the pulse ignores the input) and zero after step 0."""
    inputs = sorted({a for a, b in g.edges if b in pulse and a not in pulse})
    steps = 2 + sum(int(np.max(coefficients(g.nodes[k], g.dt, g.integration)["steps"], initial=0))
                    for k in pulse if isinstance(g.nodes[k], n.Delay))
    quiet = _run_pulse(g, pulse, inputs, injectors, steps, precision=None)
    noisy = _run_pulse(g, pulse, inputs, injectors, steps, precision=None, seed=0)
    for post, inj in injectors.items():
        if not np.array_equal(quiet[inj], noisy[inj]):
            raise error(f"node {inj!r}: the pulse into IF layer {post!r} depends on the input; the pulse sub-graph was edited")
        late = quiet[inj][1:]
        if np.any(late != 0):
            t = int(np.nonzero(np.any(late.reshape(late.shape[0], -1) != 0, axis=1))[0][0]) + 1
            raise error(f"node {inj!r}: the pulse into IF layer {post!r} is nonzero at step {t}; only a step-0 pulse maps onto an "
                         "initial membrane")


def _run_pulse(g: Graph, pulse: set, inputs: list, injectors: dict, steps: int, precision, seed: int | None = None, stats: bool = False):
    """Traces ``[T, ...]`` of the injectors, from a run of the Inputs and pulse nodes alone on zeros
    (or, with ``seed``, on standard normal inputs); with ``stats`` also its count of
    saturated values and parameters."""
    from . import simulate

    nodes = {k: g.nodes[k] for k in (*inputs, *sorted(pulse))}
    edges = [(a, b) for a, b in g.edges if b in pulse]
    shapes = g.shapes()
    for inj in injectors.values():
        nodes[f"{inj}_out"] = n.Output(shape=shapes[inj])
        edges.append((inj, f"{inj}_out"))
    sub = Graph(nodes, edges, dt=g.dt, integration=g.integration).validate()
    rng = None if seed is None else np.random.default_rng(seed)
    x = {k: np.zeros((steps, 1, *shapes[k])) if rng is None else rng.normal(size=(steps, 1, *shapes[k])) for k in inputs}
    kwargs = {} if precision is None else {"precision": precision}
    res = simulate(sub, x if len(inputs) > 1 else x[inputs[0]], backend="numba-event", record=sorted(injectors.values()), **kwargs)
    traces = {k: np.asarray(res.traces[k])[:, 0] for k in injectors.values()}
    return (traces, int(res.stats.get("overflows", 0)) + int(res.stats.get("saturated_params", 0))) if stats else traces


def restore(qgraph: Graph, pulse: Pulse, scales: dict[str, float]) -> Graph:
    """The dequantised graph with the pulse put back, each injector scaled like its IF layer."""
    nodes = dict(qgraph.nodes)
    for name, node in pulse.nodes.items():
        nodes[name] = node
    for post, inj in pulse.injectors.items():
        nodes[inj] = _scaled(pulse.nodes[inj], scales.get(post, 1.0))
    meta = {**qgraph.metadata, "conversion": {**qgraph.metadata.get("conversion", {}), "pulse_nodes": list(pulse.nodes)}}
    return Graph(nodes, [*qgraph.edges, *pulse.edges], dt=qgraph.dt, integration=qgraph.integration, metadata=meta).validate()


def _scaled(node, scale: float):
    return replace(node, weight=np.asarray(node.weight, np.float64) * scale)


def initial_values(qgraph: Graph, pulse: Pulse, fixed, error) -> dict[str, np.ndarray]:
    """Initial membrane integers per IF layer: the pulse's step-0 value in ``qgraph``, computed by
    the numba fixed-point simulator itself (so the two agree by construction)."""
    inputs = sorted({a for a, b in qgraph.edges if b in pulse.nodes and a not in pulse.nodes})
    traces, overflows = _run_pulse(qgraph, set(pulse.nodes), inputs, pulse.injectors, 2, precision=fixed, stats=True)
    if overflows:
        raise error(f"nodes {sorted(pulse.nodes)}: the half-threshold pulse saturates the target's {fixed.state_bits}-bit state "
                    f"format ({fixed.state_frac} fractional bits) in {overflows} places; its initial membranes would be wrong")
    out = {}
    for post, inj in pulse.injectors.items():  # the hardware graph may have more sources (row tiles)
        _check_order(qgraph, post, inj, error)
        _check_gain(qgraph, post, inj, fixed, error)
        tr = traces[inj]
        if np.any(tr[1:] != 0):
            raise error(f"node {inj!r}: after quantisation the pulse into {post!r} is nonzero at step 1")
        ints = tr[0].reshape(-1) * 2.0**fixed.state_frac
        if np.any(ints != np.rint(ints)):
            raise error(f"node {inj!r}: the simulator's pulse value is off the state grid")
        out[post] = np.rint(ints).astype(np.int64)
    return out
