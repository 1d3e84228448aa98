"""One builder per part of the run dict (see docs/pipeline.md): each returns the blocks of its section
and writes its figures as PNG files into the report folder.

A builder reads only its own part of the run dict; a part that is missing gives a section that says
the stage did not run, never an empty figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spikeflow.errors import DataError
from spikeflow.report.page import Code, Figure, Table, Text

#: The pipeline's stages in order, and the key of each one's result in the run dict.
STAGES = ("data", "model", "train", "evaluate", "early_exit", "export", "report")
RUN_KEY = {"export": "exports"}
EXAMPLES_SHOWN = 4  # input samples drawn as frames
TRACES_SHOWN = 5  # neurons per recorded node whose membrane potential is drawn


def part(run: Mapping, key: str, kind: type | tuple[type, ...] = Mapping, where: str = "run") -> Any:
    """``run[key]`` checked to be a ``kind`` (a DataError names the key otherwise); None when absent."""
    value = run.get(key)
    if value is not None and not isinstance(value, kind):
        expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise DataError(f"{where}[{key!r}]: expected {expected}, got {type(value).__name__}")
    return value


def not_run(stage: str, hint: str = "") -> Text:
    return Text(f"The {stage} stage did not run in this pipeline{': ' + hint if hint else '.'}", "skipped")


def fmt(value: Any, spec: str | None = None) -> str:
    """A number formatted with ``spec`` (default: :func:`spikeflow.plots.readable`); "n/a" for None or NaN."""
    from spikeflow.plots import readable

    if value is None:
        return "n/a"
    value = float(value)
    if np.isnan(value):
        return "n/a"
    return readable(value) if spec is None else format(value, spec)


def stage_status(run: Mapping) -> list[tuple[str, str, float | None]]:
    """``(stage, "ran" | "cached" | "not run", seconds)`` per pipeline stage."""
    seconds = part(run, "seconds") or {}
    cached = set(part(run, "cached", (list, tuple)) or ())
    rows = []
    for stage in STAGES:
        secs = seconds.get(stage)
        if stage == "report" and secs is None:
            continue  # the report is being written: it has no time of its own yet
        if stage in cached:
            status = "cached"
        elif run.get(RUN_KEY.get(stage, stage)) is not None or secs is not None:
            status = "ran"
        else:
            status = "not run"
        rows.append((stage, status, None if secs is None else float(secs)))
    return rows


def overview(run: Mapping, out: Path) -> list:
    """The stages: what ran, what came from the cache, and how long each took."""
    from spikeflow.plots import metric_bars

    rows = stage_status(run)
    timed = [(k, status, s) for k, status, s in rows if s is not None]
    total = sum(s for *_, s in timed) if timed else None
    blocks = [Table(["stage", "status", "seconds"], [(k, status, fmt(s, ".2f")) for k, status, s in rows]
                    + [("total", "", fmt(total, ".2f"))], "stages in pipeline order (cached: result read from the run's cache)")]
    if timed:
        metric_bars([f"{k} (cached)" if status == "cached" else k for k, status, _ in timed], {"wall time (s)": [s for *_, s in timed]},
                    out / "overview-stages.png", hatched=[status == "cached" for _, status, _ in timed], formats={"wall time (s)": ".2f"})
        blocks.append(Figure(out / "overview-stages.png", "wall time per stage (hatched: taken from the cache)"))
    else:
        blocks.append(Text("No stage timings were recorded.", "note"))
    return blocks


def _label_name(label: Any, classes: Sequence | None) -> str:
    if classes is not None and isinstance(label, (int, np.integer)) and 0 <= int(label) < len(classes):
        return f"{int(label)} ({classes[int(label)]})" if str(classes[int(label)]) != str(int(label)) else str(int(label))
    return str(label)


def data(run: Mapping, out: Path) -> list:
    """The data set, and a few input samples as event frames over time (or event rasters for 1-D sensors)."""
    d = part(run, "data")
    if d is None:
        return [not_run("data")]
    classes = d.get("classes")
    sensor = d.get("sensor_size")
    shown_classes = "n/a" if classes is None else ", ".join(str(c) for c in list(classes)[:20]) + (" ..." if len(classes) > 20 else "")
    blocks: list = [Table(["field", "value"], [
        ("dataset", d.get("dataset", "n/a")), ("sensor size (W, H, P)", "n/a" if sensor is None else tuple(int(s) for s in sensor)),
        ("time bins per sample", d.get("bins", "n/a")), ("duration of a time bin", _bin_duration(d.get("step_us"))),
        ("training samples", d.get("n_train", "n/a")),
        ("test samples", d.get("n_test", "n/a")), (f"classes ({'n/a' if classes is None else len(classes)})", shown_classes)])]
    examples = list(d.get("examples") or [])[:EXAMPLES_SHOWN]
    if not examples:
        blocks.append(Text("No input samples were kept for the report.", "note"))
        return blocks
    if sensor is None:
        raise DataError("run['data']: 'examples' are given but 'sensor_size' is missing")
    for i, ex in enumerate(examples):
        if not (isinstance(ex, (tuple, list)) and len(ex) == 2 and isinstance(ex[0], np.ndarray) and ex[0].dtype.names):
            raise DataError(f"run['data']['examples'][{i}]: expected (event array, label), got {type(ex).__name__}")
    labels = [f"label {_label_name(label, classes)}" for _, label in examples]
    if int(sensor[1]) > 1:
        from spikeflow.datasets.plots import plot_frame_grid

        plot_frame_grid([ev for ev, _ in examples], sensor, out / "data-examples.png", n_frames=6, row_labels=labels,
                        title="input events (red: ON, blue: OFF)")
        blocks.append(Figure(out / "data-examples.png", f"{len(examples)} input samples, each split into 6 frames over time"))
    else:
        from spikeflow.plots import spike_raster

        spike_raster({f"#{i} {lab}": ev for i, (lab, (ev, _)) in enumerate(zip(labels, examples))}, out / "data-examples.png",
                     title="input events by channel")
        blocks.append(Figure(out / "data-examples.png", f"{len(examples)} input samples as event rasters (one row per channel)"))
    return blocks


def _bin_duration(step_us) -> str:
    """A time bin's real duration, or why it has none (the figures' time axes then count steps)."""
    if step_us is None:
        return "none fixed (the time axes count steps)"
    return f"{float(step_us) / 1e3:.4g} ms"


def _parameters(node) -> int:
    """Number of stored values of a node (weights, biases, time constants, ...)."""
    from dataclasses import fields

    total = 0
    for f in fields(node):
        value = getattr(node, f.name)
        if hasattr(value, "nnz"):  # scipy sparse weights count their stored entries
            total += int(value.nnz)
        elif isinstance(value, np.ndarray):
            total += int(value.size)
    return total


def model(run: Mapping, out: Path) -> list:
    """The network: source, time step, and one row per node."""
    m = part(run, "model")
    if m is None:
        return [not_run("model")]
    graph = m.get("graph")
    blocks: list = [Table(["field", "value"], [("source", m.get("source", "n/a"))]
                          + ([] if graph is None else [("time step dt", f"{graph.dt * 1e3:.4g} ms"), ("nodes", len(graph.flatten().nodes))]))]
    if graph is None:
        blocks.append(Text("The run kept no graph to describe.", "note"))
        return blocks
    flat = graph.flatten()
    shapes = flat.shapes()
    counts = {name: _parameters(flat.nodes[name]) for name in flat.order()}
    rows = [(name, type(flat.nodes[name]).__name__, "x".join(str(s) for s in shapes[name]) or "scalar", f"{counts[name]:,}",
             "yes" if flat.nodes[name].spiking else "") for name in flat.order()]
    blocks.append(Table(["node", "type", "output shape", "parameters", "spiking"], rows, f"{sum(counts.values()):,} parameters in total"))
    return blocks


def train(run: Mapping, out: Path) -> list:
    """Training curves (loss, training and validation accuracy per epoch)."""
    from spikeflow.plots import training_curves

    t = part(run, "train")
    if t is None:
        return [not_run("train", "the graph was used as given (pretrained, imported or untrained)")]
    history = part(t, "history", Mapping, "run['train']") or {}
    loss = list(history.get("loss") or [])
    rows = [("strategy", t.get("strategy", "n/a")), ("epochs", len(loss))]
    for key in ("loss", "train_acc", "val_acc"):
        values = list(history.get(key) or [])
        if values:
            rows.append((f"last {key.replace('_', ' ')}", fmt(values[-1])))
    blocks: list = [Table(["field", "value"], rows)]
    if not loss:
        blocks.append(Text("The training history is empty (no epoch finished).", "note"))
        return blocks
    training_curves(history, out / "train-curves.png", title="training")
    blocks.append(Figure(out / "train-curves.png", "loss and accuracy per epoch"))
    return blocks


def evaluate(run: Mapping, out: Path) -> list:
    """Accuracy, synaptic events and time per sample of each backend: a table and bar charts."""
    from spikeflow.plots import metric_bars

    e = part(run, "evaluate")
    if e is None:
        return [not_run("evaluate")]
    backends = part(e, "backends", Mapping, "run['evaluate']") or {}
    if not backends:
        return [Text("No backend was evaluated.", "note")]
    names = list(backends)

    def column(key: str, scale: float = 1.0) -> list[float]:
        return [float("nan") if backends[b].get(key) is None else scale * float(backends[b][key]) for b in names]

    acc, events, ms, samples = column("accuracy", 100.0), column("synaptic_events"), column("seconds_per_sample", 1e3), column("samples")
    # a backend checked on fewer samples (Brian 2) says so on its bars
    counts = {int(n) for n in samples if not np.isnan(n)}
    labels = [f"{b} ({int(n)} samples)" if len(counts) > 1 and not np.isnan(n) else b for b, n in zip(names, samples)]
    table = Table(["backend", "samples", "accuracy (%)", "synaptic events / sample", "time / sample (ms)"],
                  [(b, fmt(n), fmt(a, ".2f"), fmt(s), fmt(t)) for b, n, a, s, t in zip(names, samples, acc, events, ms)])
    panels = {k: v for k, v in {"accuracy (%)": acc, "synaptic events / sample": events, "time / sample (ms)": ms}.items()
              if not np.isnan(v).all()}  # a measure no backend reported gets no empty panel
    if not panels:
        return [table, Text("The backends reported no numbers to draw.", "note")]
    spread = [v for v in ms if v > 0]
    metric_bars(labels, panels, out / "evaluate-backends.png", formats={"accuracy (%)": ".1f"}, title="the same graph on each backend",
                log=["time / sample (ms)"] if spread and max(spread) > 100 * min(spread) else [])
    return [table, Figure(out / "evaluate-backends.png", "accuracy, synaptic events and time per sample by backend")]


def _most_active(spikes: np.ndarray | None, v: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` neurons that spike most (ties: highest peak potential)."""
    peak = np.nanmax(v, axis=0)
    n_spikes = spikes.sum(axis=0) if spikes is not None else np.zeros(v.shape[1])
    return np.lexsort((-peak, -n_spikes))[:count]


