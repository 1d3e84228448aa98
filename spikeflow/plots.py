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


def spike_raster(spikes, path: str | Path, dt: float | None = None, title: str | None = None, max_neurons: int | None = None) -> Path:
    """Raster plot of one sample's spikes: the one raster picture of spikeflow
    (``sf.datasets.plot_raster`` draws with it).

    Args:
        spikes: ``[T, N]`` array (``[T, ...]`` is flattened), an event array (fields ``t`` in µs
            and ``x``, optionally ``y``: neuron ``y * W + x``), or a mapping ``layer name -> one of
            those`` drawn as stacked panels.
        path: PNG file to write.
        dt: time step in seconds (the x axis is in ms); None labels steps.
        title: figure title.
        max_neurons: draw only the first this many neurons of each layer.
    """
    layers = dict(spikes) if isinstance(spikes, Mapping) else {"": spikes}
    if not layers:
        raise DataError("spike_raster: no layers given")
    points = {k: _raster_points(v, f"spike_raster layer {k!r}" if k else "spike_raster", dt, max_neurons) for k, v in layers.items()}
    heights = [max(1.0, min(3.0, p[2] / 40)) for p in points.values()]
    fig = new_figure(7.0, 1.0 + sum(heights))
    axes = fig.subplots(len(points), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, (name, (times, n_idx, size, span, label)) in zip(axes, points.items()):
        ax.scatter(times, n_idx, s=9, marker="|", color="black", linewidths=1.2)
        ax.set_ylim(-0.5, size - 0.5)
        ax.set_xlim(*span)
        ax.set_ylabel(f"{name}\nneuron" if name else "neuron")
    axes[-1].set_xlabel(label)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def _raster_points(values, name: str, dt: float | None, max_neurons: int | None):
    """(times, neuron indices, neuron count, x range, x label) of a spike array or an event array."""
    if isinstance(values, np.ndarray) and values.dtype.names is not None:
        if "t" not in values.dtype.names or "x" not in values.dtype.names:
            raise DataError(f"{name}: events need fields 't' and 'x', got {values.dtype.names}")
        idx = values["x"].astype(np.int64)
        if "y" in values.dtype.names and len(values):
            idx = values["y"].astype(np.int64) * (int(idx.max()) + 1) + idx
        keep = idx < max_neurons if max_neurons is not None else slice(None)
        times, idx = values["t"][keep] / 1000.0, idx[keep]
        size = int(idx.max()) + 1 if len(idx) else 1
        span = (float(times.min()) - 0.5, float(times.max()) + 0.5) if len(times) else (0.0, 1.0)
        return times, idx, size, span, "time (ms)"
    if hasattr(values, "detach"):  # torch tensors without importing torch
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim < 2:
        raise DataError(f"{name}: expected 2 dims, got shape {arr.shape}")
    arr = _array(arr.reshape(arr.shape[0], -1), name, 2)
    if max_neurons is not None:
        arr = arr[:, :max_neurons]
    times, label = _time_axis(arr.shape[0], dt)
    t_idx, n_idx = np.nonzero(arr)
    half = 0.5 * (times[1] - times[0] if len(times) > 1 else 1)
    return times[t_idx], n_idx, arr.shape[1], (times[0] - half, times[-1] + half), label


def membrane_traces(v, path: str | Path, dt: float | None = None, threshold: float | None = None,
                    labels: Sequence[str] | None = None, title: str | None = None, spikes=None) -> Path:
    """Membrane potential of a few neurons over time.

    Args:
        v: ``[T, N]`` membrane potentials (one line per neuron).
        path: PNG file to write.
        dt: time step in seconds; None labels steps.
        threshold: draws a dashed line at the firing threshold.
        labels: one legend entry per neuron.
        title: figure title.
        spikes: ``[T, N]`` spikes of the same neurons, drawn as dots in each neuron's colour at the
            threshold (at the trace without one): a recorded potential is taken after the reset,
            so the trace itself never shows the crossing.
    """
    v = _array(v, "membrane_traces", 2)
    if labels is not None and len(labels) != v.shape[1]:
        raise DataError(f"membrane_traces: expected {v.shape[1]} labels, got {len(labels)}")
    if spikes is not None:
        spikes = np.asarray(spikes)
        if spikes.shape != v.shape:
            raise DataError(f"membrane_traces: spikes have shape {spikes.shape}, potentials {v.shape}")
    times, label = _time_axis(v.shape[0], dt)
    fig = new_figure()
    ax = fig.subplots()
    for i in range(v.shape[1]):
        (line,) = ax.plot(times, v[:, i], lw=1.2, marker="." if v.shape[0] <= 60 else None, ms=4,  # few steps: mark each
                          label=None if labels is None else labels[i])
        if spikes is not None:
            at = np.flatnonzero(spikes[:, i])
            ax.plot(times[at], np.full(at.size, threshold) if threshold is not None else v[at, i], "o", ms=4, color=line.get_color())
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
                     latency_label: str = "mean time steps per sample", title: str | None = "accuracy vs mean latency", *,
                     chosen: tuple[float, float] | None = None, t_max: int | None = None) -> Path:
    """Accuracy (%) against latency, one line per method: the one accuracy/latency picture of
    spikeflow (early exit: ``sf.exit.plot_latency_accuracy`` is this function).

    Args:
        curves: ``label -> (latency values, accuracy fractions)``, points drawn in latency order;
            labels starting with "fixed" or "oracle" get the reference styles.
        path: PNG file to write.
        latency_label: x-axis label.
        title: figure title.
        chosen: ``(latency, accuracy)`` of a chosen operating point (drawn as a star).
        t_max: the full length, drawn as a dotted line.
    """
    if not curves:
        raise DataError("accuracy_latency: no curves given")
    fig = new_figure(6.5, 4.2)
    ax = fig.subplots()
    styles = {"fixed": ("s-", "tab:gray"), "oracle": ("^--", "tab:green")}
    for name, (lat, acc) in curves.items():
        lat = _array(lat, f"accuracy_latency {name!r} latency", 1)
        acc = _array(acc, f"accuracy_latency {name!r} accuracy", 1)
        if lat.shape != acc.shape:
            raise DataError(f"accuracy_latency {name!r}: {lat.size} latencies but {acc.size} accuracies")
        order = np.argsort(lat, kind="stable")
        marker, color = next((v for k, v in styles.items() if name.startswith(k)), ("o-", None))
        ax.plot(lat[order], 100 * acc[order], marker, color=color, ms=3, label=name)
    if chosen is not None:
        ax.plot([chosen[0]], [100 * chosen[1]], "r*", markersize=14, label="calibrated threshold")
    if t_max is not None:
        ax.axvline(t_max, color="k", lw=0.5, ls=":")
    ax.set_xlabel(latency_label)
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    return save_png(fig, path)


