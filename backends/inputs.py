"""Checking and packing simulation inputs: dense ``[T, B, ...]`` arrays or tonic-style events."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from spikeflow.datasets.events import bin_events, event_bins
from spikeflow.errors import DataError

__all__ = ["bin_events", "default_bin_width", "event_bins", "event_samples", "is_events", "prepare_inputs"]


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
            n_steps = max(max(int(np.floor(np.max(s["t"], initial=-1) / width)) + 1 - first_bin, 0) for s in samples)
        frames = np.stack([bin_events(s, sensor_size, width, n_steps, first_bin) for s in samples], axis=1)
        if math.prod(frames.shape[2:]) != math.prod(shape):
            raise DataError(f"{where}: sensor_size {tuple(sensor_size)} gives {frames.shape[2:]} per step, expected {shape}")
        return frames.reshape(frames.shape[:2] + tuple(shape))
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise DataError(f"{where}: expected an array [T, B, {', '.join(map(str, shape))}], got {type(value).__name__} ({err})") from None
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{where}: expected a real numeric dtype (bool, int or float), got {arr.dtype}")
    if arr.ndim != len(shape) + 2 or tuple(arr.shape[2:]) != tuple(shape):
        raise DataError(f"{where}: expected shape [T, B, {', '.join(map(str, shape))}], got {list(arr.shape)}")
    arr = arr.astype(np.float64)
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        raise DataError(f"{where}: contains NaN or inf, first at index {tuple(int(i) for i in bad[0])}")
    return arr
