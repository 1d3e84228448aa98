"""The fused fast path of the numba interpreter: LIF/LI input sums in the neuron pass, Scale nodes
folded into the LIF they feed, spike lists handed to the CSR scatter, uint16/int32 scatter indices.

The hypothesis equivalence tests record every node, which keeps every Scale node unfused; these
tests also run graphs recording nothing, so the folded code is what runs, and compare it with the
unfused program, with numba-clock and with the graph_sim reference.
"""

import numpy as np
import pytest
import scipy.sparse as sparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import spikeflow as sf
from spikeflow.backends import Simulator, simulate
from spikeflow.backends.numba import kernels as K
from spikeflow.backends.numba.program import _pack_indices, lower
from spikeflow.errors import BackendError
from spikeflow.ir import nodes as n
from tests.reference.graph_sim import simulate as reference

from .strategies import dense_graphs, spike_inputs

DT = 1e-3


def _network(size=30, fan_out=8, uniform=True, reset="zero", scale=1.3, seed=0):
    """input -> Scale -> LIF <- sparse recurrent Linear (delayed edge); LIF -> readout -> Output:
    the shape of the benchmark network, small."""
    rng = np.random.default_rng(seed)
    rows = np.concatenate([rng.choice(size, fan_out, replace=False) for _ in range(size)])
    cols = np.repeat(np.arange(size), fan_out)
    recurrent = sparse.csr_array((rng.normal(0.0, 0.4, size * fan_out), (rows, cols)), shape=(size, size))
    if uniform:
        lif = n.LIF(tau=0.02, v_threshold=1.0, r=20.0, reset=reset)
    else:
        lif = n.LIF(tau=rng.uniform(0.005, 0.03, size), v_threshold=rng.uniform(0.5, 1.0, size), r=rng.uniform(5, 20, size),
                    v_leak=rng.uniform(-0.1, 0.1, size), v_reset=rng.uniform(-0.2, 0.1, size), reset=reset)
    nodes = {
        "input": n.Input(shape=(size,)),
        "scale": n.Scale(scale=scale),
        "lif": lif,
        "recurrent": n.Linear(weight=recurrent),
        "readout": n.Linear(weight=rng.normal(0.0, 1.0, (3, size))),
        "out": n.Output(shape=(3,)),
    }
    edges = [("input", "scale"), ("scale", "lif"), ("lif", "recurrent"), ("recurrent", "lif"), ("lif", "readout"), ("readout", "out")]
    return sf.Graph(nodes, edges, dt=DT)


def _spikes(steps=60, size=30, batch=2, rate=0.3, seed=1):
    return (np.random.default_rng(seed).random((steps, batch, size)) < rate).astype(np.float64)


def _codes(program):
    return set(program.ops[:, 0].tolist())


