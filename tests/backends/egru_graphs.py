"""Graphs holding EGRU nodes, sparse inputs, and the NumPy reference of such a graph.

The reference is ``tests/reference/graph_sim.py`` with its per-node step extended by the
loop-by-loop EGRU of ``tests/reference/egru.py`` (one step at a time, state carried over), so every
other node keeps its reference semantics.
"""

from __future__ import annotations

import numpy as np

import spikeflow as sf
from spikeflow.ir import nodes as n
from spikeflow.ir.egru import EGRU
from tests.reference import egru as egru_ref
from tests.reference import graph_sim

EGRU_FIELDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold")


def egru_node(rng: np.random.Generator, n_in: int, hidden: int, trace_decay: float = 0.0) -> EGRU:
    """An EGRU layer with torch.nn.GRU-like weights and thresholds that leave most outputs zero."""
    bound = 1.5 / np.sqrt(hidden)
    return EGRU(
        weight_ih=rng.uniform(-1, 1, (3 * hidden, n_in)) * 1.5 / np.sqrt(n_in),
        weight_hh=rng.uniform(-bound, bound, (3 * hidden, hidden)),
        bias_ih=rng.uniform(-bound, bound, 3 * hidden),
        bias_hh=rng.uniform(-bound, bound, 3 * hidden),
        threshold=rng.uniform(0.15, 0.4, hidden),
        pseudo_derivative_width=2.0,
        trace_decay=trace_decay,
    )


def single(seed: int) -> sf.Graph:
    """Input -> EGRU -> Affine -> Output."""
    rng = np.random.default_rng(seed)
    return sf.Graph.sequential(n.Input(shape=(5,)), egru_node(rng, 5, 8), n.Affine(weight=rng.normal(size=(3, 8)), bias=rng.normal(size=3)))


def stacked(seed: int) -> sf.Graph:
    """Two stacked EGRU layers, the second with an output trace."""
    rng = np.random.default_rng(seed)
    return sf.Graph.sequential(
        n.Input(shape=(5,)), egru_node(rng, 5, 8), egru_node(rng, 8, 7, trace_decay=0.6),
        n.Affine(weight=rng.normal(size=(3, 7)), bias=rng.normal(size=3)),
    )


def conv(seed: int) -> sf.Graph:
    """A spiking convolutional front end, flattened into an EGRU."""
    rng = np.random.default_rng(seed)
    return sf.Graph.sequential(
        n.Input(shape=(2, 5, 5)),
        n.Conv2d(weight=rng.normal(size=(3, 2, 3, 3)), bias=rng.normal(size=3) * 0.1, padding=1),
        n.LIF(tau=0.01, v_threshold=0.5),
        n.Flatten(),
        egru_node(rng, 75, 6),
        n.Affine(weight=rng.normal(size=(2, 6)), bias=np.zeros(2)),
    )


def loop(seed: int) -> sf.Graph:
    """An EGRU inside a graph-level cycle: its events come back through a Linear feedback."""
    rng = np.random.default_rng(seed)
    nodes = {
        "input": n.Input(shape=(4,)),
        "egru": egru_node(rng, 4, 6),
        "feedback": n.Linear(weight=rng.normal(size=(4, 6)) * 0.5),
        "readout": n.Affine(weight=rng.normal(size=(2, 6)), bias=rng.normal(size=2)),
        "output": n.Output(shape=(2,)),
    }
    edges = [("input", "egru"), ("egru", "feedback"), ("feedback", "egru"), ("egru", "readout"), ("readout", "output")]
    return sf.Graph(nodes, edges, dt=1e-3).validate()


GRAPHS = {"single": single, "stacked": stacked, "conv": conv, "loop": loop}


def sparse_inputs(graph: sf.Graph, seed: int, steps: int = 12, batch: int = 3, density: float = 0.4) -> np.ndarray:
    """``[T, B, ...]`` normal values, most of them zero (so event mode skips input rows too)."""
    rng = np.random.default_rng(seed + 100)
    shape = (steps, batch) + graph.flatten().nodes["input"].shape
    return np.where(rng.random(shape) < density, rng.normal(size=shape) * 1.5, 0.0)


def egru_names(graph: sf.Graph) -> list[str]:
    return [k for k, v in graph.flatten().nodes.items() if isinstance(v, EGRU)]


def _step_sample(node, x, state, coef, t, _plain=graph_sim.step_sample):
    """graph_sim's per-node step, plus one EGRU step from tests/reference/egru.py."""
    if not isinstance(node, EGRU):
        return _plain(node, x, state, coef, t)
    hidden = node.hidden_size
    if state is None:
        state = {"v": np.zeros(hidden), "y": np.zeros(hidden), "out": np.zeros(hidden)}
    p = {k: getattr(node, k) for k in EGRU_FIELDS}
    fw = egru_ref.forward(p, x[None, None], state["v"][None], state["y"][None])
    y, c = fw["y"][0, 0], fw["c"][0, 0]
    a = float(node.trace_decay)
    out = a * state["out"] + (1 - a) * y if a else y
    return out, {"v": c, "y": y, "out": out}


def reference(graph: sf.Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every node's ``[T, B, ...]`` output, from the slow NumPy references."""
    original = graph_sim.step_sample
    graph_sim.step_sample = _step_sample
    try:
        return graph_sim.simulate(graph, x)
    finally:
        graph_sim.step_sample = original
