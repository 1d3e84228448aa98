"""Regression tests for damaged and hostile files: each defect found by the fuzz campaign of
issue 17, reproduced, and refused with a SpikeflowError (never a hang, a leak or wrong data)."""

import os
import signal
import time

import h5py
import numpy as np
import pytest

import spikeflow as sf
from spikeflow import _atomic
from spikeflow import _checked_files as checked
from spikeflow._checked_files import SEAL_SIZE, parse_isolated, seal_file, sealed_hdf5_writer
from spikeflow.io import hdf5


def mlp() -> sf.Graph:
    rng = np.random.default_rng(0)
    return sf.Graph.sequential(
        sf.ir.Input(shape=(4,)),
        sf.ir.Affine(weight=rng.normal(size=(8, 4)), bias=np.zeros(8)),
        sf.ir.LIF(tau=0.01, v_threshold=np.ones(8)),
        sf.ir.Affine(weight=rng.normal(size=(2, 8)), bias=np.zeros(2)),
        sf.ir.LIF(tau=0.01, v_threshold=np.ones(2)),
    )


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "mlp.h5"
    sf.save(mlp(), path)
    return path


def test_zeroed_bytes_that_hung_libhdf5_are_refused_before_parsing(saved):
    # Issue 17: zeroing 64 bytes of a saved MLP at offset 2120 made h5py loop forever.
    data = bytearray(saved.read_bytes())
    data[2120:2184] = bytes(64)
    saved.write_bytes(bytes(data))
    with pytest.raises(sf.FormatError, match="checksum mismatch"):
        sf.load(saved)


def test_changed_weight_is_refused_not_loaded(saved):
    with h5py.File(saved, "r") as f:
        offset = f["graph/nodes"][list(f["graph/nodes"])[1]]["weight"].id.get_offset()
    data = bytearray(saved.read_bytes())
    data[offset + 3] ^= 0x10  # one bit of one weight: still a valid HDF5 file
    saved.write_bytes(bytes(data))
    with pytest.raises(sf.FormatError, match="checksum mismatch"):
        sf.load(saved)


@pytest.mark.parametrize("cut", [1, SEAL_SIZE, 1000])
def test_truncated_or_extended_file(saved, cut):
    data = saved.read_bytes()
    saved.write_bytes(data[:-cut])
    with pytest.raises(sf.FormatError, match="truncated or extended"):
        sf.load(saved)
    saved.write_bytes(data + bytes(cut))
    with pytest.raises(sf.FormatError, match="truncated or extended"):
        sf.load(saved)


def test_the_seal_is_an_hdf5_user_block(saved):
    with h5py.File(saved, "r") as f:  # other HDF5 tools still read the file
        assert f.userblock_size == SEAL_SIZE
        assert f.attrs["format"] == "spikeflow-graph"
    assert saved.read_bytes().startswith(b"spikeflow-seal 1\nsha256 ")


def _craft(path, build):
    """A file with a valid seal whose content was made by hand (the worst case: a crafted file)."""
    with sealed_hdf5_writer(path) as f:
        hdf5.write_header(f, hdf5.FORMAT_NAME, hdf5.FORMAT_VERSION)
        hdf5.write_tree(f.create_group("graph"), mlp().to_dict())
        build(f)


def _replace(f, name, make):
    del f[name]
    make(f, name)


