"""Tonic-backed loaders on small fake roots written in the real layouts; never a download."""

import zipfile

import h5py
import numpy as np
import pytest

from spikeflow.datasets import tonic_sets
from spikeflow.datasets.events import make_events
from spikeflow.datasets.nmnist_bin import write_nmnist_bin
from spikeflow.errors import DataError, FormatError, SpikeflowError


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to download fails the test loudly instead of hanging."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def nmnist_events(seed):
    rng = np.random.default_rng(seed)
    n = 50 + seed
    return make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), np.sort(rng.integers(0, 300_000, n)), rng.integers(0, 2, n))


def write_nmnist_tree(base, folder="Train"):
    """``base/<folder>/<digit>/<id>.bin`` like the extracted N-MNIST archive; returns {path: events}."""
    written = {}
    for digit in (0, 3, 7):
        for k in range(2):
            ev = nmnist_events(digit * 10 + k)
            path = base / folder / str(digit) / f"{digit:02d}{k:03d}.bin"
            write_nmnist_bin(path, ev)
            written[(digit, k)] = ev
    return written


def test_nmnist_from_zip_matches_written_events(tmp_path):
    staging = tmp_path / "staging"
    written = write_nmnist_tree(staging)
    loc = tmp_path / "root" / "NMNIST"
    loc.mkdir(parents=True)
    with zipfile.ZipFile(loc / "train.zip", "w") as zf:
        for f in sorted(staging.rglob("*.bin")):
            zf.write(f, f.relative_to(staging))
    ds = tonic_sets.NMNIST(tmp_path / "root")
    assert (loc / "Train" / "3").is_dir() and not list(loc.glob(".extract-*"))
    assert len(ds) == 6 and ds.sensor_size == (34, 34, 2)
    assert ds.targets == [0, 0, 3, 3, 7, 7]
    for i, key in enumerate(sorted(written)):
        events, label = ds[i]
        assert label == key[0]
        for f in "xytp":
            assert np.array_equal(events[f].astype(np.int64), written[key][f].astype(np.int64))
    # Extracted once: a second instance uses the folder even without the archive.
    (loc / "train.zip").unlink()
    assert len(tonic_sets.NMNIST(tmp_path / "root")) == 6


def test_nmnist_transform_and_first_saccade(tmp_path):
    import tonic.transforms as T

    write_nmnist_tree(tmp_path / "NMNIST", folder="Test")
    ds = tonic_sets.NMNIST(tmp_path, train=False, first_saccade_only=True, transform=T.ToFrame(sensor_size=(34, 34, 2), n_time_bins=2), target_transform=lambda y: y + 100)
    frames, label = ds[0]
    assert frames.shape[0] == 2 and label == 100


def test_nmnist_damaged_samples_raise_format_error(tmp_path):
    write_nmnist_tree(tmp_path / "NMNIST")
    files = sorted((tmp_path / "NMNIST" / "Train").rglob("*.bin"))
    files[0].write_bytes(files[0].read_bytes()[:-2])
    files[1].write_bytes(bytes([200, 1, 0, 0, 5]) * 3)
    files[2].write_bytes(b"")
    ds = tonic_sets.NMNIST(tmp_path)
    for i, needle in ((0, "00000.bin"), (1, "x=200"), (2, "no events")):
        with pytest.raises(FormatError, match=needle):
            ds[i]
    with pytest.raises(IndexError):
        ds[99]


def test_corrupt_archive(tmp_path):
    loc = tmp_path / "NMNIST"
    loc.mkdir()
    (loc / "train.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(FormatError, match="cannot extract archive"):
        tonic_sets.NMNIST(tmp_path)


@pytest.mark.parametrize(
    "cls,needles",
    [
        (tonic_sets.NMNIST, ["NMNIST/Train/[0-9]/*.bin", "NMNIST/train.zip", "n-mnist"]),
        (tonic_sets.DVSGesture, ["DVSGesture/ibmGestureTrain/user*_*/*.npy", "ibmGestureTrain.tar.gz"]),
        (tonic_sets.SHD, ["SHD/shd_train.h5", "SHD/shd_train.h5.zip", "zenkelab"]),
        (tonic_sets.NTIDIGITS18, ["NTIDIGITS18/n-tidigits.hdf5"]),
        (tonic_sets.POKERDVS, ["POKERDVS/pips_train/cl/*.npy", "POKERDVS/pips_train/sp/*.npy", "pips_train.tar.gz"]),
    ],
)
def test_missing_files_name_what_is_expected(tmp_path, cls, needles):
    with pytest.raises(DataError) as info:
        cls(tmp_path)
    for needle in needles:
        assert needle in str(info.value)
    assert "never downloads" in str(info.value)


def test_dvsgesture_npy_layout(tmp_path):
    folder = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_fluorescent"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for label in (2, 5):
        n = 40
        # Columns x, y, p, t(ms), as in tonic's preprocessed files.
        arr = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n), np.sort(rng.integers(0, 6000, n))], axis=1)
        np.save(folder / f"{label}.npy", arr)
        arrays[label] = arr
    ds = tonic_sets.DVSGesture(tmp_path)
    assert len(ds) == 2 and ds.sensor_size == (128, 128, 2)
    for i in range(2):
        events, label = ds[i]
        assert np.array_equal(events["t"], arrays[label][:, 3] * 1000)
        assert np.array_equal(events["x"], arrays[label][:, 0])
    np.save(folder / "5.npy", np.full((3, 4), 500))
    with pytest.raises(FormatError, match="5.npy"):
        ds[ds.targets.index(5)]


