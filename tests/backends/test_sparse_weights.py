"""Sparse IR weights run in the numba and Brian2 backends straight from their CSR arrays, with
results identical to the same graph holding the dense matrix; a 10k x 10k network never goes dense."""

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

import spikeflow as sf
from spikeflow.backends import Simulator, available_backends, simulate
from spikeflow.backends.numba.program import lower
from spikeflow.ir import nodes as n
from tests.backends.helpers import assert_identical, assert_matches_reference, run_all

NUMBA = ("numba-clock", "numba-event")


def _sparse(rng, rows, cols, density, scale):
    return rng.normal(0, scale, (rows, cols)) * (rng.random((rows, cols)) < density)


def recurrent_pair(seed=0, density=0.3):
    """The same recurrent network twice: sparse weights, and the dense matrices they hold."""
    rng = np.random.default_rng(seed)
    w_in, w_rec = _sparse(rng, 20, 12, density, 0.8), _sparse(rng, 20, 20, density, 0.4)
    bias = rng.normal(0, 0.05, 20)

    def build(to):
        return sf.Graph(
            {
                "x": n.Input(shape=(12,)),
                "w_in": n.Affine(weight=to(w_in), bias=bias),
                "lif": n.LIF(tau=0.01, v_threshold=1.0, r=8.0, reset="subtract"),
                "w_rec": n.Linear(weight=to(w_rec)),
                "cuba": n.CubaLIF(tau_syn=0.005, tau_mem=0.01, v_threshold=0.5, r=6.0),
                "y": n.Output(shape=(20,)),
            },
            [("x", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "cuba"), ("cuba", "y")],
            dt=1e-3,
        )

    return build(sp.csr_array), build(np.asarray)


def spikes(steps, batch, size, p, seed=1):
    return (np.random.default_rng(seed).random((steps, batch, size)) < p).astype(np.float64)


@pytest.mark.parametrize("backend", NUMBA)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_graph_equals_dense_graph_spike_for_spike(backend, seed):
    sparse_g, dense_g = recurrent_pair(seed)
    x = spikes(60, 3, 12, 0.3, seed)
    a, b = run_all(sparse_g, x, backend), run_all(dense_g, x, backend)
    assert_identical(a, b)
    assert_matches_reference(sparse_g, x, a)
    assert a.spikes["lif"].sum() > 20


def test_sparse_weights_stay_csr_even_when_dense_ish():
    sparse_g, dense_g = recurrent_pair(density=0.6)  # above SPARSE_DENSITY: a dense matrix would go dense
    for event, csr, dense in ((True, "csr-columns", "columns"), (False, "csr-rows", "rows")):
        program, dense_program = lower(sparse_g, backend="b", event=event), lower(dense_g, backend="b", event=event)
        assert program.layouts == {"w_in": csr, "w_rec": csr}
        assert dense_program.layouts == {"w_in": dense, "w_rec": dense}
        # the CSR arrays travel as they are: only the nonzeros are parameters
        nnz = sparse_g.nodes["w_in"].weight.nnz + sparse_g.nodes["w_rec"].weight.nnz
        assert program.params.size == dense_program.params.size - (20 * 12 + 20 * 20) + nnz
    assert lower(sparse_g, backend="b", event=True, sparse=False).layouts == {"w_in": "columns", "w_rec": "columns"}


@pytest.mark.parametrize("sparse", [True, False, "auto"])
def test_every_storage_choice_gives_the_same_spikes(sparse):
    sparse_g, dense_g = recurrent_pair(3)
    x = spikes(40, 2, 12, 0.3, 3)
    reference = simulate(dense_g, x, backend="numba-clock", record=["lif"])
    ours = simulate(sparse_g, x, backend="numba-event", record=["lif"], sparse=sparse)
    assert_identical(ours, reference)


def test_synaptic_event_counts_agree_with_the_dense_graph():
    sparse_g, dense_g = recurrent_pair(4, density=0.1)
    x = spikes(50, 2, 12, 0.3, 4)
    a = simulate(sparse_g, x, backend="numba-event")
    b = simulate(dense_g, x, backend="numba-event")  # 10 %: the dense graph goes CSR too
    assert a.stats["synaptic_events"] == b.stats["synaptic_events"] > 0


