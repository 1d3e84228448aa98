"""Event arrays like tonic's: structured ``(x, y, t, p)`` arrays (t in µs) plus a ``sensor_size``.

The dtype is the one tonic's readers produce (``tonic.io.events_struct``), so tonic's transforms
apply directly. Binning into ``[T, C, H, W]`` frames goes through tonic's ``ToFrame``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from spikeflow.errors import DataError

#: Same fields, order and types as ``tonic.io.events_struct``.
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])


def make_events(x, y, t, p) -> np.ndarray:
    """Build an event array from four equally long sequences.

    Example:
        >>> ev = make_events([1, 2], [3, 4], [10, 20], [1, 0])
        >>> ev["t"].tolist(), ev.dtype == EVENT_DTYPE
        ([10, 20], True)
    """
    cols = [np.asarray(c).reshape(-1) for c in (x, y, t, p)]
    n = len(cols[0])
    if any(len(c) != n for c in cols):
        raise DataError(f"make_events: x, y, t, p must have equal lengths, got {[len(c) for c in cols]}")
    events = np.empty(n, dtype=EVENT_DTYPE)
    for name, col in zip("xytp", cols):
        events[name] = col
    return events


def sensor_dims(sensor_size: Sequence[int], what: str = "events") -> tuple[int, int, int]:
    """``(W, H, P)`` of a tonic sensor size ``(W, H, P)``, ``(W, P)`` or ``(W,)`` (no ``y``: ``H = 1``)."""
    try:
        size = tuple(int(s) for s in sensor_size)
    except (TypeError, ValueError):
        raise DataError(f"{what}: sensor_size must be (W, H, P) with positive entries, got {sensor_size!r}") from None
    if not 1 <= len(size) <= 3 or min(size) < 1:
        raise DataError(f"{what}: sensor_size must be (W, H, P) with positive entries, got {tuple(sensor_size)}")
    if len(size) == 3:
        return size
    return size[0], 1, (size[1] if len(size) == 2 else 1)


def check_events(events: np.ndarray, sensor_size: Sequence[int], sorted_t: bool = True, what: str = "events") -> np.ndarray:
    """Check an event array against a sensor; return it unchanged or raise ``DataError``.

    The one event validator: datasets, the event store, the plots and every simulation backend use
    it, so a recording that one accepts the others accept too.

    Args:
        events: structured array with at least fields ``x``, ``t``, ``p`` (and ``y`` for 2-D sensors).
        sensor_size: ``(W, H, P)`` as in tonic (``(W, P)`` or ``(W,)`` for sensors without ``y``).
        sorted_t: also require non-decreasing timestamps.
        what: name used in error messages.

    Polarity ``p`` may be 0 or 1 on a one-channel sensor (both count into channel 0); times are
    finite and >= 0 (µs).
    """
    if not isinstance(events, np.ndarray) or events.dtype.names is None:
        raise DataError(f"{what}: expected a structured NumPy array with fields x, y, t, p, got {type(events).__name__}")
    names = events.dtype.names
    for field in ("x", "t", "p"):
        if field not in names:
            raise DataError(f"{what}: missing field {field!r}; fields are {names}")
    w, h, p = sensor_dims(sensor_size, what)
    if h > 1 and "y" not in names:
        raise DataError(f"{what}: sensor {tuple(sensor_size)} is 2-D but events have no 'y' field")
    if len(events) == 0:
        return events
    for field, limit in (("x", w), ("y", h), ("p", max(p, 2))):
        if field not in names:
            continue
        col = events[field].astype(np.int64)
        bad = np.flatnonzero((col < 0) | (col >= limit))
        if bad.size:
            i = int(bad[0])
            raise DataError(f"{what} field {field!r}: event {i} has {field}={int(col[i])}, expected 0..{limit - 1} (outside sensor_size {tuple(sensor_size)})")
    t = np.asarray(events["t"], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(t) | (t < 0))
    if bad.size:
        raise DataError(f"{what} field 't': event {bad[0]} has t={t[bad[0]]}, expected a time >= 0 in µs")
    if sorted_t and len(events) > 1:
        bad = np.flatnonzero(np.diff(events["t"]) < 0)
        if bad.size:
            i = int(bad[0]) + 1
            raise DataError(f"{what}: timestamps decrease at event {i} ({int(events['t'][i - 1])} -> {int(events['t'][i])} µs)")
    return events


def event_bins(events: np.ndarray, sensor_size: Sequence[int], bin_width: float, first_bin: int = 0, what: str = "events"):
    """The one event binner's core: checked events as int64 ``(bin, p, y, x)`` and the frame shape
    ``(P, H, W)``. An event at ``t`` µs lands in bin ``floor(t / bin_width) - first_bin``; events
    before ``first_bin`` raise DataError."""
    check_events(events, sensor_size, sorted_t=False, what=what)
    width, height, polarities = sensor_dims(sensor_size, what)
    if not (isinstance(bin_width, (int, float, np.integer, np.floating)) and bin_width > 0):
        raise DataError(f"argument 'bin_width': expected a positive number of µs, got {bin_width!r}")
    t = np.asarray(events["t"], dtype=np.float64)
    x = np.asarray(events["x"]).astype(np.int64)
    y = np.asarray(events["y"]).astype(np.int64) if "y" in events.dtype.names else np.zeros_like(x)
    p = np.asarray(events["p"]).astype(np.int64) % polarities  # one channel: both polarities count there
    bins = np.floor(t / bin_width).astype(np.int64) - int(first_bin)
    early = np.flatnonzero(bins < 0)
    if early.size:
        raise DataError(f"{what} field 't': event {early[0]} at t={t[early[0]]:g} µs lies before the first bin (starting at {first_bin * bin_width:g} µs)")
    return bins, p, y, x, (polarities, height, width)


def bin_events(events: np.ndarray, sensor_size: Sequence[int], bin_width: float, n_bins: int | None = None, first_bin: int = 0) -> np.ndarray:
    """Count events per time bin and pixel: ``[n_bins, P, H, W]`` float64 (see :func:`event_bins`).

    Bin ``k`` is simulation step ``k`` when ``bin_width`` is the graph's ``dt`` in µs; frames start
    at bin ``first_bin`` (a stream's later chunks); events past ``n_bins`` are dropped.
    """
    bins, p, y, x, dims = event_bins(events, sensor_size, bin_width, first_bin)
    if n_bins is None:
        n_bins = int(bins.max(initial=-1)) + 1
    keep = bins < n_bins
    frames = np.zeros((n_bins,) + dims)
    np.add.at(frames, (bins[keep], p[keep], y[keep], x[keep]), 1.0)
    return frames


def sort_events(events: np.ndarray) -> np.ndarray:
    """Events sorted by time (stable, so simultaneous events keep their order)."""
    return events[np.argsort(events["t"], kind="stable")]


def to_frames(events: np.ndarray, sensor_size: Sequence[int], n_bins: int, duration: float | None = None, start: float = 0.0) -> np.ndarray:
    """Bin events into ``[T, P, H, W]`` counts with tonic's ``ToFrame`` over a fixed time span.

    Unlike ``ToFrame(n_time_bins=...)``, the span is fixed (``start`` to ``start + duration``), so
    every sample of a dataset yields the same ``T`` and the same bin edges. Events outside the span
    are dropped.

    Args:
        events: event array (tonic dtype).
        sensor_size: ``(W, H, P)``.
        n_bins: number of time bins ``T``.
        duration: span in µs; default: up to the last event.
        start: start of the span in µs.

    Returns:
        int16 array ``[T, P, H, W]``.
    """
    from tonic.transforms import ToFrame

    check_events(events, sensor_size, sorted_t=False)
    if n_bins < 1:
        raise DataError(f"to_frames: n_bins must be >= 1, got {n_bins}")
    if duration is None:
        duration = float(events["t"].max() - start + 1) if len(events) else 1.0
    if duration <= 0:
        raise DataError(f"to_frames: duration must be > 0 µs, got {duration}")
    w, h, p = (int(s) for s in sensor_size)
    out = np.zeros((n_bins, p, h, w), dtype=np.int16)
    end = start + duration
    inside = events[(events["t"] >= start) & (events["t"] < end)]
    if len(inside) == 0:
        return out
    window = duration / n_bins
    frames = ToFrame(sensor_size=(w, h, p), time_window=window, start_time=start, end_time=end, include_incomplete=True)(inside.copy())
    # ToFrame's float slicing can add one trailing, empty-by-construction frame; keep exactly T.
    n = min(n_bins, frames.shape[0])
    out[:n] = frames[:n].reshape(n, p, h, w)
    return out


@dataclass(frozen=True)
class EventCollate:
    """Collate function for a torch ``DataLoader`` over ``(events, label)`` samples.

    ``mode="bin"`` turns every sample into ``[T, P, H, W]`` counts and stacks them time-major
    ``[T, B, P, H, W]`` (float32). ``mode="pad"`` pads the variable-length event arrays to the
    longest one: returns ``(events[B, N_max, 4] int64 as x, y, t, p; lengths[B]; labels[B])``;
    padded rows are zero.

    Example:
        >>> collate = EventCollate(sensor_size=(34, 34, 2), n_bins=10, duration=300_000)
    """

    sensor_size: tuple[int, int, int]
    n_bins: int = 10
    duration: float | None = None
    mode: str = "bin"

    def __call__(self, batch):
        import torch

        if self.mode not in ("bin", "pad"):
            raise DataError(f"EventCollate: mode must be 'bin' or 'pad', got {self.mode!r}")
        if len(batch) == 0:
            raise DataError("EventCollate: empty batch")
        labels = torch.as_tensor(np.array([int(label) for _, label in batch]), dtype=torch.int64)
        if self.mode == "bin":
            frames = np.stack([to_frames(ev, self.sensor_size, self.n_bins, self.duration) for ev, _ in batch], axis=1)
            return torch.from_numpy(frames.astype(np.float32)), labels
        lengths = np.array([len(ev) for ev, _ in batch], dtype=np.int64)
        padded = np.zeros((len(batch), int(lengths.max()), 4), dtype=np.int64)
        for b, (ev, _) in enumerate(batch):
            check_events(ev, self.sensor_size, sorted_t=False, what=f"batch sample {b}")
            for c, name in enumerate("xytp"):
                if name in ev.dtype.names:
                    padded[b, : len(ev), c] = ev[name]
        return torch.from_numpy(padded), torch.from_numpy(lengths), labels


class SampleIndexError(DataError, IndexError):
    """A sample index is out of range (also an ``IndexError``, so ``for x in dataset`` stops)."""


def check_index(index, length: int, what: str) -> int:
    """Return ``index`` as a non-negative int below ``length`` (negative counts from the end)."""
    try:
        i = int(index)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what}: sample index must be an integer, got {index!r}") from exc
    if i < 0:
        i += length
    if not 0 <= i < length:
        raise SampleIndexError(f"{what}: sample index {index} out of range for {length} samples")
    return i
