"""Random graphs that together cover every node type the torch backend lowers."""

from __future__ import annotations

import numpy as np

import spikeflow as sf
from spikeflow.ir import nodes as n


def feed_forward(seed: int) -> sf.Graph:
    """Dense chain through every neuron type, Scale, Threshold and Delay."""
    rng = np.random.default_rng(seed)
    return sf.Graph.sequential(
        n.Input(shape=(6,)),
        n.Affine(weight=rng.normal(size=(8, 6)), bias=rng.normal(size=8) * 0.2),
        n.LIF(tau=rng.uniform(0.005, 0.02, 8), v_threshold=0.3, r=rng.uniform(1, 2, 8), v_leak=0.05),
        n.Linear(weight=rng.normal(size=(7, 8))),
        n.CubaLIF(tau_syn=0.004, tau_mem=0.01, v_threshold=0.05, w_in=2.0, reset="subtract"),
        n.Delay(delay=rng.integers(0, 4, 7) * 1e-3),
        n.Scale(scale=rng.uniform(0.5, 2.0, 7)),
        n.IF(v_threshold=0.02, r=rng.uniform(5, 10, 7), reset="subtract"),
        n.Linear(weight=rng.normal(size=(5, 7))),
        n.CubaLI(tau_syn=0.003, tau_mem=0.02),
        n.I(r=3.0),
        n.Threshold(threshold=rng.normal(size=5) * 0.01),
        n.Affine(weight=rng.normal(size=(4, 5)), bias=np.zeros(4)),
        n.LI(tau=0.01, v_leak=0.1),
        dt=1e-3,
        integration="exact" if seed % 2 else "euler",
    )


def conv_stack(seed: int) -> sf.Graph:
    """Conv2d / pooling / Flatten stack, and a Conv1d branch in conv1d_stack."""
    rng = np.random.default_rng(seed)
    return sf.Graph.sequential(
        n.Input(shape=(2, 7, 7)),
        n.Conv2d(weight=rng.normal(size=(4, 2, 3, 3)), bias=rng.normal(size=4) * 0.1, padding=1),
        n.IF(v_threshold=0.004, r=1.0),
        n.SumPool2d(kernel_size=2, stride=2, padding=1),
        n.Conv2d(weight=rng.normal(size=(4, 2, 2, 2)), bias=np.zeros(4), stride=1, dilation=2, groups=2),
        n.LIF(tau=0.01, v_threshold=0.1, reset="subtract"),
        n.AvgPool2d(kernel_size=2, stride=1, padding=1),
        n.Flatten(start_dim=1),
        n.Flatten(),
        n.Affine(weight=rng.normal(size=(5, 4 * 3 * 3)), bias=rng.normal(size=5) * 0.1),
        n.LIF(tau=0.02, v_threshold=0.005),
        dt=1e-3,
    )


def conv1d_stack(seed: int) -> sf.Graph:
    rng = np.random.default_rng(seed)
    return sf.Graph.sequential(
        n.Input(shape=(3, 10)),
        n.Conv1d(weight=rng.normal(size=(6, 1, 3)), bias=rng.normal(size=6) * 0.1, stride=2, padding=1, groups=3),
        n.CubaLIF(tau_syn=0.003, tau_mem=0.01, v_threshold=0.02),
        n.Flatten(start_dim=0, end_dim=-1),
        n.Linear(weight=rng.normal(size=(4, 30))),
        n.LIF(tau=0.01, v_threshold=0.05),
        dt=1e-3,
    )


