"""SpokenDigits: the digits zero to nine spoken by espeak-ng and heard by a cochlea model, offline.

Each utterance is synthesised by the espeak-ng program in one of many voices (8 English accents
x 20 voice variants), speeds (110–230 words per minute) and pitches (15–85), passed through a
cochlea-like filterbank (64 fourth-order gammatone filters, ERB-spaced from 100 Hz to 8 kHz, applied
to a 1 ms-hop short-time spectrum), whose smoothed, log-compressed channel energies drive one
integrate-and-fire "spiral ganglion" unit per channel. The result is N-TIDIGITS-like events (tonic style: the channel is
``x``, ``y = 0``, ``p = 0``, ``t`` in µs; sensor ``(64, 1, 1)``).

Both splits (1500 train, 500 test utterances; voice, speed and pitch drawn per utterance from a
seeded generator, the test split from its own stream) are generated once, with a progress bar, and
cached in the HDF5 event store under ``root/SpokenDigits/``; a cache that is unreadable,
half-written or made with other settings is rebuilt.

The default set is easy (clean synthetic speech: ~99% for a readout-only LSM, against 70.8% on the
recorded N-TIDIGITS in Lin et al. 2024). ``condition=HARD`` (or any of its keys) makes it harder:
white noise over the whole 1 s window at ``noise_snr_db`` against the speech's mean power, and a
``speaker_independent`` split (test voices use voice variants that no training utterance uses).
It is a separate cache (the condition is part of the cache key); the default is unchanged. espeak-ng is a Debian/Ubuntu package
(``apt-get install espeak-ng``; ``make install`` installs it where it can).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import wave
from typing import Callable

import numpy as np

from spikeflow.datasets.events import make_events, to_frames
from spikeflow.datasets.generated import GeneratedEventSet
from spikeflow.datasets.store import EventStoreWriter
from spikeflow.errors import DataError

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3",
            "grandpa", "grandma", "croak", "steph")
N_TRAIN, N_TEST = 1500, 500
LAYOUT_VERSION = 1
#: Synthesis and cochlea settings used by default; part of the cache key.
DEFAULT_COCHLEA = {
    "channels": 64,
    "f_low_hz": 100.0,
    "f_high_hz": 8000.0,
    "smooth_hz": 80.0,
    "dynamic_range_db": 50.0,
    "threshold": 2.0,
    "speed_wpm": [110, 230],
    "pitch": [15, 85],
}
#: A harder setting: noisy speech from unseen speakers (see the module docstring).
HARD = {"noise_snr_db": 5.0, "speaker_independent": True}
#: Voice variants of the test split under ``speaker_independent`` (the rest are for training).
TEST_VARIANTS = ("m3", "m7", "f2", "f5", "klatt2", "croak")
DURATION_US = 1_000_000
STEP_US = 1000


def espeak_path() -> str:
    """The espeak-ng program, or a DataError that names the package to install."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise DataError(
            "SpokenDigits needs the espeak-ng speech synthesiser, which is not installed: install the Debian/Ubuntu "
            "package 'espeak-ng' (apt-get install -y espeak-ng; `make install` does it where it has root)"
        )
    return path


