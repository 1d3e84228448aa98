"""The export folder: round trip, its files, and clear errors for every kind of damage."""

import hashlib
import json
import shutil

import h5py
import numpy as np
import pytest

import spikeflow as sf
from spikeflow.errors import DataError, FormatError

from . import graphs as G


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    rng = np.random.default_rng(5)
    graph = G.recurrent_cuba(rng)
    x = G.spikes(rng, 12, 2, (10,))
    out = tmp_path_factory.mktemp("s2") / "export"
    report = sf.export(graph, target="spinnaker2", path=out, samples=x, chip={"max_atoms_per_core": 6, "app_pes_per_chip": 2, "chips": 4})
    return out, report, x


def _copy(exported, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(exported[0], out)
    return out


def _rehash(folder):
    """Make the manifest agree with edited files, so the parser itself must catch the damage."""
    m = json.loads((folder / "manifest.json").read_text())
    for name in m["files"]:
        data = (folder / name).read_bytes()
        m["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(m))


def test_folder_contents_and_report_round_trip(exported):
    out, report, x = exported
    names = {p.name for p in out.iterdir()}
    assert {"manifest.json", "network.json", "graph.h5", "routing.h5", "projections.h5", "report.json", "sram.png"} <= names
    assert len([k for k in names if k.startswith("pe_")]) == report.pes
    prog = sf.load_export(out)
    assert prog.report.to_dict() == json.loads(json.dumps(report.to_dict()))
    net = json.loads((out / "network.json").read_text())
    assert [p["name"] for p in net["populations"]] == ["input", "cuba", "readout"]
    cuba = net["populations"][1]
    assert cuba["type"] == "lif_curr_exp" and cuba["max_atoms_per_core"] <= 6 and 1 <= cuba["scale"] < 2
    assert cuba["params"]["reset"] == "reset_by_subtraction" and 0 < cuba["params"]["alpha_decay"] < 1
    with h5py.File(out / "projections.h5") as f:  # py-spinnaker2's [pre, post, weight, delay] lists
        conns = {k.split("_", 1)[1]: f[k][()] for k in f}
    assert np.abs(conns["rec"][:, 2]).max() <= 15 and set(np.unique(conns["rec"][:, 3])) == {1}  # recurrent: one tick
    assert set(np.unique(conns["fc_in"][:, 3])) == {0}
    assert report.chips > 1 and sum(report.routing_after.values()) <= sum(report.routing_before.values())
    a = report.activity
    assert a["synaptic_events"] > 0 and a["packets"] > 0 and a["busiest_cycles"] < a["tick_budget"] and not a["overrun"]
    text = report.text()
    for phrase in ("PEs on", "SRAM per PE", "routing entries", "rel.error", "busiest PE", "uJ"):
        assert phrase in text
    for pe in report.sram:
        assert sum(pe["bytes"].values()) <= 96 * 1024


def test_export_replaces_atomically(exported, tmp_path):
    out = _copy(exported, tmp_path)
    with pytest.raises(sf.SpikeflowError):
        sf.export(sf.Graph.sequential(sf.ir.Input(shape=(2,)), sf.ir.Scale(scale=1.0)), target="spinnaker2", path=out)
    sf.load_export(out)  # the failed export left the old one intact


def test_missing_or_edited_files(exported, tmp_path):
    out = _copy(exported, tmp_path)
    (out / "pe_0001.h5").unlink()
    with pytest.raises(FormatError, match="'pe_0001.h5' listed in the manifest is missing"):
        sf.load_export(out)
    out = _copy(exported, tmp_path / "b")
    data = bytearray((out / "routing.h5").read_bytes())
    data[-10] ^= 0xFF
    (out / "routing.h5").write_bytes(bytes(data))
    with pytest.raises(FormatError, match="'routing.h5' does not match its SHA-256"):
        sf.load_export(out)


def test_truncated_pe_image_rehashed(exported, tmp_path):
    out = _copy(exported, tmp_path)
    (out / "pe_0002.h5").write_bytes((out / "pe_0002.h5").read_bytes()[:200])
    _rehash(out)
    with pytest.raises(FormatError, match="pe_0002.h5: not a readable HDF5 file"):
        sf.load_export(out)


def test_pe_image_without_a_field(exported, tmp_path):
    out = _copy(exported, tmp_path)
    with h5py.File(out / "pe_0002.h5", "a") as f:
        del f["neurons/v_threshold"]
    _rehash(out)
    with pytest.raises(FormatError, match="pe_0002.h5 neuron field 'v_threshold' missing"):
        sf.load_export(out)


def test_rows_pointing_outside_the_slice(exported, tmp_path):
    out = _copy(exported, tmp_path)
    with h5py.File(out / "pe_0002.h5", "a") as f:
        t = f["projection_00/target"][()]
        t[0] = 999
        f["projection_00/target"][...] = t
    _rehash(out)
    with pytest.raises(FormatError, match="synaptic rows are malformed .*outside its population or slice"):
        sf.load_export(out)


def test_routing_table_that_drops_a_key(exported, tmp_path):
    out = _copy(exported, tmp_path)
    with h5py.File(out / "routing.h5", "a") as f:
        grp = f["chip_0000"]  # the input's chip: its packets no longer leave it
        grp["links"][...] = np.zeros_like(grp["links"][()])
    _rehash(out)
    with pytest.raises(FormatError, match="routing tables do not deliver key"):
        sf.load_export(out)


def test_master_table_without_the_key(exported, tmp_path):
    out = _copy(exported, tmp_path)
    with h5py.File(out / "pe_0002.h5", "a") as f:
        f["projection_00/table_key"][...] = f["projection_00/table_key"][()] + (1 << 20)
    _rehash(out)
    with pytest.raises(FormatError, match="has rows for key .* but no master-table entry"):
        sf.load_export(out)


def test_malformed_json_and_wrong_target(exported, tmp_path):
    out = _copy(exported, tmp_path)
    (out / "network.json").write_text("{\"populations\": 3}")
    _rehash(out)
    with pytest.raises(FormatError, match="network.json is malformed"):
        sf.load_export(out)
    out = _copy(exported, tmp_path / "b")
    m = json.loads((out / "manifest.json").read_text())
    m["target"] = "rram-lsm"
    (out / "manifest.json").write_text(json.dumps(m))
    from spikeflow.backends import spinnaker2

    with pytest.raises(FormatError, match="made for target 'rram-lsm', not 'spinnaker2'"):
        spinnaker2.load_export(out)
    with pytest.raises(FormatError, match="no such folder"):
        sf.load_export(tmp_path / "nothing")


def test_run_checks_its_inputs(exported):
    out, _, x = exported
    prog = sf.load_export(out)
    with pytest.raises(DataError, match="'fc_in' is not a neuron population"):
        prog.run(x, record=["fc_in"])
    with pytest.raises(DataError):
        prog.run(np.ones((3, 2, 7)))
    res = prog.run(x, record=["cuba"])
    assert res.output.shape == (12, 2, 4) and res.spikes["cuba"].shape == (12, 2, 16)
    assert res.stats["synaptic_events"] > 0 and res.stats["packets"] > 0 and res.stats["overflows"] == 0


def test_report_flags_an_overrun_and_uses_the_given_constants(tmp_path):
    rng = np.random.default_rng(7)
    graph = G.mlp(rng)
    x = G.spikes(rng, 10, 2, (12,))
    slow = sf.export(graph, target="spinnaker2", path=tmp_path / "slow", samples=x, chip={"clock_hz": 1e4})
    fast = sf.export(graph, target="spinnaker2", path=tmp_path / "fast", samples=x, chip={"energy_per_cycle_j": 20e-12})
    assert slow.activity["overrun"] and "OVERRUN" in slow.text()
    assert slow.activity["latency_s"] > 10 * 1e-3  # an overrun stretches every tick
    assert not fast.activity["overrun"]
    base = sf.export(graph, target="spinnaker2", path=tmp_path / "base", samples=x).activity
    assert fast.activity["energy_j"] > base["energy_j"] and fast.activity["synaptic_events"] == base["synaptic_events"]


def test_run_refuses_nan_inputs(exported):
    out, _, x = exported
    bad = x.copy()
    bad[3, 1, 2] = np.nan
    with pytest.raises(DataError, match=r"NaN or inf, first at index \(3, 1, 2\)"):
        sf.load_export(out).run(bad)
