"""Converted networks (ann_to_snn) on the rram-lsm target: the half-threshold pulse becomes each IF
layer's initial membrane (no tiles or converters), the crossbar executor equals numba fixed point on
``prog.graph`` spike for spike (ideal device), and what cannot be folded is refused by name."""

import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import spikeflow as sf
from spikeflow.convert import QCFS, ann_to_snn
from spikeflow.errors import BackendError, FormatError

from .spinnaker2.test_folder import _rehash


def _mlp(seed: int, half_threshold: bool = True, threshold: float = 1.5):
    torch.manual_seed(seed)
    ann = nn.Sequential(nn.Linear(6, 12), QCFS(4, 2.0), nn.Linear(12, 8), nn.BatchNorm1d(8), QCFS(4, threshold), nn.Linear(8, 3)).eval()
    with torch.no_grad():
        ann[3].running_mean.uniform_(-0.2, 0.2)
    return ann_to_snn(ann, half_threshold=half_threshold)


def _image_mlp(seed: int):
    """Frames in: the pulse starts from a flattened input, and ``tile_rows=16`` cuts the first matrix
    into 4 row tiles, all summed before the pulse (sources add in name order)."""
    torch.manual_seed(seed)
    ann = nn.Sequential(nn.Flatten(), nn.Linear(2 * 5 * 5, 12), QCFS(4, 2.0), nn.Linear(12, 3)).eval()
    return ann_to_snn(ann, (2, 5, 5))


CASES = {"mlp-0": (lambda: _mlp(0), (6,), {}), "mlp-1": (lambda: _mlp(1), (6,), {"adc_bits": 12}),
         "mlp-2": (lambda: _mlp(2), (6,), {"encoding": "offset"}), "frames-tiled": (lambda: _image_mlp(3), (2, 5, 5), {"tile_rows": 16})}


@pytest.mark.parametrize("case", sorted(CASES))
def test_crossbar_equals_numba_fixed_point_on_converted_networks(case, tmp_path):
    make, shape, options = CASES[case]
    graph = make()
    x = np.random.default_rng(sorted(CASES).index(case)).random((12, 3, *shape)) * 2
    sf.export(graph, target="rram-lsm", path=tmp_path / "out", device="ideal", **options)
    prog = sf.load_export(tmp_path / "out")
    ifs = sorted(k for k in graph.nodes if k.startswith("if"))
    got = prog.run(x, record=ifs)
    want = sf.simulate(prog.graph, x, backend="numba-event", precision=prog.precision, record=ifs)
    np.testing.assert_array_equal(got.output, want.output)
    for k in ifs:
        np.testing.assert_array_equal(got.spikes[k], want.spikes[k])
        np.testing.assert_array_equal(got.traces[k], want.traces[k])
        assert got.spikes[k].sum() > 0
    first = sf.simulate(prog.graph, np.zeros((1, 1, *shape)), backend="numba-event", precision=prog.precision,
                        record=[f"vinit_{k}" for k in ifs])
    with h5py.File(tmp_path / "out" / "arrays.h5") as f:
        for k in ifs:  # the initial membrane is the simulator's own step-0 pulse
            np.testing.assert_array_equal(f[f"{k}/v_init"][()], first.traces[f"vinit_{k}"][0, 0] * 2**prog.precision.state_frac)


def test_pulse_takes_no_tiles_or_converters(tmp_path):
    with_pulse = sf.export(_mlp(0), target="rram-lsm", path=tmp_path / "a", device="ideal")
    without = sf.export(_mlp(0, half_threshold=False), target="rram-lsm", path=tmp_path / "b", device="ideal")
    for key in ("tiles", "cells", "adc_conversions_per_step", "neurons"):
        assert with_pulse[key] == without[key]
    ops = json.loads((tmp_path / "a" / "program.json").read_text())["ops"]
    assert [op["name"] for op in ops] == ["input", "affine1", "if2", "affine3", "if5", "affine6", "output"]
    assert [op["name"] for op in ops if op.get("v_init")] == ["if2", "if5"]


def test_what_cannot_be_folded_is_refused_by_name(tmp_path):
    graph = _mlp(0)
    graph.nodes["vinit_late"] = sf.ir.Delay(delay=2e-3)
    with pytest.raises(BackendError, match=r"node 'vinit_if2': the pulse into IF layer 'if2' is nonzero at step 1"):
        sf.export(graph, target="rram-lsm", path=tmp_path / "a", device="ideal")
    # 9 fractional bits of a 10-bit state: the pulse's constant one does not fit
    with pytest.raises(BackendError, match=r"the half-threshold pulse saturates the target's 10-bit state format"):
        sf.export(_mlp(0, threshold=0.4), target="rram-lsm", path=tmp_path / "b", device="ideal", adc_bits=10, state_frac=9)
    assert not any((tmp_path / k).exists() for k in "ab")


def test_a_damaged_v_init_is_refused_and_version_1_exports_load(tmp_path):
    sf.export(_mlp(0), target="rram-lsm", path=tmp_path / "out", device="ideal")
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "out", bad)
    with h5py.File(bad / "arrays.h5", "r+") as f:
        f["if2/v_init"][0] = 1 << 40
    _rehash(bad)
    with pytest.raises(FormatError, match=r"if2/v_init is not integers in the state range"):
        sf.load_export(bad)
    old = tmp_path / "old"
    sf.export(_mlp(0, half_threshold=False), target="rram-lsm", path=old, device="ideal")
    m = json.loads((old / "manifest.json").read_text())
    m["version"] = 1
    (old / "manifest.json").write_text(json.dumps(m))
    prog = sf.load_export(old)
    x = np.random.default_rng(0).random((6, 2, 6))
    np.testing.assert_array_equal(prog.run(x).output, sf.simulate(prog.graph, x, backend="numba-event", precision=prog.precision).output)
