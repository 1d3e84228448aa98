"""The export's reference executor equals numba fixed point on the dequantised graph, and the slow reference."""

import numpy as np
import pytest

import spikeflow as sf
from spikeflow.models import digits_mlp, saccade_cnn
from tests.reference import spinnaker2 as reference

from . import graphs as G

MULTI_CHIP = {"max_atoms_per_core": 5, "app_pes_per_chip": 3, "chips": 30}
CASES = {"mlp": (G.mlp, (12,)), "mlp_zero_reset": (lambda r: G.mlp(r, reset="zero"), (12,)), "recurrent_cuba": (G.recurrent_cuba, (10,)),
         "delayed_if": (G.delayed_if, (8,)), "cnn": (G.small_cnn, (2, 12, 12))}


def _run_both(prog, x):
    pops = [k for k, p in prog.pops.items() if p.kind != "input"]
    got = prog.run(x, record=pops)
    want = sf.simulate(prog.graph, x, backend="numba-event", precision=prog.precision, record=pops)
    return pops, got, want


def _assert_same(pops, got, want):
    assert got.outputs.keys() == want.outputs.keys()
    for k in got.outputs:
        np.testing.assert_array_equal(got.outputs[k], want.outputs[k])
    for k in pops:
        if k in want.spikes:
            np.testing.assert_array_equal(got.spikes[k], want.spikes[k])
        np.testing.assert_array_equal(got.traces[k], want.traces[k])


@pytest.mark.parametrize("chip", [None, MULTI_CHIP], ids=["one-chip", "many-chips"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_executor_equals_numba_fixed_point_and_reference(case, chip, tmp_path):
    rng = np.random.default_rng(sorted(CASES).index(case))
    make, shape = CASES[case]
    graph = make(rng)
    x = G.spikes(rng, 14, 2, shape)
    if case == "cnn":
        x *= rng.integers(1, 4, x.shape)  # event counts, not only spikes
    sf.export(graph, target="spinnaker2", path=tmp_path / "out", chip=chip, samples=x, silent="warn")
    prog = sf.load_export(tmp_path / "out")
    pops, got, want = _run_both(prog, x)
    _assert_same(pops, got, want)
    assert sum(v.sum() for v in got.spikes.values()) > 0  # the comparison is not between silent networks
    out, spikes = reference.run(tmp_path / "out", x)
    for k in out:
        np.testing.assert_array_equal(got.outputs[k].reshape(out[k].shape), out[k])
    for k in got.spikes:
        np.testing.assert_array_equal(got.spikes[k].reshape(spikes[k].shape), spikes[k])
    if chip is not None:
        assert prog.report.chips > 1


def test_random_graphs_bit_exact(tmp_path):
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        graph = G.mlp(rng, n_in=int(rng.integers(3, 30)), hidden=int(rng.integers(3, 60)), out=int(rng.integers(1, 8)))
        x = G.spikes(rng, 20, 3, graph.nodes["input"].shape, p=float(rng.uniform(0.05, 0.5)))
        sf.export(graph, target="spinnaker2", path=tmp_path / f"g{seed}", chip={"max_atoms_per_core": int(rng.integers(2, 40))},
                  percentile=float(rng.uniform(90, 100)))
        prog = sf.load_export(tmp_path / f"g{seed}")
        _assert_same(*_run_both(prog, x))


def test_demo_networks_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    mlp = digits_mlp(hidden=64)
    x = G.spikes(rng, 25, 4, (64,), p=0.2)
    sf.export(mlp, target="spinnaker2", path=tmp_path / "mlp", samples=x)
    _assert_same(*_run_both(sf.load_export(tmp_path / "mlp"), x))
    cnn = saccade_cnn(bins=4, channels=(4, 6), duration_us=315_000.0)
    x = rng.poisson(0.3, (4, 2, 2, 34, 34)).astype(np.float64)
    sf.export(cnn, target="spinnaker2", path=tmp_path / "cnn", samples=x, silent="warn")
    prog = sf.load_export(tmp_path / "cnn")
    _assert_same(*_run_both(prog, x))
    assert prog.report.pes > 3 and prog.report.layers[0]["bits"] == 8  # int8 convolutions


def test_dequantised_graph_requantises_to_the_exported_integers(tmp_path):
    """numba's quantiser applied to prog.graph gives the exported weights (up to a power-of-two
    factor that its wider weight format adds, which the rounding shift removes exactly)."""
    from spikeflow.backends.numba.fixed_point import best_frac

    rng = np.random.default_rng(3)
    graph = G.small_cnn(rng)
    sf.export(graph, target="spinnaker2", path=tmp_path / "o")
    prog = sf.load_export(tmp_path / "o")
    import json

    net = json.loads((tmp_path / "o" / "network.json").read_text())
    for proj in net["projections"]:
        w = np.asarray(prog.graph.nodes[proj["layer"]].weight)
        ints = w * 2.0 ** proj["weight_frac"]
        np.testing.assert_array_equal(ints, np.rint(ints))
        limit = 127 if proj["type"] == "conv2d" else 15
        assert np.abs(ints).max() <= limit
        numba_frac = best_frac(w, prog.precision.weight_bits)
        assert numba_frac >= proj["weight_frac"]
        np.testing.assert_array_equal(w * 2.0**numba_frac, np.rint(w * 2.0**numba_frac))
