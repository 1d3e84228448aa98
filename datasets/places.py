"""A place-recognition task that needs no download: two traverses over real photographs.

The photographs are the two that scikit-learn ships (``load_sample_images``: a Chinese temple and
a flower, 640 x 427). A route snakes over each in a grid of square cells; every textured cell is
a *place*. Visiting a place, the event camera makes N-MNIST's three small saccades over that cell,
and the project's DVS emulator turns the moving picture into ON/OFF events.

* the **reference** traverse: the scene as it is, small random offsets of the camera (the
  training and calibration samples come from it, each with its own offsets and sensor noise);
* the **query** traverse: the same places under changed illumination (darker, a different gamma
  and a brightness gradient across the view), with pixel noise, larger offsets and DVS background
  activity, like a second drive along the same road on another day.

Each sample is binned to ``[T, 2 * S * S]`` spike counts; its still picture ``[S, S]`` (the view
at rest, same illumination and offset) is kept for non-spiking baselines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikeflow.errors import DataError

#: Saccade triangle in sensor pixels (N-MNIST's path scaled to a small sensor).
SACCADE = np.array([[0.0, 0.0], [1.0, 2.0], [2.0, 0.0], [0.0, 0.0]])
DURATION_US = 315_000  # three saccades of 105 ms, as N-MNIST


@dataclass(frozen=True)
class Conditions:
    """How one traverse sees the scene.

    Attributes:
        gain: illumination scale. gamma: exponent on the [0, 1] intensities.
        gradient: brightness ramp across the view (0: none; 0.4: left edge 0.8x, right edge 1.2x).
        noise: standard deviation of Gaussian pixel noise, added to every frame.
        max_shift: largest camera offset in source pixels (uniform, both axes).
        background_hz: DVS background activity per pixel.
    """

    gain: float = 1.0
    gamma: float = 1.0
    gradient: float = 0.0
    noise: float = 0.01
    max_shift: int = 2
    background_hz: float = 0.0


REFERENCE = Conditions()
QUERY = Conditions(gain=0.55, gamma=1.4, gradient=0.4, noise=0.03, max_shift=4, background_hz=2.0)


def _grayscale_images() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    return [img.astype(np.float64).mean(axis=2) / 255.0 for img in load_sample_images().images]


def place_cells(places: int = 40, cell: int = 64, margin: int = 24, min_std: float = 0.08) -> np.ndarray:
    """``[places, 3]`` rows of (image, top, left): textured cells along a snaking route (each
    image row by row, alternate rows right to left), the first ``places`` of them.

    ``margin`` leaves room for camera offsets and saccades; cells whose intensity standard
    deviation is below ``min_std`` (sky, blur) show no place and are skipped.
    """
    images = _grayscale_images()
    found = []
    for index, img in enumerate(images):
        h, w = img.shape
        rows = range(margin, h - cell - margin + 1, cell)
        for r, top in enumerate(rows):
            lefts = list(range(margin, w - cell - margin + 1, cell))
            for left in (lefts if r % 2 == 0 else lefts[::-1]):
                if img[top : top + cell, left : left + cell].std() >= min_std:
                    found.append((index, top, left))
    if places < 1 or places > len(found):
        raise DataError(f"place_cells: places must be between 1 and {len(found)} (textured cells of size {cell}), got {places}")
    # spread the places over the whole route rather than taking its beginning
    pick = np.linspace(0, len(found) - 1, places).round().astype(int)
    return np.array([found[i] for i in pick], dtype=np.int64)


def _views(img: np.ndarray, top: int, left: int, cell: int, sensor: int, offsets: np.ndarray) -> np.ndarray:
    """Crops at ``offsets [N, 2]`` (dy, dx source pixels) block-averaged to ``[N, sensor, sensor]``."""
    f = cell // sensor
    out = np.empty((len(offsets), sensor, sensor))
    for k, (dy, dx) in enumerate(np.rint(offsets).astype(int)):
        crop = img[top + dy : top + dy + cell, left + dx : left + dx + cell]
        out[k] = crop.reshape(sensor, f, sensor, f).mean(axis=(1, 3))
    return out


def _lit(frames: np.ndarray, c: Conditions, rng: np.random.Generator) -> np.ndarray:
    ramp = 1.0 + c.gradient * (np.linspace(-0.5, 0.5, frames.shape[-1]))
    out = c.gain * np.power(frames, c.gamma) * ramp
    out = out + c.noise * rng.standard_normal(out.shape)
    return np.clip(out, 0.0, None)


def traverse(conditions: Conditions = REFERENCE, repeats: int = 1, *, places: int = 40, sensor: int = 16, cell: int = 64,
             bins: int = 12, frames_per_saccade: int = 6, threshold: float = 0.15, seed: int = 0) -> dict[str, np.ndarray]:
    """Visit every place ``repeats`` times under ``conditions``; return binned events and views.

    Args:
        conditions: :data:`REFERENCE`, :data:`QUERY` or your own :class:`Conditions`.
        repeats: samples per place (each with its own offset, pixel noise and sensor noise).
        places: number of places (:func:`place_cells`). sensor: sensor width and height.
        cell: cell size in source pixels (a multiple of ``sensor``). bins: time bins ``T``.
        frames_per_saccade: frames the emulator interpolates between, per saccade.
        threshold: DVS contrast threshold (log units). seed: seeds offsets, noise and the sensor.

    Returns:
        ``{"x": float32 [N, T, 2*S*S], "place": int64 [N], "view": float64 [N, S, S], "cells"}``
        with ``N = places * repeats``, ordered by repeat then place.
    """
    from spikeflow.datasets.emulator import emulate_dvs
    from spikeflow.datasets.events import to_frames

    if cell % sensor or repeats < 1 or bins < 1:
        raise DataError(f"traverse: need cell a multiple of sensor, repeats >= 1, bins >= 1; got cell={cell}, sensor={sensor}, "
                        f"repeats={repeats}, bins={bins}")
    images = _grayscale_images()
    cells = place_cells(places, cell, margin=max(24, conditions.max_shift + 3 * cell // sensor))
    rng = np.random.default_rng(seed)
    f = cell // sensor
    # the camera path: saccade corners interpolated, in source pixels
    steps = np.linspace(0, 1, frames_per_saccade, endpoint=False)
    path = np.concatenate([a + (b - a) * steps[:, None] for a, b in zip(SACCADE[:-1], SACCADE[1:])] + [SACCADE[-1:]]) * f
    times = np.linspace(0, DURATION_US, len(path))
    xs, views, labels = [], [], []
    for _ in range(repeats):
        movies = []
        for place, (index, top, left) in enumerate(cells):
            shift = rng.integers(-conditions.max_shift, conditions.max_shift + 1, 2)
            frames = _lit(_views(images[index], top + shift[0], left + shift[1], cell, sensor, path[:, ::-1]), conditions, rng)
            movies.append(frames)
            views.append(frames[0])
            labels.append(place)
        events = emulate_dvs(np.stack(movies, axis=1), times, threshold=threshold, mismatch=0.05, refractory_us=1000,
                             background_rate_hz=conditions.background_hz, seed=int(rng.integers(2**31)), sensor_seed=seed)
        for ev in events:
            counts = to_frames(ev, (sensor, sensor, 2), bins, duration=DURATION_US + 1)
            xs.append(counts.reshape(bins, -1).astype(np.float32))
    return {"x": np.stack(xs), "place": np.array(labels, dtype=np.int64), "view": np.stack(views), "cells": cells}


def patch_normalise(views: np.ndarray, patch: int = 4) -> np.ndarray:
    """Zero-mean, unit-variance ``patch x patch`` blocks of ``[N, S, S]`` views (the usual
    pre-processing of sum-of-absolute-differences place matching; it removes local brightness)."""
    n, s, _ = views.shape
    if s % patch:
        raise DataError(f"patch_normalise: view size {s} is not a multiple of patch {patch}")
    blocks = views.reshape(n, s // patch, patch, s // patch, patch)
    mean = blocks.mean(axis=(2, 4), keepdims=True)
    std = blocks.std(axis=(2, 4), keepdims=True)
    return ((blocks - mean) / np.where(std > 1e-9, std, 1.0)).reshape(n, s, s)


def sad_match(reference: np.ndarray, query: np.ndarray, patch: int = 4) -> np.ndarray:
    """For each query view, the index of the reference view with the smallest sum of absolute
    differences after patch normalisation (the non-spiking baseline)."""
    ref = patch_normalise(reference, patch).reshape(len(reference), -1)
    q = patch_normalise(query, patch).reshape(len(query), -1)
    sad = np.abs(q[:, None, :] - ref[None, :, :]).sum(-1)
    return sad.argmin(axis=1)
