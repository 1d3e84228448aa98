"""Convolutions and pooling on the rram-lsm target: a kernel is its im2col matrix, programmed once
and read at every output position; pooling runs in the digital periphery. The crossbar executor
equals numba fixed point on ``prog.graph`` spike for spike (ideal device) and the cell-by-cell
reference (noisy device); the report counts cells once and conversions per position."""

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import spikeflow as sf
from spikeflow.convert import QCFS, ann_to_snn
from spikeflow.errors import BackendError, FormatError
from spikeflow.ir import nodes as n
from tests.backends.strategies import conv_graphs, spike_inputs
from tests.reference import rram_crossbar as ref

from .test_rram import _rewrite_manifest


def _assert_equal_runs(prog, x, record):
    ours = prog.run(x, record=record)
    for backend in ("numba-clock", "numba-event"):
        theirs = sf.simulate(prog.graph, x, backend=backend, precision=prog.precision, record=record)
        assert set(ours.spikes) == set(theirs.spikes)  # the spiking ones among the recorded nodes
        for k in ours.spikes:
            np.testing.assert_array_equal(ours.spikes[k], theirs.spikes[k], err_msg=f"{backend} {k}")
        for k in record:
            np.testing.assert_array_equal(ours.traces[k], theirs.traces[k], err_msg=f"{backend} {k}")
        np.testing.assert_array_equal(ours.output, theirs.output)
        assert ours.stats["overflows"] == theirs.stats["overflows"]
    return ours


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_ideal_crossbar_equals_fixed_point_on_random_cnns(data, tmp_path_factory):
    g = data.draw(conv_graphs())
    x = data.draw(spike_inputs(g))
    options = dict(tile_rows=data.draw(st.integers(2, 12)), tile_cols=data.draw(st.integers(2, 8)),
                   encoding=data.draw(st.sampled_from(["differential", "offset"])), adc_bits=data.draw(st.integers(8, 16)))
    options["dac_bits"] = options["adc_bits"]
    path = tmp_path_factory.mktemp("rram")
    sf.export(g, target="rram-lsm", path=path, device="ideal", device_overrides={"levels": data.draw(st.sampled_from([4, 32, 100]))}, **options)
    prog = sf.load_export(path)
    _assert_equal_runs(prog, x, [k for k, v in prog.graph.nodes.items() if v.spiking or isinstance(v, n.LI)])


def _cnn(seed=0, c_in=3):
    """AvgPool (padding) -> Conv2d (stride, padding) -> LIF -> SumPool -> Conv2d -> CubaLIF -> Flatten -> Affine -> IF."""
    rng = np.random.default_rng(seed)
    g = sf.Graph.sequential(
        n.Input(shape=(c_in, 9, 8)), n.AvgPool2d(kernel_size=(2, 2), stride=(1, 1), padding=(1, 0)),
        n.Conv2d(weight=rng.normal(0, 0.5, (4, c_in, 3, 3)), bias=rng.normal(0, 0.1, 4), stride=(2, 1), padding=(1, 1)),
        n.LIF(tau=0.01, v_threshold=1.0, r=8.0, reset="subtract"), n.SumPool2d(kernel_size=(2, 2), stride=(2, 2)),
        n.Conv2d(weight=rng.normal(0, 0.5, (5, 4, 2, 2)), bias=np.zeros(5)), n.CubaLIF(tau_syn=0.005, tau_mem=0.01, v_threshold=0.5, r=10.0),
        n.Flatten(), n.Affine(weight=rng.normal(0, 0.5, (3, 10)), bias=np.zeros(3)), n.IF(v_threshold=0.5, r=1000.0), dt=1e-3)
    return g


