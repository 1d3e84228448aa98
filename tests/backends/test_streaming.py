"""Simulator.step keeps state between chunks: chunked runs equal one call."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spikeflow as sf
from spikeflow.backends import Simulator, simulate
from spikeflow.errors import DataError
from spikeflow.ir import nodes as n

from .helpers import assert_identical
from .strategies import dense_graphs, spike_inputs


def _chunks(x, cuts):
    edges = [0, *sorted(set(cuts)), len(x)]
    return [x[a:b] for a, b in zip(edges, edges[1:]) if b > a]


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_chunks_equal_one_call(data):
    graph = data.draw(dense_graphs())
    x = data.draw(spike_inputs(graph))
    backend = data.draw(st.sampled_from(["numba-event", "numba-clock"]))
    cuts = data.draw(st.lists(st.integers(1, max(len(x) - 1, 1)), max_size=3))
    names = list(graph.flatten().nodes)
    whole = simulate(graph, x, backend=backend, record=names)
    sim = Simulator(graph, backend=backend, record=names)
    parts = [sim.step(c) for c in _chunks(x, cuts)]
    for attr in ("outputs", "spikes", "traces"):
        for k, v in getattr(whole, attr).items():
            assert np.array_equal(np.concatenate([getattr(p, attr)[k] for p in parts]), v), (attr, k)
    assert sum(p.stats["synaptic_events"] for p in parts) == whole.stats["synaptic_events"]
    sim.reset()
    assert_identical(sim.step(x), whole)


def _event_graph():
    rng = np.random.default_rng(0)
    return sf.Graph.sequential(
        n.Input(shape=(2, 3, 4)), n.Flatten(), n.Linear(weight=rng.normal(0, 1, (5, 24))), n.LIF(tau=0.01, v_threshold=0.5), dt=1e-3
    )


def _events(rng, count, t_max):
    ev = np.zeros(count, dtype=[("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
    ev["x"], ev["y"], ev["p"] = rng.integers(0, 4, count), rng.integers(0, 3, count), rng.integers(0, 2, count)
    ev["t"] = np.sort(rng.integers(0, t_max, count))
    return ev


def test_event_stream_in_chunks_equals_binned_dense_input():
    rng = np.random.default_rng(1)
    ev = _events(rng, 200, 30_000)  # 30 steps of 1 ms
    dense = np.zeros((30, 1, 2, 3, 4))
    for e in ev:
        dense[e["t"] // 1000, 0, e["p"], e["y"], e["x"]] += 1
    g = _event_graph()
    whole = simulate(g, dense, backend="numba-event", record=["lif3"])
    assert np.array_equal(simulate(g, ev, backend="numba-event", sensor_size=(4, 3, 2)).output, whole.output)
    sim = Simulator(g, sensor_size=(4, 3, 2), record=["lif3"])
    parts = [sim.step(ev[ev["t"] < 12_000], n_steps=12), sim.step(ev[(ev["t"] >= 12_000) & (ev["t"] < 20_000)], n_steps=8),
             sim.step(ev[ev["t"] >= 20_000], n_steps=10)]
    assert np.array_equal(np.concatenate([p.spikes["lif3"] for p in parts]), whole.spikes["lif3"])
    with pytest.raises(DataError, match="before"):
        sim.step(ev[:5])


def test_stream_rejects_a_changed_batch_size():
    sim = Simulator(_event_graph())
    sim.step(np.zeros((3, 2, 2, 3, 4)))
    with pytest.raises(DataError, match="batch size"):
        sim.step(np.zeros((3, 1, 2, 3, 4)))
    sim.reset()
    assert sim.step(np.zeros((3, 1, 2, 3, 4))).output.shape == (3, 1, 5)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.integers(1, 60), st.integers(0, 400))
def test_event_binning_kernel_equals_unique_of_the_keys(seed, n_rows, n_cols, n_events):
    """The per-step entries of streamed events: columns ascending per row, repeats counted, as
    np.unique of ``row * n_cols + col`` gives them."""
    from spikeflow.backends.numba.kernels import bin_entries

    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(0, n_rows, n_events), rng.integers(0, n_cols, n_events)
    indptr, indices, counts = bin_entries(rows, cols, n_rows, n_cols)
    keys, want = np.unique(rows * n_cols + cols, return_counts=True)
    assert np.array_equal(indices, keys % n_cols) and np.array_equal(counts, want)
    assert np.array_equal(indptr, np.concatenate([[0], np.cumsum(np.bincount(keys // n_cols, minlength=n_rows))]))