def test_scale_folds_only_when_nobody_looks_at_it():
    g = _network()
    folded = lower(g, backend="numba-event", event=True)
    assert K.OP_LIF_FUSED in _codes(folded) and K.OP_SCALE not in _codes(folded) and K.OP_LIF not in _codes(folded)
    dense = folded.ops[folded.ops[:, 0] == K.OP_DENSE]
    assert (dense[:, 13] >= 0).all()  # both readers of the LIF scatter over its spike list
    assert K.OP_SCALE in _codes(lower(g, backend="numba-event", event=True, keep=["scale"]))
    clock = lower(g, backend="numba-clock")
    assert (clock.ops[clock.ops[:, 0] == K.OP_DENSE][:, 13] == -1).all()  # gathers need no list
    assert K.OP_SCALE in _codes(lower(_network(scale=np.linspace(1.0, 2.0, 30)), backend="numba-event", event=True))


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_fused_network_equals_unfused_clock_and_reference(uniform, reset):
    g = _network(uniform=uniform, reset=reset)
    x = _spikes()
    fused = {b: simulate(g, x, backend=b) for b in ("numba-event", "numba-clock")}
    everything = list(g.flatten().nodes)
    unfused = simulate(g, x, backend="numba-event", record=everything)
    spikes = simulate(g, x, backend="numba-event", record=["lif"])  # the LIF recorded, the Scale still folded
    ref = reference(g, x, record_state=True)
    assert 0 < ref["lif"].sum() < ref["lif"].size  # the network spikes, but not everywhere
    for res in (*fused.values(), spikes):
        assert np.array_equal(res.output, unfused.output)
        assert res.stats["neuron_updates"] == unfused.stats["neuron_updates"]
    assert fused["numba-event"].stats["synaptic_events"] == spikes.stats["synaptic_events"] == unfused.stats["synaptic_events"]
    assert np.array_equal(spikes.spikes["lif"], unfused.spikes["lif"])
    assert np.array_equal(spikes.traces["lif"], unfused.traces["lif"])
    np.testing.assert_array_equal(spikes.spikes["lif"], ref["lif"])
    np.testing.assert_allclose(spikes.traces["lif"], ref["lif:v"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(unfused.output, ref["out"], rtol=1e-12, atol=1e-12)
    # event mode counts only what the spikes send: recurrent fan-out plus the dense readout column
    assert fused["numba-event"].stats["synaptic_events"] == int(ref["lif"].sum()) * (8 + 3)


def test_fused_float32_equals_unfused_float32():
    g = _network(uniform=False)
    x = _spikes()
    a = simulate(g, x, backend="numba-event", precision="float32", record=["lif"])
    b = simulate(g, x, backend="numba-event", precision="float32", record=list(g.flatten().nodes))
    assert a.output.dtype == np.float32
    for k in ("output",):
        assert np.array_equal(getattr(a, k), getattr(b, k))
    assert np.array_equal(a.spikes["lif"], b.spikes["lif"]) and np.array_equal(a.traces["lif"], b.traces["lif"])


def test_spike_lists_survive_chunk_boundaries():
    """The recurrent scatter reads the previous step's spike list; lists are rebuilt from the
    spike buffers at the start of every call, so chunks equal one call."""
    g = _network()
    x = _spikes(steps=50, batch=1)
    whole = simulate(g, x, backend="numba-event")
    sim = Simulator(g)
    parts = [sim.step(x[a:b]) for a, b in ((0, 1), (1, 17), (17, 18), (18, 50))]
    assert np.array_equal(np.concatenate([p.output for p in parts]), whole.output)
    assert sum(p.stats["synaptic_events"] for p in parts) == whole.stats["synaptic_events"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_graphs_folded_equal_unfused(data):
    graph = data.draw(dense_graphs())
    x = data.draw(spike_inputs(graph))
    backend = data.draw(st.sampled_from(["numba-event", "numba-clock"]))
    lean = simulate(graph, x, backend=backend)
    full = simulate(graph, x, backend=backend, record=list(graph.flatten().nodes))
    assert sorted(lean.outputs) == sorted(full.outputs)
    for k in lean.outputs:
        assert np.array_equal(lean.outputs[k], full.outputs[k]), k
    assert lean.stats["synaptic_events"] == full.stats["synaptic_events"]


def test_index_packing_round_trips_in_the_narrowest_width_and_refuses_huge_layers():
    small = np.array([0, 7, 65535, 5, 9], dtype=np.int64)
    packed, layout = _pack_indices(small, 2**16, "w")
    assert layout == K.CSR_COLUMNS16 and packed.dtype == np.int64 and packed.size == 2
    assert np.array_equal(K._uint16_indices(packed, 0, small.size)[: small.size], small)
    large = np.array([0, 7, 2**31 - 1, 5, 9], dtype=np.int64)
    packed, layout = _pack_indices(large, 2**31, "w")
    assert layout == K.CSR_COLUMNS and packed.size == 3
    assert np.array_equal(K._int32_indices(packed, 0, large.size)[: large.size], large)
    with pytest.raises(BackendError, match="'w'"):
        _pack_indices(np.array([2**31]), 2**31 + 1, "w")


def test_layers_with_more_than_65536_outputs_scatter_through_int32_indices():
    """One input spike fans out to 70,000 LIF neurons through a sparse weight (int32 indices);
    the same network cut to 60,000 neurons uses uint16 indices; both match the clock backend."""
    for size in (60_000, 70_000):
        rows = np.arange(0, size, 7)
        w = sparse.csr_array((np.full(rows.size, 2.0), (rows, np.zeros(rows.size, np.int64))), shape=(size, 1))
        g = sf.Graph({"input": n.Input(shape=(1,)), "fc": n.Linear(weight=w), "lif": n.LIF(tau=0.01, v_threshold=1.0, r=10.0),
                      "output": n.Output(shape=(size,))},
                     [("input", "fc"), ("fc", "lif"), ("lif", "output")], dt=1e-3)
        ops = Simulator(g, backend="numba-event").engine.program.ops
        layout = ops[ops[:, 0] == K.OP_DENSE][0, 7]
        assert layout == (K.CSR_COLUMNS16 if size <= 2**16 else K.CSR_COLUMNS)
        x = np.ones((3, 1, 1))
        event = simulate(g, x, backend="numba-event")
        clock = simulate(g, x, backend="numba-clock")
        assert event.output.sum() > 0
        assert np.array_equal(event.output, clock.output)


def _events(x, dt_us):
    """Structured events (x, t, p) of a dense [T, 1, size] spike array, one event per spike."""
    t_idx, i_idx = np.nonzero(x[:, 0])
    ev = np.zeros(t_idx.size, dtype=[("x", np.int64), ("t", np.float64), ("p", np.int64)])
    ev["x"], ev["t"] = i_idx, t_idx * dt_us + 0.5 * dt_us
    return ev


def test_streamed_events_never_densified_equal_dense_input():
    """Simulator.step bins events into per-step entries (SparseSteps) that the INPUT op writes and
    clears one by one; results equal sf.simulate on the same events (binned densely)."""
    g = _network()
    x = _spikes(batch=1)
    ev = _events(x, 1000.0)
    dense = simulate(g, ev, backend="numba-event", sensor_size=(30,), record=["lif", "input"])
    sim = Simulator(g, record=["lif", "input"], sensor_size=(30,))
    whole = sim.step(ev, n_steps=len(x))
    assert np.array_equal(whole.output, dense.output) and np.array_equal(whole.spikes["lif"], dense.spikes["lif"])
    assert np.array_equal(whole.traces["input"], x) and whole.stats == {**whole.stats, "synaptic_events": dense.stats["synaptic_events"]}
    sim.reset()
    parts = [sim.step(ev[(ev["t"] >= a * 1000) & (ev["t"] < b * 1000)], n_steps=b - a) for a, b in ((0, 7), (7, 8), (8, 60))]
    assert np.array_equal(np.concatenate([p.output for p in parts]), dense.output)
    sim.reset()  # a dense chunk between event chunks: the input lists are rebuilt from memory
    mixed = [sim.step(ev[ev["t"] < 7000], n_steps=7), sim.step(x[7:20]), sim.step(ev[ev["t"] >= 20000], n_steps=40)]
    assert np.array_equal(np.concatenate([p.output for p in mixed]), dense.output)


def test_input_lists_feed_a_dense_reader_and_duplicate_events_add_up():
    """Input -> Linear reads the Input's list; two events in one bin count 2, as in bin_events."""
    rng = np.random.default_rng(3)
    g = sf.Graph.sequential(n.Input(shape=(6,)), n.Linear(weight=rng.normal(0, 1, (4, 6))), n.LIF(tau=0.01, v_threshold=0.5, r=10.0), dt=DT)
    ev = np.zeros(5, dtype=[("x", np.int64), ("t", np.float64), ("p", np.int64)])
    ev["x"], ev["t"] = [1, 1, 4, 0, 5], [100.0, 200.0, 300.0, 2500.0, 2600.0]
    program = lower(g, backend="numba-event", event=True)
    inp = program.ops[program.ops[:, 0] == K.OP_INPUT][0]
    assert inp[4] >= 0 and inp[5] == 1
    dense = simulate(g, ev, backend="numba-event", sensor_size=(6,), record=list(g.flatten().nodes))
    clock = simulate(g, ev, backend="numba-clock", sensor_size=(6,), record=list(g.flatten().nodes))
    streamed = Simulator(g, sensor_size=(6,), record=list(g.flatten().nodes)).step(ev)
    for res in (dense, streamed):
        for attr in ("outputs", "spikes", "traces"):
            for k, v in getattr(clock, attr).items():
                assert np.array_equal(getattr(res, attr)[k], v), (attr, k)
    assert streamed.traces["input"][0, 0, 1] == 2
    assert streamed.stats["synaptic_events"] == dense.stats["synaptic_events"] == 4 * 4  # 4 nonzero (step, pixel) entries, 4 outputs


def test_streamed_events_are_checked_like_dense_ones():
    g = _network()
    sim = Simulator(g, sensor_size=(30,))
    ev = np.zeros(1, dtype=[("x", np.int64), ("t", np.float64), ("p", np.int64)])
    ev["x"] = 30
    with pytest.raises(sf.errors.DataError, match="field 'x'"):
        sim.step(ev)
    with pytest.raises(sf.errors.DataError, match="sensor_size"):
        Simulator(g, sensor_size=(29,)).step(ev[:0], n_steps=2)
    with pytest.raises(sf.errors.DataError, match="sensor_size"):
        Simulator(g).step(ev[:0], n_steps=2)
