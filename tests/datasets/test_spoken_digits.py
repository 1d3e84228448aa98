"""SpokenDigits: espeak-ng synthesis, the cochlea filterbank, events, the cache, clear errors."""

import doctest

import numpy as np
import pytest

from spikeflow.datasets import spoken_digits as sd
from spikeflow.datasets.events import check_events
from spikeflow.errors import DataError


def test_small_split_is_generated_cached_and_valid(tmp_path):
    ds = sd.SpokenDigits(tmp_path, subset=3, progress=False)
    assert len(ds) == 3 and ds.targets.tolist() == [0, 1, 2]
    for i in range(3):
        events, label = ds[i]
        check_events(events, ds.sensor_size)
        assert len(events) > 100 and np.all(np.diff(events["t"]) >= 0) and events["x"].max() < 64
    stamp = ds.path.stat().st_mtime_ns
    again = sd.SpokenDigits(tmp_path, subset=3, progress=False)
    assert again.path.stat().st_mtime_ns == stamp  # read from the cache, not regenerated
    x, y = again.frames(20)
    assert x.shape == (3, 20, 64) and x.sum() == sum(len(ds[i][0]) for i in range(3))
    assert len(sd.SpokenDigits(tmp_path, train=False, subset=3, progress=False)) == 3


def test_utterances_vary_voice_speed_and_pitch():
    items = sd.utterances(True, 200, 0, sd.DEFAULT_COCHLEA)
    assert [d for d, *_ in items[:12]] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert len({v for _, v, _, _ in items}) > 60 and len({s for *_, s, _ in items}) > 50
    assert items != sd.utterances(False, 200, 0, sd.DEFAULT_COCHLEA)


def test_cochlea_puts_a_tone_in_its_channel():
    rate = 16000
    t = np.arange(rate // 2) / rate
    loud = sd.cochlea(0.5 * np.sin(2 * np.pi * 1000 * t), rate, sd.DEFAULT_COCHLEA)
    centres = sd.erb_space(100, 7200, 64)
    assert loud.shape == (500, 64)
    assert abs(centres[np.argmax(loud[200:].mean(0))] - 1000) < 80
    assert np.all(np.diff(centres) > 0) and centres[0] == pytest.approx(100) and centres[-1] == pytest.approx(7200)


def test_ganglion_fires_in_proportion_to_loudness():
    loud = np.zeros((100, 3))
    loud[:, 1], loud[:, 2] = 0.5, 1.0
    ev = sd.ganglion_events(loud, threshold=2.0)
    counts = np.bincount(ev["x"], minlength=3)
    assert counts.tolist() == [0, 25, 50] and set(np.unique(ev["t"] % 1000)) == {0}


def test_missing_espeak_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(sd.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="package 'espeak-ng'"):
        sd.SpokenDigits(tmp_path, subset=1, progress=False)


def test_bad_arguments_and_a_broken_cache(tmp_path):
    with pytest.raises(DataError, match="unknown cochlea"):
        sd.SpokenDigits(tmp_path, cochlea={"channelz": 3})
    with pytest.raises(DataError, match="subset"):
        sd.SpokenDigits(tmp_path, subset=0)
    ds = sd.SpokenDigits(tmp_path, subset=1, progress=False)
    ds.path.write_bytes(b"junk")
    with pytest.warns(UserWarning, match="rebuilding cache"):
        again = sd.SpokenDigits(tmp_path, subset=1, progress=False)
    assert len(again[0][0]) > 0



def test_espeak_output_that_is_not_audio_is_a_clear_error(monkeypatch):
    class Done:
        stdout = b"RIFF but not really a wave file"

    monkeypatch.setattr(sd.subprocess, "run", lambda *a, **k: Done())
    with pytest.raises(DataError, match="espeak-ng failed for voice 'en-us'"):
        sd.synthesise("one", "en-us", 150, 50)


def test_docstring_examples():
    assert doctest.testmod(sd, optionflags=doctest.ELLIPSIS).failed == 0


def test_hard_condition_is_noisy_speaker_independent_and_cached_apart(tmp_path):
    clean = sd.SpokenDigits(tmp_path, subset=2, progress=False)
    hard = sd.SpokenDigits(tmp_path, subset=2, progress=False, condition=sd.HARD)
    assert hard.path != clean.path and "condition" not in clean.params  # the default's cache key is unchanged
    # noise over the whole window: events before and after the speech, and more of them
    assert len(hard[0][0]) > 1.5 * len(clean[0][0]) and hard[0][0]["t"].max() > 900_000
    train = sd.utterances(True, 300, 0, sd.DEFAULT_COCHLEA, speaker_independent=True)
    test = sd.utterances(False, 100, 0, sd.DEFAULT_COCHLEA, speaker_independent=True)
    variant = lambda items: {v.split("+")[1] for _, v, _, _ in items}  # noqa: E731
    assert variant(test) == set(sd.TEST_VARIANTS) and not variant(train) & variant(test)
    rng = np.random.default_rng(0)
    speech = np.sin(np.arange(8000) / 5.0)
    noisy = sd.add_noise(speech, 16000, 10.0, rng)
    assert len(noisy) == 16000 and np.mean((noisy[:8000] - speech) ** 2) == pytest.approx(0.05, rel=0.1)  # 10 dB below 0.5
    with pytest.raises(DataError, match="unknown condition"):
        sd.SpokenDigits(tmp_path, condition={"snr": 5})
    with pytest.raises(DataError, match="noise_snr_db"):
        sd.SpokenDigits(tmp_path, condition={"noise_snr_db": "loud"})
    with pytest.raises(DataError, match="speaker_independent"):
        sd.SpokenDigits(tmp_path, condition={"speaker_independent": 1})