CRAFTED = {
    "soft link": (lambda f: _replace(f, "graph/nodes/lif2/tau", lambda f, k: f.__setitem__(k, h5py.SoftLink("/nowhere"))), "soft link"),
    "soft link to data": (lambda f: _replace(f, "graph/nodes/lif2/tau", lambda f, k: f.__setitem__(k, h5py.SoftLink("/graph/nodes/affine1/bias"))), "soft link"),
    "external link": (lambda f: _replace(f, "graph/nodes/lif2/tau", lambda f, k: f.__setitem__(k, h5py.ExternalLink("/etc/passwd", "/x"))), "external link"),
    "hard-link alias": (lambda f: f["graph"].__setitem__("again", f["graph/nodes"]), "reached twice"),
    "2^40-element dataset": (lambda f: _replace(f, "graph/nodes/lif2/tau", lambda f, k: f.create_dataset(k, shape=(2**40,), dtype="f8")), "declares 1,099,511,627,776 elements"),
    "unallocated dataset": (lambda f: _replace(f, "graph/nodes/lif2/tau", lambda f, k: f.create_dataset(k, shape=(8,), dtype="f8")), "stores 0"),
    "compressed dataset": (lambda f: _replace(f, "graph/nodes/lif2/tau", lambda f, k: f.create_dataset(k, data=np.ones(8), compression="gzip")), "filter 1"),
    "deep nesting": (lambda f: f.create_group("/".join(["g"] * 80)), "deeper than"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_sealed_file_is_refused_before_reading_data(tmp_path, case):
    build, words = CRAFTED[case]
    path = tmp_path / "crafted.h5"
    _craft(path, build)
    assert path.stat().st_size < 100_000
    with pytest.raises(sf.FormatError, match=words):
        sf.load(path)


def test_unsealed_file_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        hdf5.write_header(f, hdf5.FORMAT_NAME, 1)
        hdf5.write_tree(f.create_group("graph"), mlp().to_dict())
    with pytest.raises(sf.FormatError, match="no spikeflow checksum.*hang the HDF5 library"):
        sf.load(path)


def test_seal_file_on_a_sealed_file_is_stable(saved):
    before = saved.read_bytes()
    seal_file(saved)
    assert saved.read_bytes() == before


# ---------------------------------------------------------------------------- the hang guard


def _sleepy(data, where):
    time.sleep(60)


def _crash(data, where):
    os.kill(os.getpid(), signal.SIGSEGV)


def _echo(data, where):
    return {"n": len(data), "arr": np.arange(3.0), "s": np.array([b"a", b"bc"], dtype=object), "x": np.float32(2.5), "b": data[:2], "t": "txt"}


def _refuse(data, where):
    raise sf.FormatError(f"{where}: refused")


def test_isolated_parse_returns_plain_data_and_refuses_hangs_and_crashes():
    out = parse_isolated(_echo, b"xyz", "f")
    assert out["n"] == 3 and out["t"] == "txt" and out["b"] == b"xy" and out["x"] == np.float32(2.5)
    np.testing.assert_array_equal(out["arr"], np.arange(3.0))
    assert out["s"].tolist() == [b"a", b"bc"]
    with pytest.raises(sf.FormatError, match="f: refused"):
        parse_isolated(_refuse, b"", "f")
    with pytest.raises(sf.FormatError, match="did not finish within 0.3 s"):
        parse_isolated(_sleepy, b"", "slow.nir", timeout=0.3)
    with pytest.raises(sf.FormatError, match="crashed"):
        parse_isolated(_crash, b"", "crash.nir")
    assert parse_isolated(_echo, b"ab", "f")["n"] == 2  # a fresh helper after each failure


def test_parse_helper_keeps_no_descriptor_of_the_caller(tmp_path):
    checked._WORKER.stop()
    with open(tmp_path / "held.txt", "w"):  # a descriptor open while the helper is forked
        parse_isolated(_echo, b"x", "f")
    fds = os.listdir(f"/proc/{checked._WORKER.pid}/fd")
    assert len(fds) <= 5, fds  # stdin, stdout, stderr and its two pipes


def test_nir_damage_that_hangs_libhdf5_is_refused(tmp_path, monkeypatch):
    # Zeroing 64 bytes of this NIR file near offset 2600 makes libhdf5 loop forever (nir 1.0.8).
    monkeypatch.setattr(checked, "HANG_TIMEOUT_S", 2.0)
    path = tmp_path / "mlp.nir"
    sf.to_nir(mlp(), path)
    clean = path.read_bytes()
    outcomes = set()
    for offset in (2309, 2381, 2610, 2686):
        data = bytearray(clean)
        data[offset : offset + 64] = bytes(64)
        path.write_bytes(bytes(data))
        with pytest.raises(sf.SpikeflowError) as err:
            sf.from_nir(path, dt=1e-3)
        outcomes.add("hang" if "did not finish" in str(err.value) else "error")
    assert outcomes <= {"hang", "error"}


# ------------------------------------------------------------------------------------ writes


def _kill_writers_repeatedly(tmp_path, write, kills: int = 25) -> None:
    rng = np.random.default_rng(1)
    for _ in range(kills):
        pid = os.fork()
        if pid == 0:  # a writer that saves forever until it is killed mid-write
            try:
                while True:
                    write()
            finally:
                os._exit(1)
        time.sleep(float(rng.uniform(0.005, 0.05)))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_killed_writers_leave_no_temporary_files(tmp_path):
    target = tmp_path / "net.h5"
    _kill_writers_repeatedly(tmp_path, lambda: sf.save(mlp(), target))
    sf.save(mlp(), target)  # the next write clears what killed writers left
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "net.h5"]
    assert leftovers == []
    assert sf.load(target) == mlp()


def test_orphans_of_live_writers_are_kept(tmp_path):
    mine = tmp_path / f".x.h5.sf-{os.getpid()}-0123abcd.tmp"
    dead = tmp_path / ".x.h5.sf-999999999-0123abcd.tmp"
    other = tmp_path / ".x.h5.tmp"  # not ours: never touched
    for p in (mine, dead, other):
        p.write_bytes(b"")
    assert _atomic.remove_orphans(tmp_path) == [dead]
    assert mine.exists() and other.exists() and not dead.exists()


# ------------------------------------------------------------------------------- event stores

from spikeflow.datasets.events import make_events  # noqa: E402
from spikeflow.datasets.nmnist_bin import write_nmnist_bin  # noqa: E402
from spikeflow.datasets.store import EventStore, EventStoreWriter, write_store  # noqa: E402


def _events(n, seed):
    rng = np.random.default_rng(seed)
    return make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), np.sort(rng.integers(0, 10_000, n)), rng.integers(0, 2, n))


