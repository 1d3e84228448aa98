"""rram-lsm target: device model, crossbar mapping, export round trip, the crossbar reference
simulation (exact against the fixed-point simulators with an ideal device), broken exports."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import spikeflow as sf
from spikeflow.backends.rram import Crossbar, Device
from spikeflow.errors import BackendError, FormatError
from spikeflow.ir import nodes as n
from tests.backends.strategies import dense_graphs, spike_inputs
from tests.reference import rram_crossbar as ref


def _recurrent(n_in=12, n_h=9, seed=0, bias=True):
    rng = np.random.default_rng(seed)
    rec = n.Affine(weight=rng.normal(0, 0.4, (n_h, n_h)), bias=rng.normal(0, 0.1, n_h)) if bias else n.Linear(weight=rng.normal(0, 0.4, (n_h, n_h)))
    return sf.Graph({
        "input": n.Input(shape=(n_in,)),
        "w_in": n.Linear(weight=rng.normal(0, 0.6, (n_h, n_in))),
        "w_rec": rec,
        "lif": n.LIF(tau=0.01, v_threshold=1.0, r=8.0, reset="subtract"),
        "output": n.Output(shape=(n_h,)),
    }, [("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")], dt=1e-3)


def _spikes(shape, p=0.3, seed=1):
    return (np.random.default_rng(seed).random(shape) < p).astype(np.float64)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_ideal_crossbar_equals_fixed_point_simulation_spike_for_spike(data, tmp_path_factory):
    g = data.draw(dense_graphs())
    assume(not any(isinstance(v, n.Delay) for v in g.nodes.values()))
    x = data.draw(spike_inputs(g))
    options = dict(
        tile_rows=data.draw(st.integers(2, 6)), tile_cols=data.draw(st.integers(2, 8)),
        encoding=data.draw(st.sampled_from(["differential", "offset"])), adc_bits=data.draw(st.integers(8, 16)),
    )
    options["dac_bits"] = options["adc_bits"]
    levels = data.draw(st.sampled_from([4, 16, 32, 100]))
    path = tmp_path_factory.mktemp("rram")
    sf.export(g, target="rram-lsm", path=path, device="ideal", device_overrides={"levels": levels}, **options)
    prog = sf.load_export(path)
    record = [k for k, v in prog.graph.nodes.items() if v.spiking]
    ours = prog.run(x, record=record)
    for backend in ("numba-clock", "numba-event"):
        theirs = sf.simulate(prog.graph, x, backend=backend, precision=prog.precision, record=record)
        for k in record:
            np.testing.assert_array_equal(ours.spikes[k], theirs.spikes[k], err_msg=f"{backend} {k}")
            np.testing.assert_array_equal(ours.traces[k], theirs.traces[k], err_msg=f"{backend} {k}")
        np.testing.assert_array_equal(ours.output, theirs.output)
        assert ours.stats["overflows"] == theirs.stats["overflows"]


def test_row_tiles_split_a_matrix_and_the_plan_counts_cells(tmp_path):
    g = _recurrent(n_in=12, n_h=9)
    rep = sf.export(g, target="rram-lsm", path=tmp_path / "e", device="ideal", tile_rows=5, tile_cols=8)
    prog = sf.load_export(tmp_path / "e")
    assert {"w_in__rows0", "w_in__rows1", "w_in__rows2", "w_rec__rows0", "w_rec__rows1"} <= set(prog.graph.nodes)
    # 4 weights per tile (differential: 2 columns each): w_in 3 row tiles x 3 column tiles, w_rec 2 x 3
    assert rep["tiles"] == 15 and rep["cells"] == 2 * 9 * (12 + 9)
    assert rep["adc_conversions_per_step"] == 9 * 5 and prog.report["tiles"] == 15
    x = _spikes((20, 2, 12))
    assert np.array_equal(prog.run(x, record=["lif"]).spikes["lif"],
                          sf.simulate(prog.graph, x, precision=prog.precision, record=["lif"]).spikes["lif"])


def test_ideal_export_is_close_to_the_float_graph(tmp_path):
    g = _recurrent()
    sf.export(g, target="rram-lsm", path=tmp_path / "e", device="ideal", device_overrides={"levels": 256}, adc_bits=16, dac_bits=16)
    x = _spikes((60, 4, 12))
    hw = sf.load_export(tmp_path / "e").run(x, record=["lif"]).spikes["lif"]
    sw = sf.simulate(g, x, record=["lif"]).spikes["lif"]
    assert hw.sum() > 20 and (hw == sw).mean() > 0.97


def test_matrix_read_of_a_noisy_drifted_chip_matches_the_cell_by_cell_reference(tmp_path):
    g = sf.Graph.sequential(n.Input(shape=(7,)), n.Affine(weight=np.random.default_rng(3).normal(0, 1, (5, 7)), bias=np.linspace(-0.2, 0.2, 5)))
    dev = dict(read_noise=0.0, prog_noise=0.05, stuck_on=0.05, stuck_off=0.05, drift_nu=0.08, drift_nu_std=0.03)
    sf.export(g, target="rram-lsm", path=tmp_path / "e", device="default", device_overrides=dev, seed=4)
    prog = sf.load_export(tmp_path / "e")
    x = np.random.default_rng(5).normal(0, 1, (3, 2, 7))
    age = 86400.0
    res = prog.run(x, record=["affine1"], age_s=age)
    fx = prog.precision
    a = prog._arrays["affine1"]
    d = prog.device
    for t in range(3):
        codes = [[ref.quantise_code(v, fx.state_bits, fx.state_frac) for v in row] for row in x[t]]
        want = ref.read(a["g_plus"], a["g_minus"], a["nu"], codes, step=d.step, frac=prog.ops[1]["frac"], lo=fx.state_range[0],
                        hi=fx.state_range[1], age_s=age, t0=d.drift_t0_s, compensate=True, bias=a["bias"])
        np.testing.assert_array_equal(np.rint(res.traces["affine1"][t] * 2**fx.state_frac).astype(np.int64), want)


def test_device_statistics_are_seeded_and_follow_the_parameters():
    dev = Device.preset("default", prog_noise=0.1, prog_noise_floor=0.0, stuck_on=0.0, stuck_off=0.0)
    q = np.full((200, 200), 20)
    a, b = dev.program(q, seed=1), dev.program(q, seed=1)
    assert np.array_equal(a.g_plus, b.g_plus) and not np.array_equal(a.g_plus, dev.program(q, seed=2).g_plus)
    g_target = 20 * dev.step
    assert abs(a.g_plus.std() / g_target - 0.1) < 0.01 and abs(a.g_plus.mean() / g_target - 1) < 0.01
    assert np.all(a.g_minus == 0.0)  # level 0, no floor noise
    stuck = Device.preset("default", stuck_on=0.02, stuck_off=0.03).program(q, seed=0)
    assert abs(np.mean(stuck.g_plus == dev.g_max) - 0.02) < 0.005 and abs(np.mean(stuck.g_plus == dev.g_min) - 0.03) < 0.005
    drift = Device.preset("default", drift_nu=0.1, drift_nu_std=0.0, drift_compensation=False, prog_noise=0, prog_noise_floor=0)
    chip = drift.program(q, seed=0)
    gp, _ = chip.conductances(age_s=drift.drift_t0_s * 10)
    assert np.allclose(gp, chip.g_plus * 10**-0.1)
    # breakdown: the programming voltage sets the fraction of conducting cells
    g = dev.breakdown((300, 300), density=0.2, seed=0)
    assert abs(np.mean(g >= 50.0) - 0.2) < 0.01 and np.all(g[g < 50] == dev.g_pristine)
    assert dev.breakdown_voltage_for(0.5) == pytest.approx(dev.v_breakdown)


def test_read_noise_varies_per_read_and_is_seeded(tmp_path):
    g = _recurrent()
    sf.export(g, target="rram-lsm", path=tmp_path / "e", device="default", device_overrides={"read_noise": 0.05})
    prog = sf.load_export(tmp_path / "e")
    x = _spikes((40, 2, 12))
    r1, r2, r3 = (prog.run(x, record=["w_in"], seed=s).traces["w_in"] for s in (0, 0, 1))
    assert np.array_equal(r1, r2) and not np.array_equal(r1, r3)


def test_ir_drop_lowers_far_cells(tmp_path):
    g = sf.Graph.sequential(n.Input(shape=(64,)), n.Linear(weight=np.full((8, 64), 0.5)))
    sf.export(g, target="rram-lsm", path=tmp_path / "e", device="ideal", ir_drop_ohm=50.0)
    prog = sf.load_export(tmp_path / "e")
    lv = prog.levels("linear1")
    assert lv[0, 0] > lv[0, 63] > 0 and lv[0, 0] > lv[7, 0]


def test_report_and_energy(tmp_path):
    rep = sf.export(_recurrent(), target="rram-lsm", path=tmp_path / "e")
    assert rep["tiles"] == 2 and rep["cells"] == 2 * 9 * (12 + 9) and 0 < rep["utilisation"] < 1
    res = sf.load_export(tmp_path / "e").run(_spikes((10, 3, 12)))
    assert res.stats["adc_conversions"] == 10 * 3 * 18 and res.stats["energy_pj_per_sample"] > 0
    assert json.loads((tmp_path / "e" / "manifest.json").read_text())["target"] == "rram-lsm"


@pytest.mark.parametrize("graph, options, message", [
    (sf.Graph.sequential(n.Input(shape=(4,)), n.Delay(delay=np.full(4, 2e-3)), n.LIF(tau=0.01, v_threshold=1.0)),
     {}, "Delay cannot be mapped"),
    (_recurrent(), {"max_tiles": 1}, "needs 2 tiles"),
    (_recurrent(), {"tile_rowz": 4}, "unknown crossbar options"),
    (_recurrent(), {"device": "perfect"}, "argument 'device'"),
    (_recurrent(), {"device_overrides": {"levels": 1}}, "levels"),
    (_recurrent(), {"dac_bits": 12, "adc_bits": 8}, "dac_bits"),
    (_recurrent(), {"encoding": "triple"}, "encoding"),
])
def test_impossible_mappings_raise_clear_errors(tmp_path, graph, options, message):
    with pytest.raises(BackendError, match=message):
        sf.export(graph, target="rram-lsm", path=tmp_path / "e", **options)
    assert not (tmp_path / "e").exists()


def _rewrite_manifest(folder):
    from spikeflow.backends.export_folder import _sha256

    m = json.loads((folder / "manifest.json").read_text())
    for name in m["files"]:
        m["files"][name] = {"bytes": (folder / name).stat().st_size, "sha256": _sha256(folder / name)}
    (folder / "manifest.json").write_text(json.dumps(m))


def _drop_dataset(folder):
    import h5py

    with h5py.File(folder / "arrays.h5", "a") as f:
        del f["lif/v_threshold"]


def _bad_shape(folder):
    import h5py

    with h5py.File(folder / "arrays.h5", "a") as f:
        del f["lif/a"]
        f["lif/a"] = np.zeros(3, np.int64)


@pytest.mark.parametrize("damage, message, rehash", [
    (lambda d: (d / "program.json").write_text("{}"), "SHA-256|bytes", False),
    (lambda d: (d / "program.json").write_text("{not json"), "program.json is malformed", True),
    (lambda d: (d / "program.json").write_text(json.dumps({"ops": []})), "program.json is malformed", True),
    (lambda d: (d / "arrays.h5").write_bytes(b"junk"), "arrays.h5: unreadable", True),
    (_drop_dataset, "missing dataset lif/v_threshold", True),
    (_bad_shape, "lif/a has shape", True),
    (lambda d: (d / "graph.h5").unlink(), "missing", False),
])
def test_broken_exports_raise_format_errors(tmp_path, damage, message, rehash):
    sf.export(_recurrent(), target="rram-lsm", path=tmp_path / "e")
    damage(tmp_path / "e")
    if rehash:
        _rewrite_manifest(tmp_path / "e")
    with pytest.raises(FormatError, match=message):
        sf.load_export(tmp_path / "e")


def test_export_round_trip_keeps_the_sampled_chip(tmp_path):
    g = _recurrent()
    sf.export(g, target="rram-lsm", path=tmp_path / "a", seed=7)
    sf.export(g, target="rram-lsm", path=tmp_path / "b", seed=7)
    pa, pb = sf.load_export(tmp_path / "a"), sf.load_export(tmp_path / "b")
    assert np.array_equal(pa.chip("w_in").g_plus, pb.chip("w_in").g_plus)
    assert pa.graph == pb.graph and pa.precision == pb.precision
    x = _spikes((15, 2, 12))
    assert np.array_equal(pa.run(x).output, pb.run(x).output)
    assert Crossbar(**pa.crossbar.to_dict()) == pa.crossbar


def test_programming_plan_lists_every_tile(tmp_path):
    sf.export(_recurrent(n_in=12, n_h=9), target="rram-lsm", path=tmp_path / "e", tile_rows=5, tile_cols=8)
    prog = sf.load_export(tmp_path / "e")
    assert len(prog.plan) == prog.report["tiles"] == 15
    assert sum(a["cells"] for a in prog.plan) == prog.report["cells"]
    assert {(a["tile_node"], tuple(a["outputs"])) for a in prog.plan if a["node"] == "w_in"} == {
        (f"w_in__rows{k}", o) for k in range(3) for o in ((0, 4), (4, 8), (8, 9))}


def test_cli_exports_to_the_rram_target(tmp_path, capsys):
    from spikeflow import cli
    from spikeflow.models.lsm import reservoir

    g = reservoir(16, 12, seed=0)
    sf.save(g, tmp_path / "g.h5")
    assert cli.main(["export", str(tmp_path / "g.h5"), "--target", "rram-lsm", "--out", str(tmp_path / "e")]) == 0
    assert "'tiles': 2" in capsys.readouterr().out
    x = _spikes((10, 1, 16))
    assert sf.load_export(tmp_path / "e").run(x, record=["lif"]).spikes["lif"].shape == (10, 1, 12)


@pytest.mark.parametrize("module", ["spikeflow.backends.rram.device", "spikeflow.models.lsm", "spikeflow.models.readout"])
def test_docstring_examples(module):
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS).failed == 0
