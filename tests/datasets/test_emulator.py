"""DVS emulator properties and the saccade path."""

import numpy as np
import pytest

from spikeflow.datasets.emulator import SACCADE_PATH, emulate_dvs, saccade_frames
from spikeflow.errors import DataError


def ramp(i0, i1, n=11, shape=(6, 5), dt=1000):
    frames = np.linspace(i0, i1, n)[:, None, None] * np.ones(shape)
    return frames, np.arange(n) * dt


def reference_counts(frames, thr, eps=0.05):
    """A monotonic ramp crosses floor(|log change| / thr) levels per pixel."""
    change = np.log(frames[-1] + eps) - np.log(frames[0] + eps)
    return np.floor(np.abs(change) / thr + 1e-9).astype(int)


def test_static_scene_gives_no_events():
    rng = np.random.default_rng(0)
    still = np.repeat(rng.random((1, 8, 8)), 20, axis=0)
    assert len(emulate_dvs(still, np.arange(20) * 500, mismatch=0.1, refractory_us=100)) == 0


def test_brightening_gives_on_and_darkening_off():
    up = emulate_dvs(*ramp(0.1, 0.9))
    down = emulate_dvs(*ramp(0.9, 0.1))
    assert len(up) > 0 and up["p"].all()
    assert len(down) > 0 and not down["p"].any()


@pytest.mark.parametrize("thr", [0.1, 0.2, 0.4, 0.7])
def test_event_count_follows_threshold(thr):
    frames, t = ramp(0.05, 1.0, shape=(3, 4))
    ev = emulate_dvs(frames, t, threshold=thr)
    per_pixel = np.zeros((3, 4), int)
    np.add.at(per_pixel, (ev["y"], ev["x"]), 1)
    assert np.array_equal(per_pixel, reference_counts(frames, thr))


def test_event_count_scales_inversely_with_threshold():
    frames, t = ramp(0.05, 1.0, shape=(10, 10))
    change = np.log(1.05) - np.log(0.1)
    for thr in (0.05, 0.1, 0.2, 0.4):
        per_pixel = len(emulate_dvs(frames, t, threshold=thr)) / 100
        assert change / thr - 1 < per_pixel <= change / thr


def test_timestamps_interpolate_between_frames():
    # One step from 0.2 to 0.8 over 1 ms: log change 1.05 with eps 0.05 -> crossings evenly spread.
    frames = np.array([[[0.2]], [[0.8]]])
    ev = emulate_dvs(frames, [0, 1000], threshold=0.25)
    l0, l1 = np.log(0.25), np.log(0.85)
    expected = np.floor((np.arange(1, 5) * 0.25) / (l1 - l0) * 1000)
    assert ev["t"].tolist() == expected.astype(int).tolist()


def test_refractory_period_is_respected_and_changes_are_delayed_not_lost():
    frames, t = ramp(0.05, 1.0, n=3, shape=(4, 4), dt=2000)
    # Hold the final image for 10 ms so that blind pixels have time to catch up.
    frames, t = np.concatenate([frames, frames[-1:]]), np.append(t, 14_000)
    free = emulate_dvs(frames, t, threshold=0.1)
    blind = emulate_dvs(frames, t, threshold=0.1, refractory_us=300)
    for y in range(4):
        for x in range(4):
            tt = blind["t"][(blind["x"] == x) & (blind["y"] == y)]
            assert np.all(np.diff(tt) >= 300)
    assert np.diff(free["t"][(free["x"] == 0) & (free["y"] == 0)]).min() < 300
    # Crossings during the blind time fire later: the same events, spread out.
    assert len(blind) == len(free) and blind["t"].max() > free["t"].max()


def test_mismatch_changes_counts_per_pixel_and_is_seeded():
    frames, t = ramp(0.05, 1.0, shape=(8, 8))
    a = emulate_dvs(frames, t, mismatch=0.2, sensor_seed=1)
    b = emulate_dvs(frames, t, mismatch=0.2, sensor_seed=1)
    c = emulate_dvs(frames, t, mismatch=0.2, sensor_seed=2)
    counts = np.bincount(a["y"].astype(int) * 8 + a["x"], minlength=64)
    assert counts.min() < counts.max()
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_noise_rates_and_determinism():
    still = np.full((2, 20, 20), 0.5)
    t = [0, 1_000_000]
    ba = emulate_dvs(still, t, background_rate_hz=5.0, seed=3)
    assert ba["p"].all() and abs(len(ba) - 2000) < 200  # 400 px * 5 Hz * 1 s
    shot = emulate_dvs(still, t, shot_rate_hz=5.0, seed=3)
    assert 0.4 < shot["p"].mean() < 0.6
    assert np.array_equal(shot, emulate_dvs(still, t, shot_rate_hz=5.0, seed=3))
    assert not np.array_equal(shot, emulate_dvs(still, t, shot_rate_hz=5.0, seed=4))
    assert np.all(np.diff(shot["t"]) >= 0) and shot["t"].min() >= 0 and shot["t"].max() < 1_000_000


def test_batch_equals_one_by_one():
    rng = np.random.default_rng(1)
    frames = rng.random((6, 3, 5, 5))
    t = np.arange(6) * 700
    batch = emulate_dvs(frames, t, refractory_us=50, mismatch=0.1)
    for b in range(3):
        assert np.array_equal(batch[b], emulate_dvs(frames[:, b], t, refractory_us=50, mismatch=0.1))


def test_bad_input_is_refused():
    with pytest.raises(DataError, match="timestamps"):
        emulate_dvs(np.ones((3, 2, 2)), [0, 1])
    with pytest.raises(DataError, match="increase"):
        emulate_dvs(np.ones((2, 2, 2)), [5, 5])
    with pytest.raises(DataError, match=">= 0"):
        emulate_dvs(-np.ones((2, 2, 2)), [0, 1])
    with pytest.raises(DataError, match="thresholds > 0"):
        emulate_dvs(np.ones((2, 2, 2)), [0, 1], threshold=0)


def test_saccade_path_moves_the_image_along_the_triangle():
    img = np.zeros((24, 24))
    img[12, 12] = 1.0
    frames, t = saccade_frames(img, frames_per_saccade=4)
    assert frames.shape == (13, 34, 34) and t[-1] == 315_000 and t[4] == 105_000

    def centroid(f):
        ys, xs = np.indices(f.shape)
        return np.array([(xs * f).sum(), (ys * f).sum()]) / f.sum()

    start = centroid(frames[0])
    for k, corner in zip((0, 4, 8, 12), SACCADE_PATH):
        assert np.allclose(centroid(frames[k]) - start, corner - SACCADE_PATH[0], atol=1e-9)
    assert np.allclose(frames.sum(axis=(1, 2)), 1.0)  # bilinear shifts keep the light