def test_kernel_wider_than_a_tile_splits_over_input_channels_like_a_matrix_over_rows(tmp_path):
    g = _cnn(c_in=3)  # conv2: 3 x 3 x 3 = 27 rows; tile_rows=20 holds 2 whole channels (18 rows)
    rep = sf.export(g, target="rram-lsm", path=tmp_path / "e", device="ideal", tile_rows=20, tile_cols=8)
    prog = sf.load_export(tmp_path / "e")
    conv = {k: v for k, v in prog.graph.nodes.items() if k.startswith("conv2d2")}
    assert sorted(conv) == ["conv2d2__rows0", "conv2d2__rows1"]
    w0, w1 = conv["conv2d2__rows0"].weight, conv["conv2d2__rows1"].weight
    assert np.all(w0[:, 2] == 0) and np.any(w0[:, :2]) and np.all(w1[:, :2] == 0) and np.any(w1[:, 2])
    assert np.any(conv["conv2d2__rows0"].bias) and not np.any(conv["conv2d2__rows1"].bias)  # bias once, after the first tile
    assert [op["rows"] for op in prog.ops if op["name"].startswith("conv2d2")] == [[0, 18], [18, 27]]
    # conv2d2: 2 row tiles x 1 column tile (4 outputs fit 8 columns), read at 5 x 7 positions
    plan = [a for a in prog.plan if a["node"] == "conv2d2"]
    assert len(plan) == 2 and all(a["reads_per_step"] == 35 for a in plan)
    assert sum(a["cells"] for a in plan) == 2 * 4 * 27  # differential: two cells per weight, once (not per position)
    x = (np.random.default_rng(1).random((12, 2, 3, 9, 8)) < 0.4).astype(float)
    res = _assert_equal_runs(prog, x, ["lif3", "cubalif6", "if9"])
    assert res.spikes["lif3"].sum() > 0 and res.spikes["if9"].sum() > 0
    # per step: conv2d2 2 row tiles x 35 positions x 4 channels; conv2d5 (16 rows: 1 row tile, 5 outputs: 2 column
    # tiles of 4) 2 positions x 5; affine8 3
    assert rep["adc_conversions_per_step"] == 2 * 35 * 4 + 2 * 5 + 3
    assert rep["tile_reads_per_step"] == 2 * 35 + 2 * 2 + 1
    assert rep["rows_driven_per_step_max"] == 27 * 35 + 16 * 2 * 2 + 10  # each column tile drives its rows
    assert res.stats["adc_conversions"] == 12 * 2 * rep["adc_conversions_per_step"]
    assert 0 < res.stats["rows_driven"] <= 12 * 2 * rep["rows_driven_per_step_max"]


def test_conv1d_and_grouped_kernels_are_block_matrices(tmp_path):
    rng = np.random.default_rng(2)
    g = sf.Graph.sequential(
        n.Input(shape=(4, 11)), n.Conv1d(weight=rng.normal(0, 0.8, (6, 2, 3)), bias=rng.normal(0, 0.1, 6), stride=(2,), padding=(1,),
                                         dilation=(2,), groups=2),
        n.LIF(tau=0.01, v_threshold=0.6, r=10.0), n.Flatten(), n.Linear(weight=rng.normal(0, 0.5, (3, 30))), n.LIF(tau=0.01, v_threshold=0.5, r=10.0),
        dt=1e-3)
    rep = sf.export(g, target="rram-lsm", path=tmp_path / "e", device="ideal")
    prog = sf.load_export(tmp_path / "e")
    w = prog.graph.nodes["conv1d1"].weight
    assert w.shape == (6, 4, 3) and prog.graph.nodes["conv1d1"].groups == 1
    assert not np.any(w[:3, 2:]) and not np.any(w[3:, :2])  # the other group's taps: programmed zeros
    assert rep["cells"] == 2 * 6 * 12 + 2 * 3 * 30
    x = (rng.random((10, 2, 4, 11)) < 0.5).astype(float)
    assert _assert_equal_runs(prog, x, ["lif2", "lif5"]).spikes["lif2"].sum() > 0


