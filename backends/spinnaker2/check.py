"""Design-rule check: which graphs the SpiNNaker 2 target takes, and their populations and projections.

A graph maps to *populations* (Input nodes and neurons; each becomes slices on PEs) joined by
*projections*: a path ``population -> [Delay] -> [SumPool2d] -> [Flatten] -> weight -> [Flatten]
-> population`` with exactly one weight node (Affine, Linear, Conv1d, Conv2d). Every refusal is a
:class:`DesignRuleError` naming the node, the rule and the numbers. The rules mirror
py-spinnaker2's NIR importer (node types, no two weight layers in a row, no CubaLIF after a
convolution, no delay on a convolution, SumPool2d -> Flatten must feed a weight layer) plus the
ones this export's arithmetic needs (non-overlapping pools, delays within the ring buffer).
A converted network's half-threshold pulse is split off first (:mod:`.conversion`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from spikeflow.errors import BackendError
from spikeflow.ir import nodes as n
from spikeflow.ir.discretise import coefficients

from .target import Target


class DesignRuleError(BackendError):
    """A graph breaks a rule of the SpiNNaker 2 target (the message names node, rule and numbers)."""


POPULATION_KINDS = {n.LIF: "lif", n.IF: "lif", n.LI: "lif", n.CubaLIF: "lif_curr_exp", n.CubaLI: "lif_curr_exp"}
"""IR neuron -> py-spinnaker2 population type (LI/CubaLI: a non-spiking readout, voltage recorded)."""
WEIGHTS = (n.Affine, n.Linear, n.Conv1d, n.Conv2d, n.Scale)
"""Weight layers; a Scale node is a one-to-one projection (snnTorch's late reset arrives as one)."""
PASS = (n.Flatten, n.SumPool2d, n.Delay)
ALLOWED = (n.Input, n.Output, *WEIGHTS, *PASS, *POPULATION_KINDS)


@dataclass
class Population:
    name: str
    node: n.Node
    shape: tuple[int, ...]
    kind: str  # "input" or a py-spinnaker2 type

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def spiking(self) -> bool:
        return self.kind == "input" or bool(getattr(self.node, "spiking", False))


@dataclass
class Projection:
    """One path from ``pre`` to ``post`` through the weight node ``name``."""

    name: str
    pre: str
    post: str
    node: n.Node
    source: str  # the node that feeds ``post`` on this path (its summation order key)
    in_shape: tuple[int, ...]  # shape entering the weight node (after pool and flatten)
    pool: n.SumPool2d | None = None
    pool_in: tuple[int, ...] | None = None
    steps: np.ndarray | None = None  # per pre neuron delay from a Delay node (ticks)
    delayed: int = 0  # edges on the path that carry the previous step's value
    bias_delay: int = 0  # of them, those after the weight node (the bias reaches post this many ticks late)

    @property
    def conv(self) -> bool:
        return isinstance(self.node, (n.Conv1d, n.Conv2d))

    @property
    def one_to_one(self) -> bool:
        return isinstance(self.node, n.Scale)

    def delays(self, n_pre: int) -> np.ndarray:
        """Ticks from a pre spike to the post neuron's input, per pre neuron."""
        base = np.zeros(n_pre, np.int64) if self.steps is None else self.steps
        return base + self.delayed


@dataclass
class Network:
    populations: dict[str, Population]  # in execution order
    projections: list[Projection]  # by post population, then summation order
    outputs: dict[str, str]  # Output node -> the population it shows
    graph: object = None
    order: list[str] = field(default_factory=list)
    pulse: object = None  # a converted graph's half-threshold pulse (:class:`.conversion.Pulse`), split off ``graph``

    def incoming(self, post: str) -> list[Projection]:
        return [p for p in self.projections if p.post == post]


def check(graph, target: Target) -> Network:
    """Run every design rule on ``graph``; return its populations and projections."""
    from . import conversion

    flat = graph.validate().flatten()
    g, pulse = conversion.split(flat)
    shapes = graph.shapes() if g is flat else g.shapes()
    order = g.order()
    delayed = set(g.delayed_edges())
    src = {k: sorted(a for a, b in g.edges if b == k) for k in g.nodes}
    dst = {k: sorted(b for a, b in g.edges if a == k) for k in g.nodes}
    for name in order:
        node = g.nodes[name]
        if not isinstance(node, ALLOWED):
            raise DesignRuleError(
                f"node {name!r} of type {type(node).__name__}: not a SpiNNaker 2 node type; the target takes "
                "Input, Output, Affine, Linear, LIF, IF, LI, CubaLIF, CubaLI, Conv1d, Conv2d, SumPool2d, Flatten, Delay")
        if isinstance(node, (*WEIGHTS, *PASS, n.Output)) and len(src[name]) != 1:
            raise DesignRuleError(f"node {name!r} of type {type(node).__name__}: has {len(src[name])} sources; on SpiNNaker 2 only "
                                  "a neuron population sums several projections")
        if isinstance(node, n.SumPool2d) and tuple(node.kernel_size) != tuple(node.stride):
            raise DesignRuleError(f"node {name!r}: SumPool2d with kernel {tuple(node.kernel_size)} and stride {tuple(node.stride)}; "
                                  "the target folds pooling into the next projection, which needs non-overlapping windows (stride = kernel)")
    populations = {k: Population(k, g.nodes[k], shapes[k], "input" if isinstance(g.nodes[k], n.Input) else POPULATION_KINDS[type(g.nodes[k])])
                   for k in order if isinstance(g.nodes[k], (n.Input, *POPULATION_KINDS))}
    projections = []
    for post in populations:
        if populations[post].kind == "input":
            continue
        for first in src[post]:
            projections.append(_walk(g, first, post, populations, shapes, src, delayed, target))
    for name in order:  # every weight node must end up in a projection (no dangling layers)
        if isinstance(g.nodes[name], (*WEIGHTS, *PASS)) and not _reaches_population(name, dst, g, populations):
            raise DesignRuleError(f"node {name!r} of type {type(g.nodes[name]).__name__}: does not lead to a neuron population; "
                                  "on SpiNNaker 2 every layer ends in neurons (add a LIF or LI after it)")
    outputs = {}
    for name in g.outputs:
        feed = src[name][0]
        while isinstance(g.nodes[feed], n.Flatten):
            feed = src[feed][0]
        if feed not in populations:
            raise DesignRuleError(f"node {name!r}: output shows node {feed!r} of type {type(g.nodes[feed]).__name__}; "
                                  "on SpiNNaker 2 an output must be a neuron population (add an LI readout)")
        outputs[name] = feed
    return Network(populations, projections, outputs, g, order, pulse)


def _reaches_population(name, dst, g, populations) -> bool:
    return any(b in populations or (isinstance(g.nodes[b], (*WEIGHTS, *PASS)) and _reaches_population(b, dst, g, populations))
               or isinstance(g.nodes[b], n.Output) for b in dst[name])


def _walk(g, first, post, populations, shapes, src, delayed, target: Target) -> Projection:
    """Follow the path from ``post``'s source ``first`` back to a population."""
    chain, here, prev = [], first, post
    weight = pool = delay_node = None
    n_delayed = bias_delay = late_steps = 0
    while here not in populations:
        node = g.nodes[here]
        n_delayed += (here, prev) in delayed
        if weight is None:
            bias_delay += (here, prev) in delayed
        if isinstance(node, WEIGHTS):
            if weight is not None:
                raise DesignRuleError(f"node {weight!r} follows weight layer {here!r} without neurons in between: two weight layers "
                                      "in a row are not allowed (py-spinnaker2 needs a population between projections)")
            weight = here
        elif isinstance(node, n.SumPool2d):
            if weight is None:
                raise DesignRuleError(f"node {here!r}: SumPool2d reaches population {post!r} without a weight layer after it; "
                                      "a pool (and Flatten) must feed an Affine, Linear or Conv layer")
            pool = here
        elif isinstance(node, n.Delay) and weight is None:  # after the weight layer: the whole projection waits
            late = np.unique(coefficients(node, g.dt, g.integration)["steps"])
            if late.size != 1:
                raise DesignRuleError(f"node {here!r}: a Delay after weight layer must delay every neuron equally, got {late.tolist()} steps")
            late_steps += int(late[0])
        elif isinstance(node, n.Delay):
            if src[here][0] not in populations:
                raise DesignRuleError(f"node {here!r}: Delay must sit directly after a population (a per-neuron axonal delay)")
            delay_node = here
        elif isinstance(node, n.Output):
            raise DesignRuleError(f"node {here!r}: an Output node feeds {prev!r}; outputs must be ends of the graph")
        chain.append(here)
        prev, here = here, src[here][0]
    n_delayed += (here, prev) in delayed
    n_delayed += late_steps
    bias_delay += late_steps
    if weight is None and not chain:
        raise DesignRuleError(f"node {post!r}: population {here!r} feeds it directly; a projection needs a weight layer "
                              "(Affine, Linear or Conv) between two populations")
    if weight is None:
        raise DesignRuleError(f"node {post!r}: the path from {here!r} through {chain} has no weight layer")
    wnode = g.nodes[weight]
    if isinstance(wnode, n.Scale) and pool is not None:
        raise DesignRuleError(f"node {weight!r}: a Scale (one-to-one projection) after SumPool2d {pool!r}; pool into an Affine instead")
    conv = isinstance(wnode, (n.Conv1d, n.Conv2d))
    if conv and isinstance(populations[post].node, (n.CubaLIF, n.CubaLI)):
        raise DesignRuleError(f"node {post!r}: CubaLIF after convolution {weight!r} is not supported by SpiNNaker 2 "
                              "(lif_conv2d populations are current-based without synaptic decay); use LIF")
    steps = None
    if delay_node is not None:
        steps = np.broadcast_to(coefficients(g.nodes[delay_node], g.dt, g.integration)["steps"], shapes[here]).reshape(-1).astype(np.int64)
        if conv and np.any(steps):
            raise DesignRuleError(f"node {weight!r}: convolution after Delay {delay_node!r}; conv projections carry no delay on SpiNNaker 2")
    total = (0 if steps is None else int(steps.max(initial=0))) + n_delayed
    if total > target.max_delay + 1:
        raise DesignRuleError(f"projection {weight!r} ({here!r} -> {post!r}): delay of {total} ticks; a synapse holds at most "
                              f"{target.max_delay} (+1 for a recurrent edge)")
    pool_in = shapes[src[pool][0]] if pool is not None else None
    return Projection(name=weight, pre=here, post=post, node=wnode, source=first, in_shape=shapes[src[weight][0]],
                      pool=g.nodes[pool] if pool is not None else None, pool_in=pool_in, steps=steps, delayed=n_delayed,
                      bias_delay=bias_delay)
