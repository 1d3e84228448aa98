"""DVS emulator: video frames in, ON/OFF events out; plus N-MNIST's three-saccade camera path.

Each pixel remembers a reference log intensity. Between two frames its log intensity moves linearly
in time; whenever it rises ``threshold_on`` above the reference an ON event fires and the reference
steps up by ``threshold_on`` (OFF likewise, downwards). After an event a pixel is blind for
``refractory_us``: a crossing that happens meanwhile fires at the end of the blind time (the change
is delayed, not lost, unless the video ends first), so per-pixel inter-event intervals are never shorter than the refractory
period. Thresholds vary per pixel (``mismatch``, relative standard deviation). Background activity
(ON) and shot noise (either polarity) are Poisson processes added on top. Everything random comes
from one seeded generator.

The simulation is vectorised over pixels (and over a batch of videos): it loops over frame
intervals and, within one, over "rounds" in which every still-active pixel emits its next event.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from spikeflow.datasets.events import EVENT_DTYPE
from spikeflow.errors import DataError

#: Image displacement (dx, dy) in pixels at the corners of N-MNIST's saccade triangle.
SACCADE_PATH = np.array([[0.0, 0.0], [3.5, 7.0], [7.0, 0.0], [0.0, 0.0]])
#: Duration of one N-MNIST saccade in µs.
SACCADE_US = 105_000


def emulate_dvs(
    frames: np.ndarray,
    timestamps: Sequence[float],
    threshold: float | tuple[float, float] = 0.2,
    mismatch: float = 0.0,
    refractory_us: float = 0.0,
    log_eps: float = 0.05,
    background_rate_hz: float = 0.0,
    shot_rate_hz: float = 0.0,
    seed: int | None = 0,
    sensor_seed: int = 0,
) -> np.ndarray | list[np.ndarray]:
    """Turn frames into DVS events.

    Args:
        frames: intensities ``[N, H, W]`` (one video) or ``[N, B, H, W]`` (a batch), >= 0.
        timestamps: ``N`` frame times in µs, strictly increasing.
        threshold: contrast threshold in log units, one value or ``(on, off)``.
        mismatch: relative standard deviation of the per-pixel thresholds.
        refractory_us: minimum time between two events of one pixel.
        log_eps: offset in ``log(I + log_eps)``, keeps dark pixels finite and quiet.
        background_rate_hz: per-pixel rate of spurious ON events.
        shot_rate_hz: per-pixel rate of spurious events of random polarity.
        seed: seed of the generator for the noise.
        sensor_seed: seed of the per-pixel threshold mismatch: one sensor, so the same pattern for
            every video of a batch and every call with the same seed.

    Returns:
        time-sorted events (``EVENT_DTYPE``, sensor ``(W, H, 2)``), or a list of them for a batch.

    Example:
        >>> import numpy as np
        >>> frames = np.stack([np.full((4, 4), 0.2), np.full((4, 4), 0.8)])
        >>> ev = emulate_dvs(frames, [0, 1000], threshold=0.5)
        >>> len(ev), bool(ev["p"].all())
        (32, True)
    """
    frames = np.asarray(frames, dtype=np.float64)
    batched = frames.ndim == 4
    if frames.ndim == 3:
        frames = frames[:, None]
    if frames.ndim != 4 or frames.shape[0] < 1 or 0 in frames.shape:
        raise DataError(f"emulate_dvs: frames must be [N, H, W] or [N, B, H, W], got shape {frames.shape}")
    n, b, h, w = frames.shape
    t = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if t.shape != (n,):
        raise DataError(f"emulate_dvs: {n} frames but {t.size} timestamps")
    if n > 1 and np.any(np.diff(t) <= 0):
        raise DataError(f"emulate_dvs: timestamps must increase strictly, got {t[:8].tolist()}...")
    if not np.all(np.isfinite(frames)) or frames.min() < 0:
        raise DataError("emulate_dvs: frames must be finite and >= 0")
    on, off = (threshold, threshold) if np.isscalar(threshold) else threshold
    if min(on, off) <= 0 or mismatch < 0 or refractory_us < 0 or log_eps <= 0:
        raise DataError(
            f"emulate_dvs: need thresholds > 0, mismatch >= 0, refractory_us >= 0, log_eps > 0; "
            f"got {(on, off)}, {mismatch}, {refractory_us}, {log_eps}"
        )
    rng = np.random.default_rng(seed)
    n_pix = b * h * w
    thr_on = np.full(h * w, float(on))
    thr_off = np.full(h * w, float(off))
    if mismatch > 0:
        sensor_rng = np.random.default_rng(sensor_seed)
        # Clip so that no pixel gets a zero or negative threshold (it would fire without bound).
        thr_on *= np.clip(1 + mismatch * sensor_rng.standard_normal(h * w), 0.05, None)
        thr_off *= np.clip(1 + mismatch * sensor_rng.standard_normal(h * w), 0.05, None)
    thr_on, thr_off = np.tile(thr_on, b), np.tile(thr_off, b)
    log_i = np.log(frames.reshape(n, n_pix) + log_eps)
    pix, times, pol = _threshold_crossings(log_i, t, thr_on, thr_off, float(refractory_us))
    duration_s = (t[-1] - t[0]) * 1e-6
    for rate, polarity in ((background_rate_hz, 1), (shot_rate_hz, -1)):
        if rate > 0 and duration_s > 0:
            counts = rng.poisson(rate * duration_s, n_pix)
            npix = np.repeat(np.arange(n_pix), counts)
            pix.append(npix)
            times.append(rng.uniform(t[0], t[-1], npix.size))
            pol.append(np.ones(npix.size, bool) if polarity == 1 else rng.random(npix.size) < 0.5)
    pix_a = np.concatenate(pix) if pix else np.zeros(0, np.int64)
    t_a = np.floor(np.concatenate(times)).astype(np.int64) if times else np.zeros(0, np.int64)
    p_a = np.concatenate(pol) if pol else np.zeros(0, bool)
    sample, rest = np.divmod(pix_a, h * w)
    order = np.lexsort((t_a, sample))
    events = np.empty(order.size, dtype=EVENT_DTYPE)
    events["y"], events["x"] = np.divmod(rest[order], w)
    events["t"] = t_a[order]
    events["p"] = p_a[order]
    bounds = np.searchsorted(sample[order], np.arange(b + 1))
    out = [events[bounds[i] : bounds[i + 1]] for i in range(b)]
    return out if batched else out[0]


def _threshold_crossings(log_i, t, thr_on, thr_off, refractory):
    """Per-pixel event generation; returns lists of (pixel, time, polarity) arrays."""
    n, n_pix = log_i.shape
    ref = log_i[0].copy()
    last = np.full(n_pix, -np.inf)
    pix, times, pol = [], [], []
    for k in range(n - 1):
        t0, t1 = t[k], t[k + 1]
        l0, l1 = log_i[k], log_i[k + 1]
        # Only pixels whose reference is (or ends up) a threshold away from the signal can fire.
        lo, hi = np.minimum(l0, l1), np.maximum(l0, l1)
        idx = np.flatnonzero((hi - ref >= thr_on) | (ref - lo >= thr_off))
        while idx.size:
            a, z = l0[idx], l1[idx]
            r, lt = ref[idx], last[idx]
            slope = (z - a) / (t1 - t0)
            s = np.maximum(t0, lt + refractory)
            ls = a + slope * (s - t0)
            up_level, down_level = r + thr_on[idx], r - thr_off[idx]
            with np.errstate(divide="ignore", invalid="ignore"):
                t_up = np.where(ls >= up_level, s, np.where(z >= up_level, t0 + (up_level - a) / slope, np.inf))
                t_down = np.where(ls <= down_level, s, np.where(z <= down_level, t0 + (down_level - a) / slope, np.inf))
            # A crossing computed before the blind time ends fires when it ends.
            t_up = np.where(np.isfinite(t_up), np.maximum(t_up, s), t_up)
            t_down = np.where(np.isfinite(t_down), np.maximum(t_down, s), t_down)
            is_on = t_up <= t_down
            when = np.where(is_on, t_up, t_down)
            fire = when <= t1
            idx, when, is_on = idx[fire], when[fire], is_on[fire]
            if idx.size == 0:
                break
            pix.append(idx)
            times.append(when)
            pol.append(is_on)
            ref[idx] += np.where(is_on, thr_on[idx], -thr_off[idx])
            last[idx] = when
    return pix, times, pol


def saccade_frames(
    images: np.ndarray,
    sensor_size: tuple[int, int] = (34, 34),
    frames_per_saccade: int = 10,
    saccade_us: int = SACCADE_US,
) -> tuple[np.ndarray, np.ndarray]:
    """Frames of still images seen by a sensor that moves along N-MNIST's saccade triangle.

    The images are centred on the sensor, then shifted (bilinear, sub-pixel) along
    :data:`SACCADE_PATH`, recentred so that the motion is symmetric about the centre.

    Args:
        images: ``[h, w]`` or ``[B, h, w]`` intensities.
        sensor_size: ``(W, H)`` of the sensor.
        frames_per_saccade: frames per straight segment (3 segments).
        saccade_us: duration of one segment in µs.

    Returns:
        ``(frames, timestamps)``: ``[N, H, W]`` or ``[N, B, H, W]`` with ``N = 3 * frames_per_saccade + 1``,
        and the ``N`` frame times in µs.
    """
    images = np.asarray(images, dtype=np.float64)
    single = images.ndim == 2
    if single:
        images = images[None]
    if images.ndim != 3 or frames_per_saccade < 1:
        raise DataError(f"saccade_frames: images must be [h, w] or [B, h, w], got shape {images.shape}")
    width, height = sensor_size
    bsz, ih, iw = images.shape
    if ih > height or iw > width:
        raise DataError(f"saccade_frames: image {iw}x{ih} larger than sensor {width}x{height}")
    n = 3 * frames_per_saccade + 1
    u = np.arange(n) / frames_per_saccade
    seg = np.minimum(u.astype(int), 2)
    frac = (u - seg)[:, None]
    disp = SACCADE_PATH[seg] * (1 - frac) + SACCADE_PATH[seg + 1] * frac
    disp -= np.array([3.5, 3.5])  # centre the motion: the triangle spans 0..7 px in x and y
    # Pad by a margin wider than the motion so that every shifted read stays inside the canvas.
    margin = 8
    canvas = np.zeros((bsz, height + 2 * margin, width + 2 * margin))
    oy, ox = margin + (height - ih) // 2, margin + (width - iw) // 2
    canvas[:, oy : oy + ih, ox : ox + iw] = images
    frames = np.empty((n, bsz, height, width))
    for k, (dx, dy) in enumerate(disp):
        # Output pixel (y, x) sees canvas point (y - dy, x - dx): the image moves by (+dx, +dy).
        sx, sy = margin - dx, margin - dy
        ix, iy = int(np.floor(sx)), int(np.floor(sy))
        fx, fy = sx - ix, sy - iy
        c = canvas
        frames[k] = (
            (1 - fy) * (1 - fx) * c[:, iy : iy + height, ix : ix + width]
            + (1 - fy) * fx * c[:, iy : iy + height, ix + 1 : ix + 1 + width]
            + fy * (1 - fx) * c[:, iy + 1 : iy + 1 + height, ix : ix + width]
            + fy * fx * c[:, iy + 1 : iy + 1 + height, ix + 1 : ix + 1 + width]
        )
    timestamps = np.round(np.arange(n) * saccade_us / frames_per_saccade).astype(np.int64)
    return (frames[:, 0] if single else frames), timestamps
