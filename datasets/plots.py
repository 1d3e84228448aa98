"""Pictures of event data as PNG (matplotlib, Agg backend, atomic writes).

ON events are drawn red, OFF events blue; pixels with both mix towards purple.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from spikeflow._atomic import atomic_path
from spikeflow.datasets.events import check_events, to_frames
from spikeflow.errors import DataError


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def event_image(events: np.ndarray, sensor_size: Sequence[int]) -> np.ndarray:
    """RGB image ``[H, W, 3]`` in [0, 1]: red = ON count, blue = OFF count, each scaled to its maximum."""
    check_events(events, sensor_size, sorted_t=False)
    w, h = int(sensor_size[0]), int(sensor_size[1])
    rgb = np.zeros((h, w, 3))
    y = events["y"].astype(np.int64) if "y" in events.dtype.names else np.zeros(len(events), np.int64)
    for channel, mask in ((0, events["p"].astype(bool)), (2, ~events["p"].astype(bool))):
        counts = np.zeros((h, w))
        np.add.at(counts, (y[mask], events["x"][mask].astype(np.int64)), 1)
        if counts.max() > 0:
            rgb[..., channel] = counts / counts.max()
    return rgb


def _save(fig, path) -> Path:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_event_frame(events: np.ndarray, sensor_size: Sequence[int], path: str | os.PathLike, title: str | None = None) -> Path:
    """Save all events of a sample as one ON/OFF coloured frame."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(3, 3))
    ax.imshow(event_image(events, sensor_size), interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_frame_strip(events: np.ndarray, sensor_size: Sequence[int], path: str | os.PathLike, n_frames: int = 6, duration: float | None = None, title: str | None = None) -> Path:
    """Save a strip of ``n_frames`` ON/OFF frames over time (an animation laid out left to right)."""
    return plot_frame_grid([events], sensor_size, path, n_frames, duration, title=title)


def plot_frame_grid(samples: Sequence[np.ndarray], sensor_size: Sequence[int], path: str | os.PathLike, n_frames: int = 6,
                    duration: float | None = None, row_labels: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Save one strip of ``n_frames`` ON/OFF frames per sample, samples stacked as rows.

    Args:
        samples: event arrays (one per row), all of one sensor.
        sensor_size: ``(W, H, P)``.
        path: PNG file to write.
        n_frames: frames per row; each spans an equal share of ``duration``.
        duration: length of a sample in µs (default: each sample's last event time + 1).
        row_labels: one label per row, written left of it.
        title: figure title.
    """
    if n_frames < 1:
        raise DataError(f"plot_frame_grid: n_frames must be >= 1, got {n_frames}")
    if len(samples) == 0:
        raise DataError("plot_frame_grid: no samples given")
    if row_labels is not None and len(row_labels) != len(samples):
        raise DataError(f"plot_frame_grid: {len(row_labels)} row labels for {len(samples)} samples")
    strips = [to_frames(events, sensor_size, n_frames, duration) for events in samples]  # checks every sample first
    plt = _pyplot()
    fig, axes = plt.subplots(len(samples), n_frames, figsize=(2 * n_frames, 2.3 * len(samples)), squeeze=False)
    for row, (events, frames) in enumerate(zip(samples, strips)):
        end = duration if duration is not None else (events["t"].max() + 1 if len(events) else 1)
        edges = np.linspace(0, end, n_frames + 1)
        for k, ax in enumerate(axes[row]):
            rgb = np.zeros((*frames.shape[2:], 3))
            on = frames[k, 1] if frames.shape[1] > 1 else frames[k, 0]
            off = frames[k, 0] if frames.shape[1] > 1 else np.zeros_like(on)
            top = max(int(on.max()), int(off.max()), 1)
            rgb[..., 0], rgb[..., 2] = on / top, off / top
            ax.imshow(rgb, interpolation="nearest")
            ax.set_title(f"{edges[k] / 1000:.0f}-{edges[k + 1] / 1000:.0f} ms", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            if k == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[row], fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_raster(spikes, path: str | os.PathLike, dt_ms: float = 1.0, title: str | None = None, max_neurons: int = 2000) -> Path:
    """Save a spike raster of a time-major ``[T, N]`` (or ``[T, ...]``, flattened) spike tensor or of events
    (drawn by :func:`spikeflow.plots.spike_raster`, spikeflow's one raster picture).

    Events (structured with ``t`` and ``x``) are drawn at their time with neuron index ``x`` (or
    ``y * W + x`` for 2-D events).
    """
    from spikeflow.plots import spike_raster

    dt = None if dt_ms == 1.0 else dt_ms * 1e-3
    try:
        return spike_raster(spikes, path, dt=dt, title=title, max_neurons=max_neurons)
    except DataError as err:
        raise DataError(f"plot_raster: {err}") from None