def readable(value: float) -> str:
    """A number for a label: thousands separated from 1000 on (``26,660``), else 3 significant digits."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def metric_bars(categories: Sequence[str], metrics: Mapping[str, Sequence[float]], path: str | Path,
                title: str | None = None, formats: Mapping[str, str] | None = None,
                hatched: Sequence[bool] | None = None, log: Sequence[str] = ()) -> Path:
    """Horizontal bar charts side by side, one panel per metric, categories down the y axis, each
    bar labelled with its value (e.g. accuracy, synaptic events and time per sample per backend).

    Args:
        categories: one name per bar.
        metrics: ``panel title -> one value per category`` (NaN: no bar, labelled "n/a").
        path: PNG file to write.
        title: figure title.
        formats: ``panel title -> format spec`` of the value labels (default :func:`readable`).
        hatched: per category, draw its bars hatched and pale (e.g. stages that came from a cache).
        log: panel titles drawn on a logarithmic axis (values spanning decades, such as the time
            per sample of a compiled simulator next to Brian 2).
    """
    from matplotlib.ticker import EngFormatter, MaxNLocator

    categories = [str(c) for c in categories]
    if not categories or not metrics:
        raise DataError(f"metric_bars: need categories and metrics, got {len(categories)} and {len(metrics)}")
    if hatched is not None and len(hatched) != len(categories):
        raise DataError(f"metric_bars: {len(hatched)} hatched flags for {len(categories)} categories")
    formats = dict(formats or {})
    fig = new_figure(min(3.2 * len(metrics) + 1.5, 14.0), 1.2 + 0.32 * len(categories))
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    y = np.arange(len(categories))
    for ax, (name, values) in zip(axes, metrics.items()):
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.size != len(categories):
            raise DataError(f"metric_bars: panel {name!r} has {values.size} values for {len(categories)} categories")
        shown = np.nan_to_num(values, nan=0.0)
        bars = ax.barh(y, shown, color="tab:blue", height=0.6)
        for k, bar in enumerate(bars):
            if hatched is not None and hatched[k]:
                bar.set(hatch="//", alpha=0.45)
        labels = ["n/a" if np.isnan(v) else format(v, formats[name]) if name in formats else readable(v) for v in values]
        ax.bar_label(bars, labels=labels, padding=3, fontsize=8)
        if name in log and np.nanmin(values) > 0:
            ax.set_xscale("log")
            ax.set_title(f"{name} (log scale)", fontsize=10)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
            if np.nanmax(np.abs(shown)) >= 1e4:
                ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 300k, not 300000 (tick labels would run together)
            ax.set_title(name, fontsize=10)
        ax.margins(x=0.25)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, categories)
    axes[0].invert_yaxis()
    if title:
        fig.suptitle(title)
    return save_png(fig, path)
