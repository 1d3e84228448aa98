"""Pictures of spiking activity and training: rasters, membrane traces, curves.

Figures are drawn with Matplotlib's object API on the Agg canvas (no screen, no pyplot global
state), written atomically as PNG, and each function returns the path it wrote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from spikeflow._atomic import atomic_path
from spikeflow.errors import DataError


def new_figure(width: float = 7.0, height: float = 4.0):
    """An off-screen matplotlib Figure (no pyplot state, safe without a display)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def save_png(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG atomically; return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _array(values, name: str, ndim: int) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensors without importing torch
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != ndim:
        raise DataError(f"{name}: expected {ndim} dims, got shape {arr.shape}")
    if arr.size == 0:
        raise DataError(f"{name}: is empty")
    return arr


def _time_axis(steps: int, dt: float | None) -> tuple[np.ndarray, str]:
    if dt is None:
        return np.arange(steps), "time step"
    return np.arange(steps) * dt * 1e3, "time (ms)"


def spike_raster(spikes, path: str | Path, dt: float | None = None, title: str | None = None) -> Path:
    """Raster plot of one sample's spikes.

    Args:
        spikes: ``[T, N]`` array, or a mapping ``layer name -> [T, N_layer]`` drawn as stacked panels.
        path: PNG file to write.
        dt: time step in seconds (the x axis is in ms); None labels steps.
        title: figure title.
    """
    layers = dict(spikes) if isinstance(spikes, Mapping) else {"": spikes}
    if not layers:
        raise DataError("spike_raster: no layers given")
    arrays = {k: _array(v, f"spike_raster layer {k!r}" if k else "spike_raster", 2) for k, v in layers.items()}
    heights = [max(1.0, min(3.0, a.shape[1] / 40)) for a in arrays.values()]
    fig = new_figure(7.0, 1.0 + sum(heights))
    axes = fig.subplots(len(arrays), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, (name, z) in zip(axes, arrays.items()):
        times, label = _time_axis(z.shape[0], dt)
        t_idx, n_idx = np.nonzero(z)
        ax.scatter(times[t_idx], n_idx, s=9, marker="|", color="black", linewidths=1.2)
        ax.set_ylim(-0.5, z.shape[1] - 0.5)
        half = 0.5 * (times[1] - times[0] if len(times) > 1 else 1)
        ax.set_xlim(times[0] - half, times[-1] + half)
        ax.set_ylabel(f"{name}\nneuron" if name else "neuron")
    axes[-1].set_xlabel(label)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def membrane_traces(v, path: str | Path, dt: float | None = None, threshold: float | None = None,
                    labels: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Membrane potential of a few neurons over time.

    Args:
        v: ``[T, N]`` membrane potentials (one line per neuron).
        path: PNG file to write.
        dt: time step in seconds; None labels steps.
        threshold: draws a dashed line at the firing threshold.
        labels: one legend entry per neuron.
        title: figure title.
    """
    v = _array(v, "membrane_traces", 2)
    if labels is not None and len(labels) != v.shape[1]:
        raise DataError(f"membrane_traces: expected {v.shape[1]} labels, got {len(labels)}")
    times, label = _time_axis(v.shape[0], dt)
    fig = new_figure()
    ax = fig.subplots()
    for i in range(v.shape[1]):
        ax.plot(times, v[:, i], lw=1.2, label=None if labels is None else labels[i])
    if threshold is not None:
        ax.axhline(threshold, ls="--", color="gray", lw=1, label="threshold")
    ax.set_xlabel(label)
    ax.set_ylabel("membrane potential")
    if labels is not None or threshold is not None:
        ax.legend(fontsize=7, ncol=2 if v.shape[1] > 5 else 1)
    if title:
        ax.set_title(title)
    return save_png(fig, path)


def training_curves(history: Mapping[str, Sequence[float]], path: str | Path, title: str | None = None) -> Path:
    """Loss (left) and accuracies (right) against epoch, from ``Trainer.fit``'s history.

    Keys used: ``loss`` and any of ``train_acc``, ``val_acc`` (NaN entries are skipped).
    """
    if "loss" not in history or len(history["loss"]) == 0:
        raise DataError(f"training_curves: history needs a non-empty 'loss' list, got keys {sorted(history)}")
    loss = _array(history["loss"], "training_curves 'loss'", 1)
    epochs = np.arange(1, len(loss) + 1)
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(9.0, 3.5)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.plot(epochs, loss, marker="o", ms=3)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    for key in ("train_acc", "val_acc"):
        values = np.asarray(history.get(key, []), dtype=np.float64)
        if values.size and not np.isnan(values).all():
            if values.size != loss.size:
                raise DataError(f"training_curves: {key!r} has {values.size} entries, 'loss' has {loss.size}")
            ax_acc.plot(epochs, values, marker="o", ms=3, label=key.replace("_", " "))
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1.02)
    if ax_acc.lines:
        ax_acc.legend()
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def accuracy_latency(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | Path,
                     latency_label: str = "latency (time steps)", title: str | None = None) -> Path:
    """Accuracy against latency, one line per method (e.g. fixed T versus early exit).

    Args:
        curves: ``label -> (latency values, accuracy values)``, points drawn in latency order.
        path: PNG file to write.
        latency_label: x-axis label.
        title: figure title.
    """
    if not curves:
        raise DataError("accuracy_latency: no curves given")
    fig = new_figure(5.5, 4.0)
    ax = fig.subplots()
    for name, (lat, acc) in curves.items():
        lat = _array(lat, f"accuracy_latency {name!r} latency", 1)
        acc = _array(acc, f"accuracy_latency {name!r} accuracy", 1)
        if lat.shape != acc.shape:
            raise DataError(f"accuracy_latency {name!r}: {lat.size} latencies but {acc.size} accuracies")
        order = np.argsort(lat, kind="stable")
        ax.plot(lat[order], acc[order], marker="o", ms=3, label=name)
    ax.set_xlabel(latency_label)
    ax.set_ylabel("accuracy")
    ax.legend()
    if title:
        ax.set_title(title)
    return save_png(fig, path)