def test_saccade_cnn_exports_and_runs_spike_for_spike(tmp_path):
    g = sf.models.saccade_cnn(channels=(4, 8), seed=0)
    rep = sf.export(g, target="rram-lsm", path=tmp_path / "e", device="ideal")
    prog = sf.load_export(tmp_path / "e")
    # conv1 (18 x 4), conv2 (36 x 8), fc (128 x 10): one tile each; reads at 17x17 and 8x8 positions
    assert rep["tiles"] == 3 and rep["cells"] == 2 * (4 * 18 + 8 * 36 + 10 * 128)
    assert rep["adc_conversions_per_step"] == 4 * 17 * 17 + 8 * 8 * 8 + 10
    x = np.random.default_rng(0).poisson(0.6, (4, 2, 2, 34, 34)).astype(float)
    res = _assert_equal_runs(prog, x, ["lif1", "lif2"])
    assert res.spikes["lif1"].sum() > 0


def _converted_cnn(seed: int):
    torch.manual_seed(seed)
    ann = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(2, 4, 3, padding=1), QCFS(4, 1.0), nn.AvgPool2d(2), nn.Conv2d(4, 6, 3, padding=1),
                        nn.BatchNorm2d(6), QCFS(4, 1.2), nn.Flatten(), nn.Linear(6 * 2 * 2, 10), QCFS(4, 1.0), nn.Linear(10, 3)).eval()
    with torch.no_grad():
        ann[5].running_mean.uniform_(-0.2, 0.2)
    return ann_to_snn(ann, (2, 8, 8))


@pytest.mark.parametrize("seed, options", [(0, {}), (1, {"tile_rows": 16, "encoding": "offset"})])
def test_converted_cnn_with_avgpool_equals_numba_fixed_point(seed, options, tmp_path):
    graph = _converted_cnn(seed)
    rep = sf.export(graph, target="rram-lsm", path=tmp_path / "e", device="ideal", **options)
    prog = sf.load_export(tmp_path / "e")
    ifs = sorted(k for k, v in prog.graph.nodes.items() if isinstance(v, n.IF) and not k.startswith("vinit"))
    assert len(ifs) == 3 and all(op.get("v_init") for op in prog.ops if op["name"] in ifs)
    assert not any(a["node"].startswith("vinit") for a in prog.plan)  # the pulse takes no tiles
    x = np.random.default_rng(seed).random((10, 2, 2, 8, 8)) * 2
    res = _assert_equal_runs(prog, x, ifs)
    assert all(res.spikes[k].sum() > 0 for k in ifs) and rep["tiles"] >= 3


def test_noisy_conv_read_matches_the_cell_by_cell_reference(tmp_path):
    rng = np.random.default_rng(3)
    g = sf.Graph.sequential(n.Input(shape=(3, 5, 4)), n.Conv2d(weight=rng.normal(0, 1, (4, 3, 2, 3)), bias=np.linspace(-0.2, 0.2, 4),
                                                               stride=(2, 1), padding=(1, 1), dilation=(1, 2)),
                            n.AvgPool2d(kernel_size=(2, 2), stride=(1, 1), padding=(1, 1)), dt=1e-3)
    dev = dict(read_noise=0.0, prog_noise=0.05, stuck_on=0.05, stuck_off=0.05, drift_nu=0.08, drift_nu_std=0.03)
    sf.export(g, target="rram-lsm", path=tmp_path / "e", device="default", device_overrides=dev, seed=4, tile_rows=10)
    prog = sf.load_export(tmp_path / "e")
    tiles = [op for op in prog.ops if op["kind"] == "Conv"]
    assert [op["rows"] for op in tiles] == [[0, 6], [6, 12], [12, 18]]  # 6 taps per channel: one channel per 10-row tile
    x = rng.normal(0, 1, (3, 2, 3, 5, 4))
    age = 86400.0
    res = prog.run(x, record=[op["name"] for op in tiles] + ["avgpool2d2"], age_s=age)
    fx, d = prog.precision, prog.device
    lo, hi = fx.state_range
    for t in range(3):
        codes = [[ref.quantise_code(v, fx.state_bits, fx.state_frac) for v in row] for row in x[t].reshape(2, -1)]
        total = np.zeros((2, 4 * 3 * 2), np.int64)  # 4 channels x 3 x 2 positions
        for op in tiles:
            a = prog._arrays[op["name"]]
            want = ref.conv_read(a["g_plus"], a["g_minus"], a["nu"], codes, op["conv"], op["rows"], step=d.step, frac=op["frac"], lo=lo, hi=hi,
                                 age_s=age, t0=d.drift_t0_s, compensate=True, bias=a.get("bias"))
            got = np.rint(res.traces[op["name"]][t] * 2**fx.state_frac).astype(np.int64).reshape(2, -1)
            np.testing.assert_array_equal(got, want)
            total = np.clip(total + want, lo, hi)
        pool = next(op for op in prog.ops if op["kind"] == "AvgPool2d")
        want = ref.pool(total, pool["pool"], True, lo, hi)
        np.testing.assert_array_equal(np.rint(res.traces["avgpool2d2"][t] * 2**fx.state_frac).astype(np.int64).reshape(2, -1), want)