def write_shd(path, n=3):
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float32))
        units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        truth = []
        for i in range(n):
            k = 20 + i
            t = np.sort(rng.random(k)).astype(np.float32)
            u = rng.integers(0, 700, k).astype(np.uint16)
            times[i], units[i] = t, u
            truth.append((t, u))
        f["labels"] = np.arange(n, dtype=np.uint16) + 4
        f["extra/keys"] = np.array([b"zero", b"one"])
        f["extra/speaker"] = np.zeros(n, dtype=np.uint16)
    return truth


def test_shd_hdf5_layout(tmp_path):
    (tmp_path / "SHD").mkdir()
    truth = write_shd(tmp_path / "SHD" / "shd_test.h5")
    ds = tonic_sets.SHD(tmp_path, train=False)
    assert len(ds) == 3 and ds.sensor_size == (700, 1, 1) and ds.targets == [4, 5, 6]
    events, label = ds[1]
    assert label == 5
    assert np.array_equal(events["x"], truth[1][1])
    assert np.array_equal(events["t"], (truth[1][0].astype(np.float64) * 1e6).astype(np.int64))


def test_shd_garbage_file(tmp_path):
    (tmp_path / "SHD").mkdir()
    (tmp_path / "SHD" / "shd_train.h5").write_bytes(b"garbage" * 10)
    with pytest.raises(FormatError, match="SHD"):
        tonic_sets.SHD(tmp_path)


def test_ntidigits_layout(tmp_path):
    (tmp_path / "NTIDIGITS18").mkdir()
    with h5py.File(tmp_path / "NTIDIGITS18" / "n-tidigits.hdf5", "w") as f:
        ids = [b"man-ae-3", b"woman-bc-5o"]
        f["test_labels"] = np.array(ids)
        for i, sid in enumerate(ids):
            f[f"test_addresses/{sid.decode()}"] = np.arange(5 + i) % 64
            f[f"test_timestamps/{sid.decode()}"] = np.linspace(0, 0.5, 5 + i)
    ds = tonic_sets.NTIDIGITS18(tmp_path, train=False, single_digits=True)
    assert len(ds) == 1
    events, label = ds[0]
    assert label == 3 and len(events) == 5 and events["t"][-1] == 500_000


def test_pokerdvs_layout(tmp_path):
    rng = np.random.default_rng(2)
    for cls in ("cl", "he", "di", "sp"):
        folder = tmp_path / "POKERDVS" / "pips_test" / cls
        folder.mkdir(parents=True)
        n = 30
        np.save(folder / f"{cls}0.npy", np.stack([np.sort(rng.integers(0, 9000, n)), rng.integers(0, 35, n), rng.integers(0, 35, n), rng.integers(0, 2, n)], axis=1))
    ds = tonic_sets.POKERDVS(tmp_path, train=False)
    assert len(ds) == 4 and sorted(ds.targets) == [0, 1, 2, 3]
    events, label = ds[0]
    assert len(events) == 30 and isinstance(label, int)


def test_all_errors_are_spikeflow_errors(tmp_path):
    for cls in (tonic_sets.NMNIST, tonic_sets.SHD, tonic_sets.DVSGesture, tonic_sets.NTIDIGITS18, tonic_sets.POKERDVS):
        with pytest.raises(SpikeflowError):
            cls(tmp_path / "nothing-here", train=False)


# -- archive extraction never writes outside root (issue 17: POKERDVS archives could) ----------
def _tar(path, add):
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as t:
        for info, data in add:
            t.addfile(info, io.BytesIO(data) if data is not None else None)


def _member(name, data=b"x", kind=None, target=""):
    import tarfile

    info = tarfile.TarInfo(name)
    if kind is None:
        info.size = len(data)
        return info, data
    info.type, info.linkname = kind, target
    return info, None


def _evil_members(tmp_path):
    import tarfile

    outside = tmp_path / "outside.txt"
    return {
        "dot-dot": [_member("pips_train/../../outside.txt")],
        "absolute": [_member(str(outside))],
        "symlink out": [_member("pips_train/link", kind=tarfile.SYMTYPE, target=str(tmp_path)), _member("pips_train/link/outside.txt")],
        "hard link": [_member("pips_train/hard", kind=tarfile.LNKTYPE, target="/etc/passwd")],
        "device": [_member("pips_train/dev", kind=tarfile.CHRTYPE)],
    }


@pytest.mark.parametrize("case", ["dot-dot", "absolute", "symlink out", "hard link", "device"])
def test_tar_traversal_is_refused(tmp_path, case):
    loc = tmp_path / "root" / "POKERDVS"
    loc.mkdir(parents=True)
    _tar(loc / "pips_train.tar.gz", _evil_members(tmp_path)[case])
    with pytest.raises(FormatError, match="refused"):
        tonic_sets.POKERDVS(tmp_path / "root")
    assert not (tmp_path / "outside.txt").exists()
    assert sorted(p.name for p in loc.iterdir()) == ["pips_train.tar.gz"]  # nothing extracted, no temp folder


def test_zip_traversal_is_refused(tmp_path):
    import zipfile

    loc = tmp_path / "root" / "NMNIST"
    loc.mkdir(parents=True)
    with zipfile.ZipFile(loc / "train.zip", "w") as z:
        z.writestr("Train/0/00001.bin", b"")
        z.writestr("../../outside.bin", b"x")
    with pytest.raises(FormatError, match="outside the target folder"):
        tonic_sets.NMNIST(tmp_path / "root")
    assert not (tmp_path / "outside.bin").exists()
