"""EGRU nodes in ``sf.simulate``: numba-clock, numba-event, the torch backend and the NumPy reference.

Bit-identical in float64: numba-clock and numba-event (everything), and both with the torch
backend on the EGRU events wherever the EGRU's input is computed identically (graph inputs,
spikes). Against the NumPy reference (BLAS matmuls) values agree to rounding.
"""

import numpy as np
import pytest

import spikeflow as sf
from spikeflow.backends import Simulator, simulate
from spikeflow.backends.numba.program import lower
from spikeflow.ir import nodes as n

from .egru_graphs import GRAPHS, egru_names, egru_node, reference, sparse_inputs
from .helpers import assert_identical

SEEDS = (0, 1)


def _run(graph, x, backend, **kwargs):
    return simulate(graph, x, backend=backend, record=list(graph.flatten().nodes), **kwargs)


def _one_egru(seed=0, n_in=5, hidden=8, **kwargs):
    rng = np.random.default_rng(seed)
    return sf.Graph.sequential(n.Input(shape=(n_in,)), egru_node(rng, n_in, hidden, **kwargs))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", sorted(GRAPHS))
def test_clock_event_torch_and_reference_agree(kind, seed):
    graph = GRAPHS[kind](seed)
    x = sparse_inputs(graph, seed)
    clock, event, torch_res = (_run(graph, x, b) for b in ("numba-clock", "numba-event", "torch"))
    assert_identical(clock, event)
    ref = reference(graph, x)
    for name, node in graph.flatten().nodes.items():
        got = event.spikes[name] if node.spiking else event.traces[name]
        np.testing.assert_allclose(got, ref[name], rtol=1e-12, atol=1e-12, err_msg=name)
    for name in egru_names(graph):
        zeros = (ref[name] == 0).mean()
        assert 0.5 < zeros < 0.99, f"{name}: events should be sparse but present, zero fraction {zeros:.2f}"
        if kind != "loop":  # the loop's feedback sum is a torch GEMM: equal only to rounding
            assert np.array_equal(torch_res.traces[name], event.traces[name]), name
    np.testing.assert_allclose(torch_res.output, event.output, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("trace_decay", [0.0, 0.7])
def test_equals_the_standalone_event_runner(trace_decay):
    from spikeflow.backends.numba.egru import run_egru_events

    rng = np.random.default_rng(3)
    layers = [egru_node(rng, 5, 9), egru_node(rng, 9, 9, trace_decay=trace_decay)]
    graph = sf.Graph.sequential(n.Input(shape=(5,)), *layers)
    x = sparse_inputs(graph, 3, steps=20, batch=2)
    res = simulate(graph, x, backend="numba-event", sparse=False)
    runner = run_egru_events(layers, x, weights="dense")
    assert np.array_equal(res.output, runner.output)
    assert res.stats["synaptic_events"] == runner.stats.synaptic_ops
    assert res.stats["neuron_updates"] == runner.stats.neuron_updates == 20 * 2 * 18


def _expected_work(node, x, y, event: bool) -> int:
    """Multiply-adds of the two projections: dense clock does all, event mode only nonzero inputs
    and only the recurrent-matrix columns of units whose last ``y`` was an event."""
    rows = 3 * node.hidden_size
    if not event:
        return x.shape[0] * x.shape[1] * rows * (node.input_size + node.hidden_size)
    y_prev = np.concatenate([np.zeros_like(y[:1]), y[:-1]])
    return rows * (int(np.count_nonzero(x)) + int(np.count_nonzero(y_prev)))


@pytest.mark.parametrize("backend", ["numba-clock", "numba-event"])
def test_stats_count_the_synaptic_work_actually_done(backend):
    graph = _one_egru(seed=4, hidden=10)
    node = graph.nodes["egru1"]
    x = sparse_inputs(graph, 4, steps=30, batch=3, density=0.3)
    res = _run(graph, x, backend)
    y = res.traces["egru1"]
    assert 0.5 < (y == 0).mean() < 0.99
    expected = _expected_work(node, x, y, event=backend == "numba-event")
    assert res.stats["synaptic_events"] == expected
    assert res.stats["neuron_updates"] == 30 * 3 * 10
    if backend == "numba-event":  # the point of event mode: far less work than the dense count
        assert expected < 0.5 * _expected_work(node, x, y, event=False)


def test_pruned_weights_run_as_csr_and_count_stored_synapses():
    rng = np.random.default_rng(5)
    node = egru_node(rng, 6, 10)
    fields = node.to_dict() | {
        "weight_ih": np.where(rng.random(node.weight_ih.shape) < 0.2, node.weight_ih, 0.0),
        "weight_hh": np.where(rng.random(node.weight_hh.shape) < 0.2, node.weight_hh, 0.0),
    }
    pruned = n.Node.from_dict(fields)
    graph = sf.Graph.sequential(n.Input(shape=(6,)), pruned)
    x = sparse_inputs(graph, 5, steps=25, batch=2)
    program = lower(graph, backend="numba-event", event=True)
    assert program.layouts == {"egru1:weight_ih": "csr-columns", "egru1:weight_hh": "csr-columns"}
    csr = _run(graph, x, "numba-event")
    dense = _run(graph, x, "numba-event", sparse=False)
    clock = _run(graph, x, "numba-clock")
    assert_identical(csr, dense)
    assert_identical(csr, clock)
    np.testing.assert_allclose(csr.output, reference(graph, x)["egru1"], rtol=1e-12, atol=1e-12)
    y = csr.traces["egru1"]
    y_prev = np.concatenate([np.zeros_like(y[:1]), y[:-1]])
    fan_ih, fan_hh = np.count_nonzero(pruned.weight_ih, axis=0), np.count_nonzero(pruned.weight_hh, axis=0)
    expected = int(((x != 0) * fan_ih).sum() + ((y_prev != 0) * fan_hh).sum())
    assert csr.stats["synaptic_events"] == expected
    assert clock.stats["synaptic_events"] == 25 * 2 * (np.count_nonzero(pruned.weight_ih) + np.count_nonzero(pruned.weight_hh))


@pytest.mark.parametrize("backend", ["numba-event", "numba-clock"])
@pytest.mark.parametrize("kind", ["stacked", "loop"])
def test_streaming_in_chunks_equals_one_call(kind, backend):
    graph = GRAPHS[kind](2)
    x = sparse_inputs(graph, 2, steps=15, batch=2)
    names = list(graph.flatten().nodes)
    whole = simulate(graph, x, backend=backend, record=names)
    sim = Simulator(graph, backend=backend, record=names)
    parts = [sim.step(x[a:b]) for a, b in ((0, 1), (1, 7), (7, 8), (8, 15))]
    for attr in ("outputs", "traces"):
        for k, v in getattr(whole, attr).items():
            assert np.array_equal(np.concatenate([getattr(p, attr)[k] for p in parts]), v), (attr, k)
    for key in ("synaptic_events", "neuron_updates", "steps"):
        assert sum(p.stats[key] for p in parts) == whole.stats[key]


def test_batch_one_token_at_a_time():
    graph = GRAPHS["stacked"](4)
    x = sparse_inputs(graph, 4, steps=10, batch=3)
    whole = simulate(graph, x, backend="numba-event")
    for b in range(3):  # each sample of a batch is independent: streamed alone, it gives the same
        sim = Simulator(graph)
        steps = [sim.step(x[t : t + 1, b : b + 1]).output for t in range(10)]
        assert np.array_equal(np.concatenate(steps), whole.output[:, b : b + 1])
    sim.reset()
    assert np.array_equal(sim.step(x[:, :1]).output, whole.output[:, :1])


def test_float32_runs_close_to_float64():
    graph = GRAPHS["single"](0)
    x = sparse_inputs(graph, 0, steps=8)
    r64 = _run(graph, x, "numba-event")
    r32 = _run(graph, x, "numba-event", precision="float32")
    assert r32.output.dtype == np.float32
    np.testing.assert_array_equal(r32.traces["egru1"] != 0, r64.traces["egru1"] != 0)
    np.testing.assert_allclose(r32.output, r64.output, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["numba-event", "numba-clock"])
def test_fixed_point_is_refused_naming_the_node(backend):
    graph = GRAPHS["single"](0)
    with pytest.raises(sf.BackendError) as err:
        simulate(graph, sparse_inputs(graph, 0), backend=backend, precision="fixed")
    for word in ("'egru1'", "EGRU", backend, "fixed-point"):
        assert word in str(err.value)


def test_brian2_refuses_egru_naming_node_type_and_backend():
    graph = GRAPHS["single"](0)
    with pytest.raises(sf.BackendError) as err:
        simulate(graph, (sparse_inputs(graph, 0) != 0).astype(float), backend="brian2")
    for word in ("'egru1'", "EGRU", "'brian2'"):
        assert word in str(err.value)


@pytest.mark.parametrize("kind", sorted(GRAPHS))
def test_hdf5_round_trip_then_simulate(kind, tmp_path):
    graph = GRAPHS[kind](1)
    x = sparse_inputs(graph, 1)
    path = tmp_path / f"{kind}.h5"
    sf.save(graph, path)
    back = sf.load(path)
    assert back == graph
    assert_identical(_run(back, x, "numba-event"), _run(graph, x, "numba-event"))


def test_to_nir_raises_naming_the_egru_node():
    graph = GRAPHS["conv"](0)
    with pytest.raises(sf.SpikeflowError, match="'egru4'"):
        sf.to_nir(graph)
