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


MAX_EVENT_TIME = 2.0**53
"""Latest event time accepted (µs, ~285 years): every time up to it is exact in float64."""


def sensor_dims(sensor_size: Sequence[int], what: str = "events") -> tuple[int, int, int]:
    """``(W, H, P)`` of a tonic sensor size ``(W, H, P)``, ``(W, P)`` or ``(W,)`` (no ``y``: ``H = 1``)."""
    try:
        size = tuple(int(s) for s in sensor_size)
        exact = all(float(a) == b for a, b in zip(sensor_size, size))
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{what}: sensor_size must be (W, H, P) with positive entries, got {sensor_size!r}") from None
    if not 1 <= len(size) <= 3 or min(size) < 1 or not exact:
        raise DataError(f"{what}: sensor_size must be (W, H, P) with positive entries, got {tuple(sensor_size)}")
    if len(size) == 3:
        return size
    return size[0], 1, (size[1] if len(size) == 2 else 1)


def check_sensor_size(sensor_size, what: str = "sensor_size") -> tuple[int, int, int]:
    """A full ``(W, H, P)`` of three positive ints (formats that store all three), or ``DataError``."""
    size = sensor_dims(sensor_size, what)
    if len(tuple(sensor_size)) != 3:
        raise DataError(f"{what}: sensor_size must be (W, H, P) with positive entries, got {tuple(sensor_size)}")
    return size


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
        # Without y every event would land in row 0: a silently wrong input.
        raise DataError(f"{what}: sensor {tuple(sensor_size)} is 2-D but events have no 'y' field")
    for field in ("x", "y", "p"):
        if field in names and events.dtype[field].kind not in "biu":
            raise DataError(f"{what} field {field!r}: expected integers, got dtype {events.dtype[field]}")
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
    event_times(events, what)
    if sorted_t and len(events) > 1:
        bad = np.flatnonzero(np.diff(events["t"]) < 0)
        if bad.size:
            i = int(bad[0]) + 1
            raise DataError(f"{what}: timestamps decrease at event {i} ({int(events['t'][i - 1])} -> {int(events['t'][i])} µs)")
    return events


def event_times(events: np.ndarray, what: str = "events") -> np.ndarray:
    """The checked timestamps of an event array, as float64 µs.

    Raises:
        DataError: a ``t`` field that is not real numbers, or a time that is NaN, infinite,
            negative or above :data:`MAX_EVENT_TIME` (uint64 times are checked before any cast,
            so a huge one cannot wrap around).
    """
    t = np.asarray(events["t"])
    if t.dtype.kind not in "biuf":
        raise DataError(f"{what} field 't': expected integer or float times in µs, got dtype {t.dtype}")
    if t.dtype.kind == "u" and t.size and int(t.max()) > MAX_EVENT_TIME:
        bad = int(np.argmax(t > MAX_EVENT_TIME))
        raise DataError(f"{what} field 't': event {bad} has t={int(t[bad])}, above the latest time {MAX_EVENT_TIME:.0f} µs")
    t = t.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(t) | (t < 0) | (t > MAX_EVENT_TIME))
    if bad.size:
        raise DataError(f"{what} field 't': event {bad[0]} has t={t[bad[0]]}, expected a time in [0, {MAX_EVENT_TIME:.0f}] µs")
    return t


def check_integer_times(events: np.ndarray, what: str = "events") -> None:
    """For formats that store integer µs (event store, N-MNIST): refuse float times, never truncate."""
    if events.dtype["t"].kind not in "biu":
        raise DataError(f"{what} field 't' must hold integers (µs), got dtype {events.dtype['t']}")


def steps_for_events(samples: list, bin_width: float, first_bin: int = 0) -> int:
    """Steps that cover every event of ``samples`` (through the bin of the last one), from ``first_bin``."""
    last = max(float(np.max(event_times(s), initial=-1.0)) for s in samples)
    return max(int(np.floor(last / bin_width)) + 1 - int(first_bin), 0) if last >= 0 else 0


def check_steps(n_steps: int, batch: int, floats_per_step: int, what: str) -> None:
    """Refuse a run whose ``[n_steps, batch, floats_per_step]`` float64 arrays memory cannot hold."""
    from spikeflow._checked_files import check_memory

    check_memory(int(n_steps) * int(batch) * int(floats_per_step) * 8, what, f"{n_steps:,} steps x batch {batch}", error=DataError)