def _time_major_2d(values, where: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise DataError(f"{where}: expected [T, N] values of one sample, got shape {arr.shape}")
    return arr.reshape(arr.shape[0], -1)


def activity(run: Mapping, out: Path) -> list:
    """Spike rasters and membrane traces of the recorded nodes on one sample."""
    from spikeflow.plots import membrane_traces, spike_raster

    e = part(run, "evaluate")
    if e is None:
        return [not_run("evaluate")]
    rec = part(e, "record", Mapping, "run['evaluate']")
    if not rec or not (rec.get("spikes") or rec.get("v")):
        return [Text("No neurons were recorded (name nodes in [evaluate] record).", "note")]
    dt = rec.get("dt")
    classes = (part(run, "data") or {}).get("classes")
    label = rec.get("label")
    sample = f"one test sample (label {_label_name(label, classes)})" if label is not None else "one test sample"
    spikes = {k: _time_major_2d(v, f"run['evaluate']['record']['spikes'][{k!r}]") for k, v in (rec.get("spikes") or {}).items()}
    blocks: list = []
    if spikes and not any(s.any() for s in spikes.values()):
        blocks.append(Text(f"The recorded nodes ({', '.join(spikes)}) did not spike on this sample.", "note"))
    elif spikes:
        spike_raster(spikes, out / "activity-raster.png", dt=dt, title=f"spikes of the recorded nodes on {sample}")
        counts = ", ".join(f"{k}: {int(s.sum())} spikes from {s.shape[1]} neurons" for k, s in spikes.items())
        blocks.append(Figure(out / "activity-raster.png", f"spike raster ({counts})"))
    thresholds = rec.get("threshold") or {}
    for k, v in (rec.get("v") or {}).items():
        v = _time_major_2d(v, f"run['evaluate']['record']['v'][{k!r}]")
        keep = _most_active(spikes.get(k), v, TRACES_SHOWN)
        threshold = thresholds.get(k)
        threshold = None if threshold is None else float(np.mean(threshold))
        file = out / f"activity-v-{file_safe(k)}.png"
        membrane_traces(v[:, keep], file, dt=dt, threshold=threshold, labels=[f"neuron {i}" for i in keep],
                        title=f"{k}: membrane potential of its {len(keep)} most active neurons",
                        spikes=None if k not in spikes else spikes[k][:, keep])
        blocks.append(Figure(file, f"membrane potential of {k} (dashed: threshold; dots: spikes)"))
    return blocks or [Text("The recording holds no spikes and no membrane potentials.", "note")]


def file_safe(name: str) -> str:
    """``name`` with every character but letters, digits, '-' and '_' replaced by '_' (for file names)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name))


def layers(run: Mapping, out: Path) -> list:
    """Per-layer firing rate and synaptic events per sample."""
    from spikeflow.plots import metric_bars

    e = part(run, "evaluate")
    if e is None:
        return [not_run("evaluate")]
    per_layer = part(e, "layers", Mapping, "run['evaluate']")
    if not per_layer:
        return [Text("No per-layer activity was measured.", "note")]
    names = list(per_layer)
    rate = [float(per_layer[k].get("rate", float("nan"))) for k in names]
    events = [float(per_layer[k].get("synaptic_events", float("nan"))) for k in names]
    metric_bars(names, {"firing rate (spikes / neuron / step)": rate, "synaptic events / sample": events}, out / "layers-activity.png",
                title="activity per layer")
    return [Table(["node", "firing rate (spikes / neuron / step)", "synaptic events / sample"],
                  [(k, fmt(r), fmt(s)) for k, r, s in zip(names, rate, events)]),
            Figure(out / "layers-activity.png", "firing rate and synaptic events per layer")]


def early_exit(run: Mapping, out: Path) -> list:
    """The accuracy/latency curve of the dynamic-confidence exit, with the chosen threshold.

    ``curve`` is the calibration's sweep and ``chosen`` the threshold picked from it, with its
    accuracy and mean steps, both on the calibration (validation) split. Optional, per sample on the
    test split: ``test`` (``accuracy``, ``mean_steps``, ``samples`` with the exit), ``full``
    (``accuracy``, ``synaptic_events`` without it) and ``synaptic_events`` (with it).
    """
    from spikeflow.plots import accuracy_latency

    x = part(run, "early_exit")
    if x is None:
        return [not_run("early_exit", "every sample runs all its time steps")]
    curve = part(x, "curve", Mapping, "run['early_exit']") or {}
    chosen = part(x, "chosen", Mapping, "run['early_exit']") or {}
    test = part(x, "test", Mapping, "run['early_exit']") or {}
    full = part(x, "full", Mapping, "run['early_exit']") or {}
    steps = x.get("full_steps")

    def pct(v):
        return fmt(None if v is None else 100 * float(v), ".2f")

    def saved(mean_steps):
        return "n/a" if not steps or mean_steps is None else fmt(100 * (1 - float(mean_steps) / float(steps)), ".1f")

    rows = [("backend", x.get("backend", "n/a")), ("chosen confidence threshold", fmt(chosen.get("threshold"))),
            ("full time steps", fmt(steps))]
    head = ["", "calibration split"]
    cols = [[pct(chosen.get("accuracy")), fmt(chosen.get("mean_steps")), saved(chosen.get("mean_steps")), "n/a"]]
    if test or full:
        head.append(f"test split{'' if test.get('samples') is None else ' (' + fmt(test['samples']) + ' samples)'}")
        cols.append([pct(test.get("accuracy")), fmt(test.get("mean_steps")), saved(test.get("mean_steps")), fmt(x.get("synaptic_events"))])
        head.append("test split, full length")
        cols.append([pct(full.get("accuracy")), fmt(steps), "0.0", fmt(full.get("synaptic_events"))])
    names = ["accuracy (%)", "mean time steps", "latency saved (%)", "synaptic events / sample"]
    blocks: list = [Table(["field", "value"], rows),
                    Table(head, [(name, *(c[i] for c in cols)) for i, name in enumerate(names)], "with the exit at the chosen threshold")]
    if not curve.get("mean_steps"):
        blocks.append(Text("The calibration kept no accuracy/latency curve.", "note"))
        return blocks
    point = None if chosen.get("mean_steps") is None or chosen.get("accuracy") is None else (float(chosen["mean_steps"]), float(chosen["accuracy"]))
    accuracy_latency({"confidence threshold sweep": (curve["mean_steps"], curve["accuracy"])}, out / "early_exit-curve.png", chosen=point,
                     t_max=None if steps is None else int(steps), title="accuracy against mean latency (calibration split)")
    blocks.append(Figure(out / "early_exit-curve.png", "accuracy against mean time steps per sample on the calibration split; "
                                                        "star: the chosen exit threshold; dotted: the full length"))
    return blocks


def pipeline_text(run: Mapping, out: Path) -> list:
    text = part(run, "pipeline", str)
    if not text:
        return [Text("No pipeline file: the run was assembled in Python.", "note")]
    return [Code(text)]