def synthesise(word: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """Mono float64 samples in [-1, 1] and the sample rate of ``word`` spoken by espeak-ng."""
    cmd = [espeak_path(), "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "--stdout", word]
    try:
        wav = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
        with wave.open(io.BytesIO(wav)) as w:
            rate, width, frames = w.getframerate(), w.getsampwidth(), w.readframes(w.getnframes())
    except (subprocess.SubprocessError, OSError, wave.Error, EOFError) as exc:
        raise DataError(f"SpokenDigits: espeak-ng failed for voice {voice!r}, word {word!r} ({exc})") from None
    if width != 2 or not frames:
        raise DataError(f"SpokenDigits: espeak-ng produced no 16-bit audio for voice {voice!r}, word {word!r} ({width}-byte samples, {len(frames)} bytes)")
    return np.frombuffer(frames, dtype="<i2").astype(np.float64) / 32768.0, rate


def erb_space(f_low: float, f_high: float, n: int) -> np.ndarray:
    """``n`` centre frequencies equally spaced on the ERB-rate scale (Glasberg & Moore 1990)."""
    def erb_rate(f):
        return 21.4 * np.log10(1 + 0.00437 * f)

    e = np.linspace(erb_rate(f_low), erb_rate(f_high), n)
    return (10 ** (e / 21.4) - 1) / 0.00437


def gammatone_weights(centres: np.ndarray, freqs: np.ndarray, order: int = 4) -> np.ndarray:
    """Magnitude responses ``[channels, freqs]`` of ``order``-th order gammatone filters,
    ``|H(f)| = (1 + ((f - fc) / b)^2)^(-order/2)`` with ``b = 1.019 ERB(fc)`` (Patterson et al. 1992)."""
    erb = 24.7 + 0.108 * centres
    b = 1.019 * erb
    return (1 + ((freqs[None, :] - centres[:, None]) / b[:, None]) ** 2) ** (-order / 2)


def cochlea(audio: np.ndarray, rate: int, settings: dict) -> np.ndarray:
    """Per-millisecond loudness ``[steps, channels]`` in [0, 1]: a gammatone filterbank applied to a
    short-time spectrum (hop 1 ms, ``1000 / smooth_hz`` ms Hann window: the envelope's smoothing),
    channel energies log-compressed over ``dynamic_range_db`` below the utterance's peak."""
    centres = erb_space(settings["f_low_hz"], min(settings["f_high_hz"], 0.45 * rate), settings["channels"])
    hop = rate * STEP_US // 1_000_000
    window = int(rate / settings["smooth_hz"])
    n_fft = 1 << int(np.ceil(np.log2(window)))
    steps = len(audio) // hop
    padded = np.concatenate([np.zeros(window // 2), audio, np.zeros(window)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, window)[: steps * hop : hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(window), n=n_fft, axis=1)) ** 2
    weights = gammatone_weights(centres, np.fft.rfftfreq(n_fft, 1.0 / rate)) ** 2
    env = power @ weights.T
    db = 10 * np.log10(np.maximum(env, 1e-20) / max(env.max(), 1e-20))
    return np.clip(1 + db / settings["dynamic_range_db"], 0.0, 1.0)


def ganglion_events(loudness: np.ndarray, threshold: float) -> np.ndarray:
    """One integrate-and-fire unit per channel, stepped each millisecond on the loudness (at most one
    event per channel and step): events ``x = channel``, ``t`` at the step's start (µs)."""
    acc = np.zeros(loudness.shape[1])
    ts, xs = [], []
    for step, row in enumerate(loudness):
        acc += row
        fired = np.flatnonzero(acc >= threshold)
        acc[fired] -= threshold
        ts.append(np.full(len(fired), step * STEP_US, dtype=np.int64))
        xs.append(fired)
    t, x = np.concatenate(ts), np.concatenate(xs)
    keep = t < DURATION_US
    return make_events(x[keep], np.zeros(keep.sum()), t[keep], np.zeros(keep.sum()))


def utterances(train: bool, n: int, seed: int, settings: dict, speaker_independent: bool = False) -> list[tuple[int, str, int, int]]:
    """``(digit, voice, speed, pitch)`` of each utterance of a split: digits cycle, the rest is drawn
    (``speaker_independent``: the test split's voice variants are :data:`TEST_VARIANTS`, the training
    split's the others)."""
    rng = np.random.default_rng([seed, int(train)])
    variants = VARIANTS
    if speaker_independent:
        variants = tuple(v for v in VARIANTS if (v in TEST_VARIANTS) != train)
    out = []
    for i in range(n):
        voice = f"{ACCENTS[rng.integers(len(ACCENTS))]}+{variants[rng.integers(len(variants))]}"
        speed = int(rng.integers(settings["speed_wpm"][0], settings["speed_wpm"][1] + 1))
        pitch = int(rng.integers(settings["pitch"][0], settings["pitch"][1] + 1))
        out.append((i % 10, voice, speed, pitch))
    return out


def add_noise(audio: np.ndarray, rate: int, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``audio`` padded to the 1 s window plus white noise ``snr_db`` below its mean power."""
    length = max(len(audio), rate * DURATION_US // 1_000_000)
    power = float(np.mean(audio**2)) if len(audio) else 0.0
    noisy = np.zeros(length)
    noisy[: len(audio)] = audio
    return noisy + rng.normal(0.0, np.sqrt(power * 10 ** (-snr_db / 10)), length)


class SpokenDigits(GeneratedEventSet):
    """Spoken digits as cochlea events: ``ds[i] -> (events, label)``, torchvision style.

    Args:
        root: folder for the cache (``root/SpokenDigits/*.h5``).
        train: training (1500 utterances) or test (500) split.
        transform, target_transform: applied to the events / the label.
        subset: keep only the first ``subset`` utterances of each split (fast tests).
        cochlea: overrides of :data:`DEFAULT_COCHLEA`.
        condition: None (clean speech, the default) or a harder setting: keys of :data:`HARD`
            (``noise_snr_db``: float, ``speaker_independent``: bool); ``condition=HARD`` uses both.
        seed: seed of the voices, speeds and pitches.
        progress: show a progress bar while generating.

    Raises:
        DataError: espeak-ng is not installed (the message names the package).

    Example:
        >>> import tempfile
        >>> ds = SpokenDigits(tempfile.mkdtemp(), subset=2, progress=False)
        >>> events, label = ds[1]
        >>> len(ds), ds.sensor_size, label, int(events["x"].max()) < 64
        (2, (64, 1, 1), 1, True)
    """

    name = "SpokenDigits"
    classes = list(range(10))
    duration_us = DURATION_US

    def __init__(self, root: str | os.PathLike, train: bool = True, transform: Callable | None = None,
                 target_transform: Callable | None = None, subset: int | None = None, cochlea: dict | None = None,
                 seed: int = 0, progress: bool = True, condition: dict | None = None):
        unknown = set(cochlea or {}) - set(DEFAULT_COCHLEA)
        if unknown:
            raise DataError(f"SpokenDigits: unknown cochlea settings {sorted(unknown)}; known: {sorted(DEFAULT_COCHLEA)}")
        condition = dict(condition or {})
        if set(condition) - set(HARD):
            raise DataError(f"SpokenDigits: unknown condition settings {sorted(set(condition) - set(HARD))}; known: {sorted(HARD)}")
        snr = condition.get("noise_snr_db")
        if snr is not None and (isinstance(snr, bool) or not isinstance(snr, (int, float)) or not np.isfinite(snr)):
            raise DataError(f"SpokenDigits: condition 'noise_snr_db' must be a finite number of dB, got {snr!r}")
        if not isinstance(condition.get("speaker_independent", False), bool):
            raise DataError(f"SpokenDigits: condition 'speaker_independent' must be True or False, got {condition['speaker_independent']!r}")
        if subset is not None and not 1 <= subset <= N_TEST:
            raise DataError(f"SpokenDigits: subset must be in [1, {N_TEST}], got {subset}")
        params = {"layout": LAYOUT_VERSION, "subset": subset, "seed": int(seed), "cochlea": {**DEFAULT_COCHLEA, **(cochlea or {})}}
        if condition:  # only a harder setting enters the key: the default's caches stay valid
            params["condition"] = condition
        self.sensor_size = (int(params["cochlea"]["channels"]), 1, 1)
        self._use_cache(root, train, transform, target_transform, params, progress)

    def _generate(self, progress: bool) -> None:
        from tqdm.auto import tqdm

        espeak_path()
        settings, subset, condition = self.params["cochlea"], self.params["subset"], self.params.get("condition", {})
        splits = {name: utterances(name == "train", subset or (N_TRAIN if name == "train" else N_TEST), self.params["seed"], settings,
                                   condition.get("speaker_independent", False))
                  for name in ("train", "test")}
        total = sum(len(v) for v in splits.values())
        with tqdm(total=total, desc="SpokenDigits: synthesising", unit="utterance", disable=not progress) as bar:
            for name, items in splits.items():
                meta = {"params": self.params, "source": "espeak-ng", "utterances": [list(u) for u in items]}
                with EventStoreWriter(self.paths[name], self.sensor_size, metadata=meta) as writer:
                    for i, (digit, voice, speed, pitch) in enumerate(items):
                        audio, rate = synthesise(WORDS[digit], voice, speed, pitch)
                        if condition.get("noise_snr_db") is not None:
                            rng = np.random.default_rng([self.params["seed"], int(name == "train"), i])
                            audio = add_noise(audio, rate, condition["noise_snr_db"], rng)
                        writer.append(ganglion_events(cochlea(audio, rate, settings), settings["threshold"]), digit)
                        bar.update(1)

    def frames(self, n_bins: int = 100, time_major: bool = False, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
        """All samples binned over the fixed 1 s window: ``[N, T, channels]`` counts and ``[N]`` labels
        (``time_major=True``: ``[T, N, channels]``)."""
        store = self._open()
        x = np.stack([to_frames(store.read(i), self.sensor_size, n_bins, self.duration_us).reshape(n_bins, -1) for i in range(len(self))])
        x = x.astype(dtype)
        return (np.swapaxes(x, 0, 1) if time_major else x), self.targets.astype(np.int64)
