"""Converted networks (:func:`spikeflow.convert.ann_to_snn`) on SpiNNaker 2: the half-threshold pulse
becomes each IF population's initial membrane, a weight layer shown by an Output becomes a readout.

The conversion starts every IF membrane at :math:`\\lambda/2`. The IR has no initial-state field, so
the graph carries a small *pulse sub-graph* (``graph.metadata["conversion"]["pulse_nodes"]``) that
adds the value to each IF layer's input at step 0 only. On the chip a PE's neuron state lives in
its SRAM and can start at any value, so the target maps the pulse as what it is: an initial
membrane value per neuron, stored in the PE image (``neurons/v_init``) and loaded into the state
before every inference. The pulse nodes take no PE, route or synapse.

:func:`split` checks that the pulse really is one: only pulse nodes and an Input feed it, it
ignores the Input's values, every node leaving it is a Linear / Conv2d *injector* feeding
one IF layer, and a float run shows each injector nonzero at step 0 only. Anything else (a pulse
edited by hand, a pulse into a LIF, a leaking pulse) is a :class:`~.check.DesignRuleError` naming
the node. The dequantised graph keeps the pulse (``sf.simulate(prog.graph, ...)`` runs it); the
initial values are read off a fixed-point run of that graph (:func:`initial_values`), so the
exported integers are the simulator's own. They equal the simulator's step by construction when
the IF layer's gain is exactly one in fixed point and the pulse is the layer's only other input
besides at most one projection (then both compute ``sat(y_projection + y_pulse)`` at step 0);
:func:`split` refuses other cases.

An AvgPool2d (stride = kernel) becomes a SumPool2d and its ``1/(kh*kw)`` moves into the weight
layer after it, where the target folds pooling into the projection.

A converted network's Output shows its last weight layer's values; SpiNNaker 2 outputs are
populations, so :func:`split` puts a pass-through readout behind it: an LI with ``tau = dt``,
``r = 1``, ``v_leak = 0`` under Euler integration (``v = 0*v + 1*x``: exactly the layer's values,
in float and in fixed point).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from spikeflow.ir import Graph
from spikeflow.ir import nodes as n
from spikeflow.ir.discretise import coefficients

from .check import WEIGHTS, DesignRuleError
from .target import precision

PULSE_TYPES = (n.Affine, n.Linear, n.Conv2d, n.Scale, n.Delay, n.Flatten, n.AvgPool2d)
"""Node types the conversion's pulse sub-graph is made of."""
INJECTORS = (n.Linear, n.Conv2d)
READOUT_SUFFIX = "_readout"


@dataclass
class Pulse:
    """The pulse sub-graph of a converted graph, split off the graph the chip maps."""

    nodes: dict  # name -> node (every pulse node)
    edges: list  # every edge with a pulse node at either end
    injectors: dict  # IF population -> the pulse node feeding it