def test_fixed_point_and_streaming_with_sparse_weights():
    sparse_g, dense_g = recurrent_pair(5)
    x = spikes(40, 2, 12, 0.3, 5)
    assert_identical(simulate(sparse_g, x, precision="fixed", record=["lif"]), simulate(dense_g, x, precision="fixed", record=["lif"]))
    sim = Simulator(sparse_g, record=["lif"])
    first, second = sim.step(x[:15]), sim.step(x[15:])
    whole = simulate(sparse_g, x, record=["lif"])
    np.testing.assert_array_equal(np.concatenate([first.spikes["lif"], second.spikes["lif"]]), whole.spikes["lif"])


@pytest.mark.skipif(not available_backends()["brian2"], reason="brian2 not installed")
def test_brian2_builds_synapses_from_csr():
    from spikeflow.backends.brian2_backend import _synapse_list

    rng = np.random.default_rng(6)
    csr = sp.csr_array(_sparse(rng, 30, 16, 0.3, 1.0))
    csr.data[0] = 0.0  # a stored zero is no synapse, as in the dense matrix (nodes drop them too)
    w = csr.toarray()
    for got, want in zip(_synapse_list(csr), _synapse_list(w)):
        np.testing.assert_array_equal(got, want)
    assert _synapse_list(csr)[0].size == csr.nnz - 1

    def graph(weight):
        return sf.Graph.sequential(n.Input(shape=(16,)), n.Linear(weight=weight), n.LIF(tau=0.01, v_threshold=1.0, r=10.0), dt=1e-3)

    x = spikes(100, 2, 16, 0.2, 6)
    a = simulate(graph(csr), x, backend="brian2", target="numpy", record=["lif2"])
    b = simulate(graph(w), x, backend="brian2", target="numpy", record=["lif2"])
    assert a.stats["synaptic_events"] == b.stats["synaptic_events"] > 0
    np.testing.assert_array_equal(a.spikes["lif2"], b.spikes["lif2"])
    ours = simulate(graph(csr), x, backend="numba-event", record=["lif2"])
    assert ours.stats["synaptic_events"] == a.stats["synaptic_events"]
    assert abs(ours.spikes["lif2"].sum() - a.spikes["lif2"].sum()) <= 0.01 * a.spikes["lif2"].sum()


def test_ten_million_entry_matrix_is_never_dense(tmp_path):
    """10,000 x 10,000 with ~1M synapses: build, validate, save, load, simulate and refuse NIR,
    all in far less memory than the 800 MB a dense matrix would take."""
    size, fan_in = 10_000, 100
    rng = np.random.default_rng(0)
    tracemalloc.start()
    try:
        rows = np.repeat(np.arange(size), fan_in)
        cols = rng.integers(0, size, size * fan_in)
        w = sp.coo_array((rng.normal(0, 0.3, size * fan_in), (rows, cols)), shape=(size, size))
        del rows, cols
        g = sf.Graph.sequential(n.Input(shape=(size,)), n.Linear(weight=w), n.LIF(tau=0.01, v_threshold=1.0, r=10.0), dt=1e-3)
        del w
        g.validate()
        path = tmp_path / "big.h5"
        sf.save(g, path)
        back = sf.load(path)
        assert back == g and n.is_sparse(back.nodes["linear1"].weight)
        nnz = back.nodes["linear1"].weight.nnz
        assert 0.99e6 < nnz <= 1e6
        x = spikes(5, 1, size, 0.05)
        for backend in NUMBA:
            res = simulate(back, x, backend=backend, record=["lif2"])
            assert res.output.shape == (5, 1, size) and res.spikes["lif2"].sum() > 0
        with pytest.raises(sf.GraphError, match="node 'linear1' field 'weight'.*10000 x 10000"):
            sf.to_nir(back, max_dense=10_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 250e6, f"peak traced memory {peak / 1e6:.0f} MB: something went dense (800 MB)"
    ref = simulate(g, x, backend="numba-event", record=["lif2"])
    np.testing.assert_array_equal(ref.spikes["lif2"], res.spikes["lif2"])
