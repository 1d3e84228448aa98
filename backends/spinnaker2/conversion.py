"""Converted networks (:func:`spikeflow.convert.ann_to_snn`) on SpiNNaker 2: the half-threshold pulse
becomes each IF population's initial membrane, AvgPool2d a SumPool2d folded into the projection,
and a weight layer shown by an Output gets a readout population.

* On the chip a PE's neuron state lives in its SRAM and can start at any value, so the pulse
  sub-graph is mapped as what it is (:mod:`spikeflow.backends.pulse`): an initial membrane value
  per neuron, stored in the PE image (``neurons/v_init``) and loaded into the state before every
  sample. The pulse nodes take no PE, route or synapse; the dequantised graph keeps them.
* An AvgPool2d (stride = kernel) becomes a SumPool2d and its ``1/(kh*kw)`` moves into the weight
  layer after it, where the target folds pooling into the projection.
* A converted network's Output shows its last weight layer's values; SpiNNaker 2 outputs are
  populations, so a pass-through readout goes behind it: an LI with ``tau = dt``, ``r = 1``,
  ``v_leak = 0`` under Euler integration (``v = 0*v + 1*x``: exactly the layer's values, in float
  and in fixed point).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from spikeflow.ir import Graph
from spikeflow.ir import nodes as n

from .. import pulse as pulse_mod
from .check import WEIGHTS, DesignRuleError
from .target import precision

READOUT_SUFFIX = "_readout"


def split(g: Graph) -> tuple[Graph, "pulse_mod.Pulse | None"]:
    """``(graph the chip maps, pulse)`` of a flat, validated graph; both unchanged but for a
    converted one. Raises :class:`~.check.DesignRuleError` naming the node."""
    if not isinstance(g.metadata.get("conversion"), dict):
        return g, None
    names = set(pulse_mod.pulse_names(g, DesignRuleError))
    g = _with_readouts(_sum_pools(g, names))
    return pulse_mod.split(g, DesignRuleError, precision())


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