def split(g: Graph) -> tuple[Graph, Pulse | None]:
    """``(graph the chip maps, pulse)`` of a flat, validated graph; ``pulse`` is None for a graph
    that is not a converted one. Raises :class:`~.check.DesignRuleError` naming the node."""
    meta = g.metadata.get("conversion")
    if not isinstance(meta, dict):
        return g, None
    names = meta.get("pulse_nodes") or []
    if not isinstance(names, (list, tuple)) or not all(isinstance(k, str) for k in names):
        raise DesignRuleError(f"graph metadata conversion.pulse_nodes: expected a list of node names, got {names!r}")
    pulse = set(names)
    g = _with_readouts(_sum_pools(g, pulse))
    if not names:
        return g, None
    for name in names:
        if name not in g.nodes:
            raise DesignRuleError(f"node {name!r}: listed as a pulse node in metadata['conversion'] but not in the graph")
        if not isinstance(g.nodes[name], PULSE_TYPES):
            raise DesignRuleError(f"node {name!r} of type {type(g.nodes[name]).__name__}: not a node of the half-threshold pulse "
                         "(Affine, Linear, Conv2d, Scale, Delay, Flatten, AvgPool2d); the pulse sub-graph was edited")
    injectors: dict[str, str] = {}
    for a, b in g.edges:
        if b in pulse and a not in pulse:
            if not isinstance(g.nodes[a], n.Input):
                raise DesignRuleError(f"node {b!r}: pulse node fed by {a!r} ({type(g.nodes[a]).__name__}); only an Input may feed the pulse")
        elif a in pulse and b not in pulse:
            target, node = g.nodes[b], g.nodes[a]
            if not isinstance(target, n.IF):
                raise DesignRuleError(f"node {a!r}: the pulse feeds {b!r} of type {type(target).__name__}; an initial membrane maps onto IF "
                             "layers only")
            if not isinstance(node, INJECTORS) or b in injectors or a in injectors.values():
                raise DesignRuleError(f"node {a!r}: the pulse must reach IF layer {b!r} through one Linear or Conv2d node of its own")
            if isinstance(node, n.Conv2d) and np.any(np.asarray(node.bias) != 0):
                raise DesignRuleError(f"node {a!r}: pulse convolution with a nonzero bias adds input at every step")
            injectors[b] = a
    if not injectors:
        raise DesignRuleError(f"graph metadata conversion.pulse_nodes {sorted(pulse)}: no pulse node feeds an IF layer")
    for post, inj in injectors.items():
        others = [a for a, b in g.edges if b == post and a != inj]
        if len(others) > 1:
            raise DesignRuleError(f"node {inj!r}: IF layer {post!r} sums {len(others)} projections besides the pulse; its initial membrane "
                         "matches the simulator's step exactly with at most one")
        c = coefficients(g.nodes[post], g.dt, g.integration)["c"]
        fixed = precision()
        ints, _ = fixed.quantise_role(np.asarray(c, np.float64).reshape(-1), "coef")
        if np.any(ints != 1 << fixed.coef_frac):
            raise DesignRuleError(f"node {inj!r}: IF layer {post!r} has input gain {np.unique(np.asarray(c)).tolist()}; folding the pulse into "
                         "an initial membrane needs gain dt*r = 1 (what ann_to_snn builds)")
    _check_step_zero_only(g, pulse, injectors)
    nodes = {k: v for k, v in g.nodes.items() if k not in pulse}
    edges = [(a, b) for a, b in g.edges if a not in pulse and b not in pulse]
    meta = {**g.metadata, "conversion": {k: v for k, v in meta.items() if k != "pulse_nodes"}}  # the pulse is split off
    core = Graph(nodes, edges, dt=g.dt, integration=g.integration, metadata=meta).validate()
    return core, Pulse({k: g.nodes[k] for k in names}, [(a, b) for a, b in g.edges if a in pulse or b in pulse], injectors)


def _sum_pools(g: Graph, pulse: set) -> Graph:
    """Each AvgPool2d (outside the pulse) as a SumPool2d, its ``1/(kh*kw)`` folded into the weight
    layer it feeds (through Flatten), where the target folds pooling into the projection."""
    pools = [k for k, v in g.nodes.items() if isinstance(v, n.AvgPool2d) and k not in pulse]
    if not pools:
        return g
    nodes = dict(g.nodes)
    for name in pools:
        pool = g.nodes[name]
        if tuple(pool.kernel_size) != tuple(pool.stride):
            raise DesignRuleError(f"node {name!r}: AvgPool2d with kernel {tuple(pool.kernel_size)} and stride {tuple(pool.stride)}; the target folds "
                         "pooling into the next projection, which needs non-overlapping windows (stride = kernel)")
        here = name
        while True:
            after = [b for a, b in g.edges if a == here]
            if len(after) != 1:
                raise DesignRuleError(f"node {name!r}: AvgPool2d must lead to exactly one weight layer (through Flatten), {here!r} feeds {after}")
            here = after[0]
            if not isinstance(g.nodes[here], n.Flatten):
                break
        weight = nodes[here]
        if not isinstance(weight, WEIGHTS) or isinstance(weight, n.Scale) or hasattr(weight.weight, "tocsr"):
            raise DesignRuleError(f"node {name!r}: AvgPool2d feeds {here!r} of type {type(weight).__name__}; it must feed a dense Affine, Linear "
                         "or Conv layer")
        kh, kw = tuple(pool.kernel_size)
        nodes[here] = replace(weight, weight=np.asarray(weight.weight, np.float64) / (kh * kw))
        nodes[name] = n.SumPool2d(kernel_size=pool.kernel_size, stride=pool.stride, padding=pool.padding)
    return Graph(nodes, g.edges, dt=g.dt, integration=g.integration, metadata=dict(g.metadata)).validate()