def test_two_processes_appending_to_one_store_both_land(tmp_path):
    path = tmp_path / "s.h5"
    write_store(path, [_events(5, 0)], [0], (34, 34, 2))
    rounds, pids = 6, []
    for writer in (1, 2):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                for i in range(rounds):
                    with EventStoreWriter(path, (34, 34, 2), append=True) as w:
                        w.append(_events(3, 10 * writer + i), label=writer)
            except BaseException:  # noqa: BLE001 - reported through the exit status
                code = 1
            os._exit(code)
        pids.append(pid)
    assert all(os.waitpid(pid, 0)[1] == 0 for pid in pids)
    with EventStore(path) as s:
        assert sorted(s.labels.tolist()) == [0] + [1] * rounds + [2] * rounds
    assert [p.name for p in tmp_path.iterdir()] == ["s.h5"]  # no lock or temporary file left


def test_event_store_is_sealed_and_damage_is_refused_before_parsing(tmp_path):
    path = write_store(tmp_path / "s.h5", [_events(50, 1)], [3], (34, 34, 2))
    data = bytearray(path.read_bytes())
    assert data.startswith(b"spikeflow-seal 1\n")
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(sf.FormatError, match="checksum mismatch"):
        EventStore(path)


@pytest.mark.parametrize("label", ["7", 1.5, None, True, 2**70])
def test_store_labels_must_be_int64(tmp_path, label):
    with pytest.raises(sf.DataError, match="label must be an int64"):
        with EventStoreWriter(tmp_path / "s.h5", (34, 34, 2)) as w:
            w.append(_events(2, 0), label=label)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("metadata", [{"a": object()}, {"a": float("nan")}, ["not", "a", "dict"], {1: {2: set()}}])
def test_store_metadata_must_be_json(tmp_path, metadata):
    with pytest.raises(sf.DataError, match="metadata must be"):
        EventStoreWriter(tmp_path / "s.h5", (34, 34, 2), metadata=metadata)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sensor", [("a", 34, 2), None, 5, (34.5, 34, 2), (0, 34, 2)])
def test_bad_sensor_sizes_are_data_errors(tmp_path, sensor):
    with pytest.raises(sf.DataError, match="sensor_size"):
        EventStoreWriter(tmp_path / "s.h5", sensor)
    with pytest.raises(sf.DataError, match="sensor_size"):
        write_nmnist_bin(tmp_path / "a.bin", _events(2, 0), sensor_size=sensor)


def test_late_nmnist_event_is_refused_not_written_as_a_huge_file(tmp_path):
    # Issue 17: one event at t = 2**40 µs wrote a 671 MB file of overflow markers.
    with pytest.raises(sf.DataError, match="overflow markers"):
        write_nmnist_bin(tmp_path / "a.bin", make_events([1], [2], [2**40], [1]))
    assert list(tmp_path.iterdir()) == []


def test_float_or_wrapping_event_fields_are_refused(tmp_path):
    floats = np.array([(1, 2, 1.5, 1)], dtype=[("x", "i8"), ("y", "i8"), ("t", "f8"), ("p", "i8")])
    wraps = np.array([(1, 2, 2**63 + 5, 1)], dtype=[("x", "i8"), ("y", "i8"), ("t", "u8"), ("p", "i8")])
    for events in (floats, wraps):
        with pytest.raises(sf.DataError, match="field 't'"):
            write_nmnist_bin(tmp_path / "a.bin", events)
