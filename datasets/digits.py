"""DigitSaccades: real handwritten digits turned into N-MNIST-like events, offline.

scikit-learn's ``load_digits`` (1797 images, 8x8, 16 grey levels) are upscaled 3x to 24x24,
centred on N-MNIST's 34x34 sensor and moved along the three-saccade triangle
(:func:`~spikeflow.datasets.emulator.saccade_frames`); the DVS emulator turns the video into ON/OFF
events (~3.6k per digit over 315 ms). The split is fixed (a seeded permutation: 1437 train, 360 test).
Both splits are generated once, with a progress bar, and cached in the HDF5 event store under
``root/DigitSaccades/``; a cache that is unreadable, half-written or made with other settings is
rebuilt.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from spikeflow.datasets.emulator import SACCADE_US, emulate_dvs, saccade_frames
from spikeflow.datasets.events import to_frames
from spikeflow.datasets.generated import GeneratedEventSet
from spikeflow.datasets.store import EventStoreWriter
from spikeflow.errors import DataError

N_DIGITS = 1797
N_TEST = 360
SPLIT_SEED = 0
LAYOUT_VERSION = 1
#: Emulator settings used by default; part of the cache key.
DEFAULT_EMULATOR = {
    "threshold": 0.5,
    "mismatch": 0.05,
    "refractory_us": 1000.0,
    "log_eps": 0.1,
    "background_rate_hz": 0.2,
    "shot_rate_hz": 0.0,
    "sensor_seed": 0,
}
FRAMES_PER_SACCADE = 10
BATCH = 128


def split_indices(train: bool) -> np.ndarray:
    """Indices into ``load_digits`` of the fixed train or test split."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(N_DIGITS)
    return np.sort(perm[N_TEST:] if train else perm[:N_TEST])


class DigitSaccades(GeneratedEventSet):
    """The built-in event set: ``ds[i] -> (events, label)``, torchvision style.

    Args:
        root: folder for the cache (``root/DigitSaccades/*.h5``).
        train: training (1437 digits) or test (360 digits) split.
        transform: applied to the events (e.g. a tonic transform).
        target_transform: applied to the label.
        subset: keep only the first ``subset`` digits of each split (fast tests, quick looks).
        emulator: overrides of :data:`DEFAULT_EMULATOR`.
        seed: seed of the emulator's noise.
        progress: show a progress bar while generating.

    Example:
        >>> import tempfile
        >>> ds = DigitSaccades(tempfile.mkdtemp(), subset=4, progress=False)
        >>> events, label = ds[0]
        >>> len(ds), ds.sensor_size, events.dtype.names
        (4, (34, 34, 2), ('x', 'y', 't', 'p'))
    """

    name = "DigitSaccades"
    sensor_size = (34, 34, 2)
    classes = list(range(10))
    duration_us = 3 * SACCADE_US

    def __init__(
        self,
        root: str | os.PathLike,
        train: bool = True,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        subset: int | None = None,
        emulator: dict | None = None,
        seed: int = 0,
        progress: bool = True,
    ):
        unknown = set(emulator or {}) - set(DEFAULT_EMULATOR)
        if unknown:
            raise DataError(f"DigitSaccades: unknown emulator settings {sorted(unknown)}; known: {sorted(DEFAULT_EMULATOR)}")
        if subset is not None and not 1 <= subset <= N_DIGITS:
            raise DataError(f"DigitSaccades: subset must be in [1, {N_DIGITS}], got {subset}")
        params = {
            "layout": LAYOUT_VERSION, "subset": subset, "seed": int(seed),
            "frames_per_saccade": FRAMES_PER_SACCADE, "emulator": {**DEFAULT_EMULATOR, **(emulator or {})},
        }
        self._use_cache(root, train, transform, target_transform, params, progress)

    def _generate(self, progress: bool) -> None:
        from scipy.ndimage import zoom
        from sklearn.datasets import load_digits
        from spikeflow._progress import progress_bar

        digits = load_digits()
        images = np.clip(zoom(digits.images / 16.0, (1, 3, 3), order=1), 0.0, 1.0)
        settings = self.params["emulator"]
        subset = self.params["subset"]
        splits = {name: split_indices(name == "train")[:subset] for name in ("train", "test")}
        total = sum(len(ix) for ix in splits.values())
        with progress_bar(total=total, desc="DigitSaccades: emulating DVS", unit="digit", enabled=progress) as bar:
            for name, indices in splits.items():
                meta = {"params": self.params, "source": "sklearn.datasets.load_digits", "digit_index": indices.tolist()}
                with EventStoreWriter(self.paths[name], self.sensor_size, metadata=meta) as writer:
                    for start in range(0, len(indices), BATCH):
                        batch = indices[start : start + BATCH]
                        frames, stamps = saccade_frames(images[batch], self.sensor_size[:2], FRAMES_PER_SACCADE)
                        # A distinct, reproducible noise stream per split and batch.
                        events = emulate_dvs(frames, stamps, seed=[self.params["seed"], int(name == "train"), start], **settings)
                        for ev, index in zip(events, batch):
                            writer.append(ev, int(digits.target[index]))
                        bar.update(len(batch))

    def frames(self, n_bins: int = 10, time_major: bool = False, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
        """All samples binned (ignoring ``transform``): ``[N, T, 2, 34, 34]`` counts and ``[N]`` labels.

        Bins split the fixed 315 ms recording evenly. ``time_major=True`` gives ``[T, N, 2, 34, 34]``.
        """
        store = self._open()
        x = np.stack([to_frames(store.read(i), self.sensor_size, n_bins, self.duration_us) for i in range(len(self))])
        x = x.astype(dtype)
        return (np.swapaxes(x, 0, 1) if time_major else x), self.targets.astype(np.int64)


def digit_saccade_frames(root: str | os.PathLike, n_bins: int = 10, subset: int | None = None, time_major: bool = False, progress: bool = True) -> dict:
    """Binned DigitSaccades for training a spiking CNN.

    Returns:
        ``{"train": (x, y), "test": (x, y)}`` with ``x`` float32 ``[N, T, 2, 34, 34]`` (or
        ``[T, N, ...]`` if ``time_major``) and ``y`` int64 labels.
    """
    return {
        split: DigitSaccades(root, train=split == "train", subset=subset, progress=progress).frames(n_bins, time_major)
        for split in ("train", "test")
    }