def recurrent(seed: int) -> sf.Graph:
    """Recurrent loops: LIF <-> Linear (through a Delay), an IF self-loop, a 3-way sum."""
    rng = np.random.default_rng(seed)
    nodes = {
        "input": n.Input(shape=(5,)),
        "in_w": n.Affine(weight=rng.normal(size=(6, 5)), bias=rng.normal(size=6) * 0.1),
        "lif": n.LIF(tau=rng.uniform(0.005, 0.02, 6), v_threshold=0.2),
        "rec_w": n.Linear(weight=rng.normal(size=(6, 6)) * 0.5),
        "delay": n.Delay(delay=rng.integers(0, 3, 6) * 1e-3),
        "skip": n.Linear(weight=rng.normal(size=(6, 5)) * 0.3),
        "if_self": n.IF(v_threshold=0.01, r=5.0, reset="subtract"),
        "out_w": n.Linear(weight=rng.normal(size=(3, 6))),
        "li": n.LI(tau=0.01),
        "output": n.Output(shape=(3,)),
    }
    edges = [
        ("input", "in_w"), ("in_w", "lif"), ("lif", "rec_w"), ("rec_w", "delay"), ("delay", "lif"),
        ("input", "skip"), ("skip", "lif"), ("lif", "if_self"), ("if_self", "if_self"), ("if_self", "out_w"),
        ("out_w", "li"), ("li", "output"),
    ]
    return sf.Graph(nodes, edges, dt=1e-3)


def two_ports(seed: int) -> sf.Graph:
    """Two inputs summed into one neuron, two outputs."""
    rng = np.random.default_rng(seed)
    nodes = {
        "a": n.Input(shape=(4,)),
        "b": n.Input(shape=(3,)),
        "wa": n.Linear(weight=rng.normal(size=(5, 4))),
        "wb": n.Affine(weight=rng.normal(size=(5, 3)), bias=np.ones(5) * 0.1),
        "lif": n.LIF(tau=0.01, v_threshold=0.1),
        "li": n.LI(tau=0.02),
        "spikes": n.Output(shape=(5,)),
        "membrane": n.Output(shape=(5,)),
    }
    edges = [("a", "wa"), ("b", "wb"), ("wa", "lif"), ("wb", "lif"), ("lif", "spikes"), ("lif", "li"), ("li", "membrane")]
    return sf.Graph(nodes, edges, dt=1e-3)


def _rnn_parts(rng):
    inner = {
        "input": n.Input(shape=(4,)),
        "lif": n.CubaLIF(tau_syn=0.003, tau_mem=np.full(4, 0.01), v_threshold=0.01),
        "w": n.Linear(weight=rng.normal(size=(4, 4))),
        "output": n.Output(shape=(4,)),
    }
    edges = [("input", "lif"), ("lif", "w"), ("w", "lif"), ("lif", "output")]
    return inner, edges


def nested(seed: int) -> sf.Graph:
    """A recurrent subgraph nested inside a feed-forward graph."""
    rng = np.random.default_rng(seed)
    inner, inner_edges = _rnn_parts(rng)
    w_in = rng.normal(size=(4, 3))
    return sf.Graph(
        {"input": n.Input(shape=(3,)), "w_in": n.Linear(weight=w_in), "rnn": sf.Graph(inner, inner_edges, dt=1e-3), "output": n.Output(shape=(4,))},
        [("input", "w_in"), ("w_in", "rnn"), ("rnn", "output")],
        dt=1e-3,
    )


def nested_flat(seed: int) -> sf.Graph:
    """:func:`nested` written without nesting (names ``rnn_*``), for the reference simulator."""
    rng = np.random.default_rng(seed)
    inner, _ = _rnn_parts(rng)
    w_in = rng.normal(size=(4, 3))
    return sf.Graph(
        {"input": n.Input(shape=(3,)), "w_in": n.Linear(weight=w_in), "rnn_lif": inner["lif"], "rnn_w": inner["w"], "output": n.Output(shape=(4,))},
        [("input", "w_in"), ("w_in", "rnn_lif"), ("rnn_lif", "rnn_w"), ("rnn_w", "rnn_lif"), ("rnn_lif", "output")],
        dt=1e-3,
    )


GRAPHS = {
    "feed_forward": feed_forward,
    "conv_stack": conv_stack,
    "conv1d_stack": conv1d_stack,
    "recurrent": recurrent,
    "two_ports": two_ports,
    "nested": nested,
}


def random_inputs(graph: sf.Graph, seed: int, T: int = 12, B: int = 2):
    rng = np.random.default_rng(seed + 100)
    shapes = graph.shapes()
    x = {k: rng.uniform(-0.5, 1.5, (T, B) + shapes[k]) for k in graph.inputs}
    return x if len(x) > 1 else x[graph.inputs[0]]