def _with_readouts(g: Graph) -> Graph:
    """The graph with a pass-through LI readout between each Output and the weight layer it shows."""
    src = {k: [a for a, b in g.edges if b == k] for k in g.outputs}
    shown = {}
    for out, feeds in src.items():
        feed = feeds[0]
        while isinstance(g.nodes[feed], n.Flatten):
            feed = next(a for a, b in g.edges if b == feed)
        if isinstance(g.nodes[feed], WEIGHTS):
            shown[out] = feeds[0]
    if not shown:
        return g
    if g.integration != "euler":
        raise DesignRuleError(f"node {next(iter(shown))!r}: a converted network's Output shows a weight layer; its readout needs "
                     f"integration 'euler' (got {g.integration!r})")
    nodes, edges = dict(g.nodes), list(g.edges)
    for out, feed in shown.items():
        name = f"{feed}{READOUT_SUFFIX}"
        if name in nodes:
            raise DesignRuleError(f"node {name!r}: already in the graph; it names the readout of Output {out!r}")
        nodes[name] = n.LI(tau=np.asarray(g.dt), r=np.asarray(1.0), v_leak=np.asarray(0.0))
        edges.remove((feed, out))
        edges += [(feed, name), (name, out)]
    return Graph(nodes, edges, dt=g.dt, integration=g.integration, metadata=dict(g.metadata)).validate()


def _check_step_zero_only(g: Graph, pulse: set, injectors: dict) -> None:
    """Float runs of the pulse alone, on zeros and on random inputs: every injector must be the same
    in both (the pulse ignores the input) and zero after step 0."""
    inputs = sorted({a for a, b in g.edges if b in pulse and a not in pulse})
    steps = 2 + sum(int(np.max(coefficients(g.nodes[k], g.dt, g.integration)["steps"], initial=0))
                    for k in pulse if isinstance(g.nodes[k], n.Delay))
    quiet = _run_pulse(g, pulse, inputs, injectors, steps, precision=None)
    noisy = _run_pulse(g, pulse, inputs, injectors, steps, precision=None, seed=0)
    for post, inj in injectors.items():
        if not np.array_equal(quiet[inj], noisy[inj]):
            raise DesignRuleError(f"node {inj!r}: the pulse into IF layer {post!r} depends on the input; the pulse sub-graph was edited")
        late = quiet[inj][1:]
        if np.any(late != 0):
            t = int(np.nonzero(np.any(late.reshape(late.shape[0], -1) != 0, axis=1))[0][0]) + 1
            raise DesignRuleError(f"node {inj!r}: the pulse into IF layer {post!r} is nonzero at step {t}; only a step-0 pulse maps onto an "
                         "initial membrane")


def _run_pulse(g: Graph, pulse: set, inputs: list, injectors: dict, steps: int, precision, seed: int | None = None) -> dict[str, np.ndarray]:
    """Traces ``[T, ...]`` of the injectors, from a run of the Inputs and pulse nodes alone on zeros
    (or, with ``seed``, on standard normal inputs)."""
    from .. import simulate

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
    return {k: np.asarray(res.traces[k])[:, 0] for k in injectors.values()}


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


def initial_values(qgraph: Graph, pulse: Pulse, fixed) -> dict[str, np.ndarray]:
    """Initial membrane integers per IF population: the pulse's step-0 value in ``qgraph``, computed
    by the numba fixed-point simulator itself (so the two agree by construction)."""
    inputs = sorted({a for a, b in qgraph.edges if b in pulse.nodes and a not in pulse.nodes})
    traces = _run_pulse(qgraph, set(pulse.nodes), inputs, pulse.injectors, 2, precision=fixed)
    out = {}
    for post, inj in pulse.injectors.items():
        tr = traces[inj]
        if np.any(tr[1:] != 0):
            raise DesignRuleError(f"node {inj!r}: after quantisation the pulse into {post!r} is nonzero at step 1")
        ints = tr[0].reshape(-1) * 2.0**fixed.state_frac
        if np.any(ints != np.rint(ints)):
            raise DesignRuleError(f"node {inj!r}: the simulator's pulse value is off the state grid")
        out[post] = np.rint(ints).astype(np.int64)
    return out
