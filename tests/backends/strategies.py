"""Hypothesis strategies: random graphs (node types, sizes, recurrence, skips, conv shapes, nesting)
with continuous random parameters, so that exact threshold ties have probability ~0."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import spikeflow as sf
from spikeflow.ir import nodes as n

DT = 1e-3
NEURONS = ("LIF", "CubaLIF", "LI", "CubaLI", "IF", "I", "Threshold")


def neuron(kind: str, size: int, rng: np.random.Generator, integration: str):
    """A neuron with per-element parameters; gains scaled (r ~ tau/dt: one input moves the
    membrane by about its weight) so that most random graphs spike within a few steps."""
    tau = rng.uniform(2, 20, size) * DT
    thr = rng.uniform(0.3, 1.0, size)
    reset = str(rng.choice(["zero", "subtract"]))
    gain = rng.uniform(0.8, 2.0, size)
    if kind == "LIF":
        return n.LIF(tau=tau, v_threshold=thr, r=gain * tau / DT, v_leak=rng.uniform(-0.1, 0.1, size), v_reset=rng.uniform(-0.2, 0.1, size), reset=reset)
    if kind == "LI":
        return n.LI(tau=tau, r=gain, v_leak=rng.uniform(-0.1, 0.1, size))
    if kind == "CubaLIF":
        return n.CubaLIF(tau_syn=tau, tau_mem=tau * 1.5, v_threshold=thr * 0.5, r=gain * tau * 1.5 / DT, w_in=rng.uniform(1, 3, size), reset=reset)
    if kind == "CubaLI":
        return n.CubaLI(tau_syn=tau, tau_mem=tau * 1.5, r=gain, w_in=rng.uniform(1, 3, size))
    if kind == "IF":
        return n.IF(v_threshold=thr, r=gain / DT * 0.5, v_reset=0.0, reset=reset)
    if kind == "I":
        return n.I(r=gain / DT * 0.1)
    return n.Threshold(threshold=rng.uniform(-0.3, 0.5, size))


@st.composite
def dense_graphs(draw):
    """Input -> (synapse -> neuron) x depth -> Output, with optional recurrence, skip and delay."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    integration = draw(st.sampled_from(["euler", "exact"]))
    size = draw(st.integers(1, 5))
    nodes = {"input": n.Input(shape=(size,))}
    edges = []
    prev, stateful, layers = "input", [], []
    for k in range(draw(st.integers(1, 3))):
        syn = draw(st.sampled_from(["Affine", "Linear", "Linear", "Scale", "Delay"]))
        out = size if syn in ("Scale", "Delay") else draw(st.integers(1, 6))
        name = f"s{k}"
        if syn == "Affine":
            nodes[name] = n.Affine(weight=rng.normal(0, 1.2, (out, size)), bias=rng.normal(0, 0.2, out))
        elif syn == "Linear":
            w = rng.normal(0, 1.2, (out, size)) * (rng.random((out, size)) < draw(st.sampled_from([0.2, 1.0])))
            nodes[name] = n.Linear(weight=w)
        elif syn == "Scale":
            nodes[name] = n.Scale(scale=rng.uniform(0.5, 2.0, size))
        else:
            nodes[name] = n.Delay(delay=rng.integers(0, 3, size) * DT)
        edges.append((prev, name))
        kind = draw(st.sampled_from(NEURONS))
        nodes[f"n{k}"] = neuron(kind, out, rng, integration)
        edges.append((name, f"n{k}"))
        prev, size = f"n{k}", out
        layers.append((f"n{k}", out))
        if nodes[prev].stateful:
            stateful.append((prev, out))
    if stateful and draw(st.booleans()):  # recurrent Linear from a later neuron back to an earlier one
        (src, s_size), (dst, d_size) = sorted(draw(st.lists(st.sampled_from(stateful), min_size=2, max_size=2)), key=lambda p: -int(p[0][1:]))
        nodes["rec"] = n.Linear(weight=rng.normal(0, 0.8, (d_size, s_size)))
        edges += [(src, "rec"), ("rec", dst)]
    if len(layers) > 1 and draw(st.booleans()):  # a skip edge joins a later node's input sum
        (a, sa), (b, sb) = layers[0], layers[-1]
        nodes["skip"] = n.Linear(weight=rng.normal(0, 1.0, (sb, sa)))
        edges += [(a, "skip"), ("skip", b)]
    nodes["output"] = n.Output(shape=(size,))
    edges.append((prev, "output"))
    return sf.Graph(nodes, edges, dt=DT, integration=integration).validate()


@st.composite
def conv_graphs(draw):
    """Conv1d/Conv2d (stride, padding, dilation, groups) -> neuron -> pool -> Flatten -> Affine -> LIF."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    two_d = draw(st.booleans())
    groups = draw(st.sampled_from([1, 1, 2]))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    k = draw(st.integers(1, 3))
    stride, padding, dilation = draw(st.integers(1, 2)), draw(st.integers(0, 1)), draw(st.integers(1, 2))
    side = draw(st.integers(max(3, dilation * (k - 1) + 1), 6))
    spatial = (side, draw(st.integers(max(3, dilation * (k - 1) + 1), 6))) if two_d else (side,)
    conv = n.Conv2d if two_d else n.Conv1d
    w_shape = (c_out, c_in // groups) + (k,) * len(spatial)
    layers = [
        n.Input(shape=(c_in,) + spatial),
        conv(weight=rng.normal(0, 1.0, w_shape), bias=rng.normal(0, 0.1, c_out), stride=stride, padding=padding, dilation=dilation, groups=groups),
        neuron(draw(st.sampled_from(["LIF", "IF", "CubaLIF", "Threshold"])), 1, rng, "euler"),
    ]
    conv_out = sf.Graph.sequential(*layers, dt=DT).shapes()["output"]
    if two_d and draw(st.booleans()):
        pool = draw(st.sampled_from([n.SumPool2d, n.AvgPool2d]))
        kp = draw(st.integers(1, min(2, *conv_out[1:])))
        layers.append(pool(kernel_size=kp, stride=draw(st.integers(1, 2)), padding=draw(st.integers(0, kp // 2))))
        layers.append(n.LI(tau=5 * DT))
    g = sf.Graph.sequential(*layers, dt=DT)
    flat_size = int(np.prod(g.shapes()[list(g.nodes)[-2]]))
    layers += [n.Flatten(), n.Affine(weight=rng.normal(0, 1.0, (3, flat_size)), bias=np.zeros(3)), n.LIF(tau=4 * DT, v_threshold=0.5)]
    return sf.Graph.sequential(*layers, dt=DT)


@st.composite
def spike_inputs(draw, graph, max_steps: int = 12):
    """Binary spikes (or, sometimes, signed analog values) [T, B, ...] for the graph's one Input."""
    shape = graph.nodes[graph.inputs[0]].shape
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t, b = draw(st.integers(min(4, max_steps), max_steps)), draw(st.integers(1, 2))
    if draw(st.integers(0, 4)) == 0:
        return rng.normal(0, 1, (t, b) + shape)
    return (rng.random((t, b) + shape) < draw(st.sampled_from([0.1, 0.3, 0.7]))).astype(np.float64)
