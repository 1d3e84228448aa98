"""Checking and packing simulation inputs: dense ``[T, B, ...]`` arrays or tonic-style events."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from spikeflow._checked_files import check_memory
from spikeflow.errors import DataError

MAX_EVENT_TIME = 2.0**53
"""Latest event time accepted (µs, ~285 years): every time below it is exact in float64."""


def is_events(value: Any) -> bool:
    """True for a structured array with fields ``x``, ``t``, ``p`` (``y`` optional), as in tonic."""
    names = getattr(getattr(value, "dtype", None), "names", None) or ()
    return {"x", "t", "p"} <= set(names)


def event_samples(value: Any) -> list | None:
    """The per-sample event arrays of one input: a structured event array (batch 1) or a non-empty
    list of them; None when ``value`` is not events."""
    if is_events(value):
        return [value]
    if isinstance(value, (list, tuple)) and value and all(is_events(v) for v in value):
        return list(value)
    return None


def event_times(events: np.ndarray, where: str = "events") -> np.ndarray:
    """The checked timestamps of an event array as float64 µs.

    Raises:
        DataError: a ``t`` field that is not real numbers (complex, object, bfloat16-like void),
            or a time that is NaN, infinite, negative or above :data:`MAX_EVENT_TIME`.
    """
    t = np.asarray(events["t"])
    if t.dtype.kind not in "biuf":
        raise DataError(f"{where} field 't': expected integer or float times in µs, got dtype {t.dtype}")
    if t.dtype.kind == "u" and t.size and int(t.max()) > MAX_EVENT_TIME:
        bad = int(np.argmax(t > MAX_EVENT_TIME))
        raise DataError(f"{where} field 't': event {bad} has t={int(t[bad])}, above the latest time {MAX_EVENT_TIME:.0f} µs")
    t = t.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(t) | (t < 0) | (t > MAX_EVENT_TIME))
    if bad.size:
        raise DataError(f"{where} field 't': event {bad[0]} has t={t[bad[0]]}, expected a time in [0, {MAX_EVENT_TIME:.0f}] µs")
    return t


def steps_for_events(samples: list, bin_width: float, first_bin: int = 0) -> int:
    """Steps that cover every event of ``samples`` (through the bin of the last one), from ``first_bin``."""
    last = max(float(np.max(event_times(s), initial=-1.0)) for s in samples)
    return max(int(np.floor(last / bin_width)) + 1 - int(first_bin), 0) if last >= 0 else 0


def check_steps(n_steps: int, batch: int, floats_per_step: int, where: str) -> None:
    """Refuse a run whose ``[n_steps, batch, floats_per_step]`` float64 arrays memory cannot hold."""
    check_memory(int(n_steps) * int(batch) * int(floats_per_step) * 8, where, f"{n_steps:,} steps x batch {batch}", error=DataError)


def bin_events(events: np.ndarray, sensor_size: tuple[int, ...], bin_width: float, n_bins: int | None = None, first_bin: int = 0) -> np.ndarray:
    """Count events per time bin and pixel: ``[n_bins, P, H, W]`` float64.

    An event at time ``t`` (µs) lands in bin ``floor(t / bin_width)``, so bin ``k`` is simulation
    step ``k`` when ``bin_width`` is the graph's ``dt`` in µs. ``sensor_size`` is ``(W, H, P)`` as in
    tonic (``(W, P)`` or ``(W,)`` for sensors without ``y``). Frames start at bin ``first_bin``
    (a stream's later chunks); earlier events raise DataError, events past ``n_bins`` are dropped.
    """
    bins, p, y, x, dims = event_fields(events, sensor_size, bin_width, first_bin)
    if n_bins is None:
        n_bins = int(bins.max(initial=-1)) + 1
    check_steps(n_bins, 1, math.prod(dims), "events")
    keep = bins < n_bins
    frames = np.zeros((n_bins,) + dims)
    np.add.at(frames, (bins[keep], p[keep], y[keep], x[keep]), 1.0)
    return frames


def event_fields(events: np.ndarray, sensor_size: tuple[int, ...], bin_width: float, first_bin: int = 0):
    """The checked events as int64 arrays ``(bin, p, y, x)`` and the frame shape ``(P, H, W)``
    (see :func:`bin_events`); bins count from ``first_bin``."""
    if not is_events(events):
        raise DataError(f"events: expected a structured array with fields x, t, p (and y), got dtype {getattr(events, 'dtype', type(events))}")
    try:
        size = tuple(int(s) for s in sensor_size)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"argument 'sensor_size': expected (W, H, P) integers, got {sensor_size!r}") from None
    if not 1 <= len(size) <= 3 or min(size) < 1:
        raise DataError(f"argument 'sensor_size': expected (W, H, P) with positive sizes, got {sensor_size!r}")
    if len(size) == 3:
        width, height, polarities = size
    else:
        width, height, polarities = size[0], 1, (size[1] if len(size) == 2 else 1)
    if not (isinstance(bin_width, (int, float, np.integer, np.floating)) and math.isfinite(bin_width) and bin_width > 0):
        raise DataError(f"argument 'bin_width': expected a positive number of µs, got {bin_width!r}")
    if "y" not in events.dtype.names and height > 1:
        # Without y every event would land in row 0: a silently wrong input.
        raise DataError(f"events: the sensor {size} has {height} rows but the events have no 'y' field")
    for field in ("x", "y", "p"):
        if field in events.dtype.names and events.dtype[field].kind not in "biu":
            raise DataError(f"events field {field!r}: expected integers, got dtype {events.dtype[field]}")
    t = event_times(events)
    x = np.asarray(events["x"]).astype(np.int64)
    y = np.asarray(events["y"]).astype(np.int64) if "y" in events.dtype.names else np.zeros_like(x)
    p = np.asarray(events["p"]).astype(np.int64)
    for field, values, limit in (("x", x, width), ("y", y, height), ("p", p, polarities)):
        bad = np.flatnonzero((values < 0) | (values >= limit))
        if bad.size:
            raise DataError(f"events field {field!r}: event {bad[0]} has {field}={values[bad[0]]}, expected 0..{limit - 1} for sensor_size {size}")
    bins = np.floor(t / bin_width).astype(np.int64) - int(first_bin)
    early = np.flatnonzero(bins < 0)
    if early.size:
        raise DataError(f"events field 't': event {early[0]} at t={t[early[0]]:g} µs lies before the first bin (starting at {first_bin * bin_width:g} µs)")
    return bins, p, y, x, (polarities, height, width)


_TORCH_INTS = {f"torch.{k}" for k in ("bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64")}


def default_bin_width(dt: float) -> float:
    """One step per bin: ``dt`` in µs (rounded to 1e-6 µs so that 1e-4 s gives exactly 100)."""
    return round(dt * 1e6, 6)


def prepare_inputs(
    inputs: Any,
    shapes: Mapping[str, tuple[int, ...]],
    *,
    dt: float,
    bin_width: float | None = None,
    sensor_size: tuple[int, ...] | None = None,
    n_steps: int | None = None,
    first_bin: int = 0,
) -> dict[str, np.ndarray]:
    """Check ``inputs`` against the graph's Input shapes; return float64 ``[T, B, ...]`` by name.

    ``inputs`` is one array (graphs with one Input) or a dict by Input name; each value is a
    NumPy array or torch tensor ``[T, B, ...]``, or events: one structured array (batch 1) or a
    list of them (one per sample), binned with :func:`bin_events` at ``bin_width`` µs (default:
    ``dt``) and reshaped to the Input's shape.
    """
    names = sorted(shapes)
    if not isinstance(inputs, Mapping):
        if len(names) != 1:
            raise DataError(f"argument 'inputs': the graph has {len(names)} Input nodes {names}; pass a dict by name")
        inputs = {names[0]: inputs}
    unknown = sorted(set(inputs) - set(names))
    missing = sorted(set(names) - set(inputs))
    if unknown or missing:
        raise DataError(f"argument 'inputs': expected keys {names}, got {sorted(inputs)}")
    out = {}
    for name in names:
        out[name] = _dense(name, inputs[name], shapes[name], dt, bin_width, sensor_size, n_steps, first_bin)
    lead = {k: v.shape[:2] for k, v in out.items()}
    if len(set(lead.values())) > 1:
        raise DataError(f"argument 'inputs': inputs disagree on [T, B]: {lead}")
    return out


def _dense(name, value, shape, dt, bin_width, sensor_size, n_steps, first_bin) -> np.ndarray:
    where = f"argument 'inputs' (Input {name!r})"
    samples = event_samples(value)
    if samples is not None:
        if sensor_size is None:
            if len(shape) != 3:
                raise DataError(f"{where}: events need sensor_size=(W, H, P) (the Input shape {shape} is not (P, H, W))")
            sensor_size = (shape[2], shape[1], shape[0])
        width = default_bin_width(dt) if bin_width is None else float(bin_width)
        if n_steps is None:
            n_steps = steps_for_events(samples, width, first_bin)
        check_steps(n_steps, len(samples), math.prod(shape), where)
        frames = np.stack([bin_events(s, sensor_size, width, n_steps, first_bin) for s in samples], axis=1)
        if math.prod(frames.shape[2:]) != math.prod(shape):
            raise DataError(f"{where}: sensor_size {tuple(sensor_size)} gives {frames.shape[2:]} per step, expected {shape}")
        return frames.reshape(frames.shape[:2] + tuple(shape))
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        value = value.detach().cpu()
        if value.is_complex() or not (value.is_floating_point() or str(value.dtype) in _TORCH_INTS):
            raise DataError(f"{where}: expected a real numeric dtype (bool, int or float), got {value.dtype}")
        # bfloat16 and float8 have no NumPy dtype; float64 holds each of their values exactly.
        value = value.double().numpy() if value.is_floating_point() else value.numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise DataError(f"{where}: expected an array [T, B, {', '.join(map(str, shape))}], got {type(value).__name__} ({err})") from None
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{where}: expected a real numeric dtype (bool, int or float), got {arr.dtype}")
    if arr.ndim != len(shape) + 2 or tuple(arr.shape[2:]) != tuple(shape):
        raise DataError(f"{where}: expected shape [T, B, {', '.join(map(str, shape))}], got {list(arr.shape)}")
    check_steps(arr.shape[0], arr.shape[1], math.prod(shape), where)
    arr = arr.astype(np.float64)
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        raise DataError(f"{where}: contains NaN or inf, first at index {tuple(int(i) for i in bad[0])}")
    return arr