def test_noisy_device_robustness_of_a_cnn(tmp_path):
    g = sf.models.saccade_cnn(channels=(4, 8), seed=1)
    x = np.random.default_rng(0).poisson(0.6, (6, 2, 2, 34, 34)).astype(float)
    sf.export(g, target="rram-lsm", path=tmp_path / "ideal", device="ideal")
    sf.export(g, target="rram-lsm", path=tmp_path / "noisy", device="default", device_overrides={"prog_noise": 0.1, "stuck_off": 0.05}, seed=2)
    ideal, noisy = sf.load_export(tmp_path / "ideal"), sf.load_export(tmp_path / "noisy")
    gp = noisy.chip("conv1").g_plus
    assert gp.shape == (4, 18) and not np.allclose(noisy.levels("conv1"), ideal.levels("conv1"))
    a, b = ideal.run(x, record=["lif1"]), noisy.run(x, record=["lif1"])
    agree = (a.spikes["lif1"] == b.spikes["lif1"]).mean()
    assert 0.8 < agree < 1.0  # the noisy chip changes some spikes, most survive
    again = noisy.run(x, record=["lif1"], seed=0)
    assert np.array_equal(again.spikes["lif1"], noisy.run(x, record=["lif1"], seed=0).spikes["lif1"])


def test_impossible_conv_mappings_and_damaged_geometry(tmp_path):
    g = sf.models.saccade_cnn(channels=(4, 8), seed=0)
    # conv1 2 row tiles (one 3x3 channel per 16 rows), conv2 4 row x 2 column tiles, fc 8 x 3
    with pytest.raises(BackendError, match=r"needs 34 tiles of 16x8 cells, the chip has 4"):
        sf.export(g, target="rram-lsm", path=tmp_path / "a", tile_rows=16, tile_cols=8, max_tiles=4)
    assert not (tmp_path / "a").exists()
    sf.export(g, target="rram-lsm", path=tmp_path / "e", device="ideal")
    program = json.loads((tmp_path / "e" / "program.json").read_text())
    damages = {
        "stride": (lambda op: op["conv"].update(stride=[3, 1]), "does not fit the op's size"),
        "fields": (lambda op: op["conv"].pop("dilation"), "expected geometry fields"),
        "kernel": (lambda op: op["conv"].update(kernel=[3, "3"]), "geometry field 'kernel'"),
        "rows": (lambda op: op.update(rows=[0, 40]), r"rows \[0, 40\] exceed"),
        "pool": (lambda op: op.update(pool=None), "expected geometry fields"),
        "rows type": (lambda op: op.update(rows="all"), "program.json is malformed"),
    }
    for key, (damage, message) in damages.items():
        bad = json.loads(json.dumps(program))
        damage(next(op for op in bad["ops"] if op["name"] == ("pool1" if key == "pool" else "conv1")))
        (tmp_path / "e" / "program.json").write_text(json.dumps(bad))
        _rewrite_manifest(tmp_path / "e")
        with pytest.raises(FormatError, match=message):
            sf.load_export(tmp_path / "e")