def event_bins(events: np.ndarray, sensor_size: Sequence[int], bin_width: float, first_bin: int = 0, what: str = "events",
               start: float = 0.0):
    """The one event binner's core: checked events as int64 ``(bin, p, y, x)`` and the frame shape
    ``(P, H, W)``. An event at ``t`` µs lands in bin ``floor((t - start) / bin_width) - first_bin``
    (``start`` 0: ``t - 0`` is ``t`` exactly); events before ``first_bin`` raise DataError."""
    check_events(events, sensor_size, sorted_t=False, what=what)
    width, height, polarities = sensor_dims(sensor_size, what)
    if not (isinstance(bin_width, (int, float, np.integer, np.floating)) and np.isfinite(bin_width) and bin_width > 0):
        raise DataError(f"argument 'bin_width': expected a positive number of µs, got {bin_width!r}")
    t = np.asarray(events["t"], dtype=np.float64)
    x = np.asarray(events["x"]).astype(np.int64)
    y = np.asarray(events["y"]).astype(np.int64) if "y" in events.dtype.names else np.zeros_like(x)
    p = np.asarray(events["p"]).astype(np.int64) % polarities  # one channel: both polarities count there
    bins = np.floor((t - start) / bin_width).astype(np.int64) - int(first_bin)
    early = np.flatnonzero(bins < 0)
    if early.size:
        raise DataError(f"{what} field 't': event {early[0]} at t={t[early[0]]:g} µs lies before the first bin "
                        f"(starting at {start + first_bin * bin_width:g} µs)")
    return bins, p, y, x, (polarities, height, width)


def bin_events(events: np.ndarray, sensor_size: Sequence[int], bin_width: float, n_bins: int | None = None, first_bin: int = 0) -> np.ndarray:
    """Count events per time bin and pixel: ``[n_bins, P, H, W]`` float64 (see :func:`event_bins`).

    Bin ``k`` is simulation step ``k`` when ``bin_width`` is the graph's ``dt`` in µs; frames start
    at bin ``first_bin`` (a stream's later chunks); events past ``n_bins`` are dropped.
    """
    bins, p, y, x, dims = event_bins(events, sensor_size, bin_width, first_bin)
    if n_bins is None:
        n_bins = int(bins.max(initial=-1)) + 1
    check_steps(n_bins, 1, int(np.prod(dims)), "events")
    keep = bins < n_bins
    frames = np.zeros((n_bins,) + dims)
    np.add.at(frames, (bins[keep], p[keep], y[keep], x[keep]), 1.0)
    return frames


def sort_events(events: np.ndarray) -> np.ndarray:
    """Events sorted by time (stable, so simultaneous events keep their order)."""
    return events[np.argsort(events["t"], kind="stable")]


def to_frames(events: np.ndarray, sensor_size: Sequence[int], n_bins: int, duration: float | None = None, start: float = 0.0) -> np.ndarray:
    """Bin events into ``[T, P, H, W]`` counts over a fixed time span, with the binner of
    :func:`event_bins` (the one the backends use): bin ``k`` holds the events with
    ``floor((t - start) / (duration / n_bins)) == k``.

    Unlike tonic's ``ToFrame(n_time_bins=...)``, the span is fixed (``start`` to ``start + duration``),
    so every sample of a dataset yields the same ``T`` and the same bin edges. Events outside the
    span are dropped; one that rounding would put past the last bin counts in the last.

    Args:
        events: event array (tonic dtype).
        sensor_size: ``(W, H, P)``.
        n_bins: number of time bins ``T``.
        duration: span in µs; default: up to the last event.
        start: start of the span in µs.

    Returns:
        int16 array ``[T, P, H, W]``.
    """
    check_events(events, sensor_size, sorted_t=False)
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise DataError(f"to_frames: n_bins must be an integer >= 1, got {n_bins!r}")
    if duration is None:
        duration = float(events["t"].max() - start + 1) if len(events) else 1.0
    if not (isinstance(duration, (int, float, np.integer, np.floating)) and np.isfinite(duration) and duration > 0):
        raise DataError(f"to_frames: duration must be > 0 µs, got {duration}")
    t = np.asarray(events["t"], dtype=np.float64)
    inside = events[(t >= start) & (t < start + duration)]
    bins, p, y, x, dims = event_bins(inside, sensor_size, duration / n_bins, what="to_frames: events", start=start)
    check_steps(n_bins, 1, int(np.prod(dims)), "to_frames")
    out = np.zeros((int(n_bins),) + dims, dtype=np.int16)
    np.add.at(out, (np.minimum(bins, n_bins - 1), p, y, x), 1)
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
