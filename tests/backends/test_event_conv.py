"""The numba-event convolution and pooling scatter: bit-identical to numba-clock's gather on every
geometry (stride, padding, dilation, groups, non-square kernels, Conv1d), from every kind of
source (an Input, a pool, a spiking LIF, a source without a spike list, a sum of sources), in
float64 and float32, in one call or streamed in chunks; and it counts exactly the synaptic events
of its nonzero inputs (a brute-force count over the geometry is the reference)."""

import math

import numpy as np
import pytest

import spikeflow as sf
from spikeflow.backends import Simulator, simulate
from spikeflow.ir import nodes as n

from .helpers import assert_identical, assert_matches_reference, run_all

DT = 1e-3

GEOMETRIES = [  # kernel, stride, padding, dilation, groups
    ((3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((3, 3), (1, 1), (0, 0), (1, 1), 2),
    ((2, 3), (2, 1), (1, 0), (1, 2), 1),
    ((3, 2), (1, 2), (2, 1), (2, 1), 2),
    ((1, 1), (2, 2), (0, 0), (1, 1), 1),
    ((3, 3), (3, 2), (1, 2), (1, 1), 1),
]
POOLS = [(n.SumPool2d, 2, 2, 0), (n.AvgPool2d, 2, 1, 1), (n.SumPool2d, 3, 2, 1), (n.AvgPool2d, 1, 1, 0)]


def _lif():
    return n.LIF(tau=4 * DT, v_threshold=0.5, r=2.0)


def cnn(geometry, pool, seed=0):
    """Input -> conv -> LIF -> pool -> conv -> LIF -> flatten -> affine -> LIF: the second conv
    reads the pool's list, the pool the LIF's, the first conv the Input's."""
    (k, stride, padding, dilation, groups), (pool_type, kp, sp, pp) = geometry, pool
    rng = np.random.default_rng(seed)
    c_in, c1, c2 = 2 * groups, 2 * groups, 4

    first = n.Conv2d(weight=rng.normal(0, 1, (c1, c_in // groups, *k)), bias=rng.normal(0, 0.1, c1), stride=stride, padding=padding,
                     dilation=dilation, groups=groups)
    second = n.Conv2d(weight=rng.normal(0, 1, (c2, c1, 2, 2)), bias=rng.normal(0, 0.1, c2), padding=(1, 1))
    layers = [n.Input(shape=(c_in, 9, 11)), first, _lif(), pool_type(kernel_size=kp, stride=sp, padding=pp), second, _lif()]
    size = math.prod(sf.Graph.sequential(*layers, dt=DT).shapes()["output"])
    layers += [n.Flatten(), n.Affine(weight=rng.normal(0, 1, (3, size)), bias=np.zeros(3)), _lif()]
    return sf.Graph.sequential(*layers, dt=DT)


def inputs(graph, steps=7, batch=2, seed=1, analog=False):
    shape = graph.nodes[graph.inputs[0]].shape
    rng = np.random.default_rng(seed)
    if analog:  # counts and signed values, with exact zeros
        return rng.normal(0, 1, (steps, batch) + shape) * (rng.random((steps, batch) + shape) < 0.4)
    return (rng.random((steps, batch) + shape) < 0.3).astype(np.float64)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("pool", POOLS)
def test_conv_pool_event_equals_clock_and_reference(geometry, pool):
    graph = cnn(geometry, pool)
    x = inputs(graph)
    event, clock = run_all(graph, x, "numba-event"), run_all(graph, x, "numba-clock")
    assert_identical(event, clock)
    assert_matches_reference(graph, x, event)
    assert event.stats["synaptic_events"] == expected_events(graph, x, event)
    assert event.spikes["lif2"].any() or event.spikes["lif5"].any()  # the graphs are not silent


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_analog_input_and_float32(precision):
    graph = cnn(GEOMETRIES[2], POOLS[1])
    x = inputs(graph, analog=True)
    event = run_all(graph, x, "numba-event", precision=precision)
    assert_identical(event, run_all(graph, x, "numba-clock", precision=precision))
    assert event.stats["synaptic_events"] == expected_events(graph, x, event)


def test_sources_without_spike_lists_and_sums():
    """A conv reading a CubaLIF (no spike list), a pool reading a conv's analog output, and a
    conv whose input is the sum of two sources collect their nonzero inputs themselves."""
    rng = np.random.default_rng(3)
    nodes = {
        "input": n.Input(shape=(2, 8, 8)),
        "conv_a": n.Conv2d(weight=rng.normal(0, 1, (3, 2, 3, 3)), bias=np.zeros(3), padding=(1, 1)),
        "cuba": n.CubaLIF(tau_syn=2 * DT, tau_mem=4 * DT, v_threshold=0.3, r=3.0),
        "conv_b": n.Conv2d(weight=rng.normal(0, 1, (2, 3, 3, 3)), bias=rng.normal(0, 0.1, 2), stride=(2, 2), padding=(1, 1)),
        "pool_b": n.AvgPool2d(kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
        "pool_in": n.SumPool2d(kernel_size=(2, 2), stride=(2, 2)),
        "conv_c": n.Conv2d(weight=rng.normal(0, 1, (2, 2, 2, 2)), bias=np.zeros(2), padding=(1, 1)),
        "lif": _lif(),
        "flatten": n.Flatten(),
        "affine": n.Affine(weight=rng.normal(0, 1, (3, 50)), bias=np.zeros(3)),
        "lif_out": _lif(),
        "output": n.Output(shape=(3,)),
    }
    edges = [("input", "conv_a"), ("conv_a", "cuba"), ("cuba", "conv_b"), ("conv_b", "pool_b"), ("input", "pool_in"),
             ("pool_b", "conv_c"), ("pool_in", "conv_c"), ("conv_c", "lif"), ("lif", "flatten"), ("flatten", "affine"), ("affine", "lif_out"),
             ("lif_out", "output")]
    graph = sf.Graph(nodes, edges, dt=DT).validate()
    x = inputs(graph, steps=9)
    event = run_all(graph, x, "numba-event")
    assert_identical(event, run_all(graph, x, "numba-clock"))
    assert_matches_reference(graph, x, event)
    assert event.stats["synaptic_events"] == expected_events(graph, x, event)


def test_conv1d():
    rng = np.random.default_rng(4)
    graph = sf.Graph.sequential(
        n.Input(shape=(2, 13)),
        n.Conv1d(weight=rng.normal(0, 1, (4, 1, 3)), bias=np.zeros(4), stride=(2,), padding=(2,), dilation=(2,), groups=2),
        _lif(),
        n.Conv1d(weight=rng.normal(0, 1, (2, 4, 2)), bias=np.zeros(2)),
        _lif(),
        dt=DT,
    )
    x = inputs(graph)
    event = run_all(graph, x, "numba-event")
    assert_identical(event, run_all(graph, x, "numba-clock"))
    assert event.stats["synaptic_events"] == expected_events(graph, x, event)


def test_streamed_chunks_equal_one_call():
    """Spike lists are scratch: each chunk rebuilds them from the buffers (a pool's list too)."""
    graph = cnn(GEOMETRIES[0], POOLS[0])
    x = inputs(graph, steps=10)
    whole = simulate(graph, x, backend="numba-event", record=["lif2", "lif5"])
    sim = Simulator(graph, record=["lif2", "lif5"])
    parts = [sim.step(x[:4]), sim.step(x[4:5]), sim.step(x[5:])]
    for name in ("lif2", "lif5"):
        assert np.array_equal(np.concatenate([p.spikes[name] for p in parts]), whole.spikes[name])
        assert np.array_equal(np.concatenate([p.traces[name] for p in parts]), whole.traces[name])


def test_demo_cnn_batch_one_equals_batch():
    """The DigitSaccades CNN: one sample at a time through the streaming simulator equals the
    batched call, spike for spike."""
    from spikeflow.models import saccade_cnn

    graph = saccade_cnn(bins=6, duration_us=6e4)
    x = inputs(graph, steps=6, batch=3, analog=False) * 3.0  # event counts
    batched = simulate(graph, x, backend="numba-event", record=["lif1", "lif2"])
    sim = Simulator(graph, record=["lif1", "lif2"])
    for b in range(3):
        sim.reset()
        one = sim.step(x[:, b : b + 1])
        for name in ("lif1", "lif2"):
            assert np.array_equal(one.spikes[name][:, 0], batched.spikes[name][:, b])
        assert np.array_equal(one.output[:, 0], batched.output[:, b])
    assert batched.spikes["lif1"].any()


# ------------------------------------------------------------------ the reference event count


def _fan_out(length, out_len, k, stride, padding, dilation):
    """Per input position: how many (output, tap) pairs it reaches, counted by brute force."""
    fan = np.zeros(length, np.int64)
    for o in range(out_len):
        for kk in range(k):
            i = o * stride - padding + kk * dilation
            if 0 <= i < length:
                fan[i] += 1
    return fan


def _values(result, name, node):
    return result.spikes[name] if node.spiking else result.traces[name]


def expected_events(graph, x, result) -> int:
    """Synaptic events of an event-driven run: each nonzero input of a conv, pool or dense
    (column-layout) synapse counts once per output it reaches."""
    flat = graph.flatten()
    shapes = flat.shapes()
    total = 0
    for name, node in flat.nodes.items():
        sources = sorted(a for a, b in flat.edges if b == name)
        if not isinstance(node, (n.Conv1d, n.Conv2d, n.SumPool2d, n.AvgPool2d, n.Affine, n.Linear)):
            continue
        src = sum(_values(result, a, flat.nodes[a]) if a in result.traces else x for a in sources)
        nonzero = src != 0
        if isinstance(node, (n.Affine, n.Linear)):
            total += int(nonzero.reshape(nonzero.shape[:2] + (-1,)).sum()) * node.weight.shape[0]
            continue
        in_shape, out_shape = shapes[sources[0]], shapes[name]
        if isinstance(node, n.Conv1d):
            k, s, p, d = (node.weight.shape[2],), node.stride, node.padding, node.dilation
            fan = _fan_out(in_shape[1], out_shape[1], k[0], s[0], p[0], d[0])[None, :]
            per = out_shape[0] // node.groups
        elif isinstance(node, n.Conv2d):
            k, s, p, d = node.weight.shape[2:], node.stride, node.padding, node.dilation
            fan = np.outer(*(_fan_out(in_shape[1 + a], out_shape[1 + a], k[a], s[a], p[a], d[a]) for a in range(2)))
            per = out_shape[0] // node.groups
        else:
            k, s, p = node.kernel_size, node.stride, node.padding
            fan = np.outer(*(_fan_out(in_shape[1 + a], out_shape[1 + a], k[a], s[a], p[a], 1) for a in range(2)))
            per = 1
        total += int((nonzero * fan).sum()) * per
    return total
