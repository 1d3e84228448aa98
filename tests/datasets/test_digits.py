"""DigitSaccades: generation, split, cache reuse and recovery, binned frames."""

import os

import numpy as np
import pytest

from spikeflow.datasets.digits import N_DIGITS, N_TEST, DigitSaccades, digit_saccade_frames, split_indices
from spikeflow.datasets.events import check_events, to_frames
from spikeflow.errors import DataError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("ds")
    DigitSaccades(path, subset=12, progress=False)
    return path


def test_split_is_fixed_and_disjoint():
    train, test = split_indices(True), split_indices(False)
    assert len(train) == N_DIGITS - N_TEST and len(test) == N_TEST
    assert not set(train) & set(test) and len(set(train) | set(test)) == N_DIGITS
    assert np.array_equal(train, split_indices(True))


def test_samples_look_like_nmnist(root):
    from sklearn.datasets import load_digits

    ds = DigitSaccades(root, subset=12, progress=False)
    digits = load_digits()
    assert len(ds) == 12
    for i in range(len(ds)):
        events, label = ds[i]
        check_events(events, ds.sensor_size, sorted_t=True)
        assert 1000 < len(events) < 10000 and 0.3 < events["p"].mean() < 0.7
        assert events["t"].max() < ds.duration_us
        assert label == digits.target[split_indices(True)[i]]
    with pytest.raises(IndexError):
        ds[12]


def test_cache_is_reused_not_regenerated(root):
    files = sorted((root / "DigitSaccades").glob("*.h5"))
    assert len(files) == 2
    stamps = [f.stat().st_mtime_ns for f in files]
    test = DigitSaccades(root, train=False, subset=12, progress=False)
    assert len(test) == 12
    assert [f.stat().st_mtime_ns for f in files] == stamps


def test_deterministic_across_builds(tmp_path, root):
    a = DigitSaccades(root, subset=12, progress=False)
    b = DigitSaccades(tmp_path, subset=12, progress=False)
    for i in (0, 5, 11):
        assert np.array_equal(a[i][0], b[i][0])


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_cache_is_rebuilt(tmp_path, damage):
    ds = DigitSaccades(tmp_path, subset=3, progress=False)
    want = ds[2][0]
    ds.close()
    raw = ds.path.read_bytes()
    ds.path.write_bytes({"truncate": raw[: len(raw) // 2], "garbage": os.urandom(len(raw)), "empty": b""}[damage])
    with pytest.warns(UserWarning, match="rebuilding cache"):
        again = DigitSaccades(tmp_path, subset=3, progress=False)
    assert np.array_equal(again[2][0], want)


def test_other_settings_get_their_own_cache(tmp_path):
    a = DigitSaccades(tmp_path, subset=2, progress=False)
    b = DigitSaccades(tmp_path, subset=2, progress=False, emulator={"threshold": 0.8})
    assert a.path != b.path and len(b[0][0]) < len(a[0][0])
    with pytest.raises(DataError, match="unknown emulator settings"):
        DigitSaccades(tmp_path, subset=2, emulator={"thresh": 1})
    with pytest.raises(DataError, match="subset"):
        DigitSaccades(tmp_path, subset=0)


def test_transform_and_frames(root):
    import tonic.transforms as T

    ds = DigitSaccades(root, subset=12, progress=False, transform=T.ToFrame(sensor_size=(34, 34, 2), n_time_bins=3))
    frames, label = ds[0]
    assert frames.shape == (3, 2, 34, 34)
    x, y = ds.frames(n_bins=5)
    assert x.shape == (12, 5, 2, 34, 34) and x.dtype == np.float32 and y.shape == (12,)
    raw = DigitSaccades(root, subset=12, progress=False)
    assert np.array_equal(x[4], to_frames(raw[4][0], (34, 34, 2), 5, 315_000))
    ev = raw[4][0]
    assert np.array_equal(raw.read_window(4, 105_000, 210_000), ev[(ev["t"] >= 105_000) & (ev["t"] < 210_000)])
    xt, _ = ds.frames(n_bins=5, time_major=True)
    assert np.array_equal(xt[:, 4], x[4])


def test_digit_saccade_frames_helper(root):
    data = digit_saccade_frames(root, n_bins=4, subset=12, progress=False)
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    assert xtr.shape == (12, 4, 2, 34, 34) and xte.shape == (12, 4, 2, 34, 34)
    assert ytr.dtype == np.int64 and set(yte) <= set(range(10))


def test_torch_dataloader(root):
    import torch

    from spikeflow.datasets.events import EventCollate

    ds = DigitSaccades(root, subset=12, progress=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=EventCollate(ds.sensor_size, n_bins=6, duration=ds.duration_us))
    x, y = next(iter(loader))
    assert x.shape == (6, 4, 2, 34, 34) and y.shape == (4,)
