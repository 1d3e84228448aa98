"""The seven stages of a pipeline run. Each takes the run context, does its work into a cache entry
and returns a JSON result; :mod:`spikeflow.pipeline.run` decides which of them run.

Heavy packages (torch, numba) load inside the stages that need them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from spikeflow._progress import progress_bar
from spikeflow.errors import SpikeflowError
from spikeflow.pipeline.cache import Entry, read_arrays, write_arrays
from spikeflow.pipeline.data import load_data, shape_for

GRAPH = "graph.h5"
DATA = "frames.npz"
EXAMPLES = "examples.npz"
RECORD = "record.npz"
DATA_FORMAT = 3  # of the data stage's entry, part of its key (2: rate-coded sets keep their values, v_*; 3: step_us)
ROBUSTNESS_SAMPLES = 100  # test samples run through each export's own executor
RECORD_BACKEND = "numba-event"  # records spikes and membrane traces of any node


def predict(output: np.ndarray, readout: str = "max") -> np.ndarray:
    """Classes from ``[T, B, C]`` outputs: the largest value over time (``"max"``, the LI readout's
    score) or the largest sum over time (``"sum"``, a converted network's rate code)."""
    return (output.sum(0) if readout == "sum" else output.max(0)).argmax(-1)


def direct_encoding(x: np.ndarray) -> np.ndarray:
    """``[N, T, ...]`` frames -> their time average fed unchanged at every step (a converted
    network's input, as in QCFS conversion), float64."""
    return np.repeat(x.astype(np.float64).mean(1, keepdims=True), x.shape[1], axis=1)


def time_major(x: np.ndarray) -> np.ndarray:
    """``[N, T, ...]`` -> contiguous float64 ``[T, N, ...]`` for the simulators."""
    return np.ascontiguousarray(np.swapaxes(x, 0, 1), dtype=np.float64)


# ------------------------------------------------------------------------------------ data


def run_data(ctx, entry: Entry) -> dict[str, Any]:
    splits, info, examples = load_data(ctx.config["data"], ctx.seed, ctx.progress)
    write_arrays(entry.path(DATA), splits)
    write_arrays(entry.path(EXAMPLES), {
        **{f"events{i}": np.stack([ev[f] for f in ("x", "y", "t", "p")], axis=1).astype(np.int64) for i, (ev, _) in enumerate(examples)},
        "labels": np.asarray([label for _, label in examples], dtype=np.int64)})
    entry.commit(info, [DATA, EXAMPLES])
    ctx.log("data", 0, {"n_train": info["n_train"], "n_val": info["n_val"], "n_test": info["n_test"]})
    return info


def read_examples(entry: Entry) -> list[tuple[np.ndarray, int]]:
    """The raw test recordings stored by the data stage, as tonic-style event arrays."""
    from spikeflow.datasets import make_events

    arrays = read_arrays(entry.path(EXAMPLES))
    return [(make_events(*arrays[f"events{i}"].T), int(label)) for i, label in enumerate(arrays["labels"])]


# ----------------------------------------------------------------------------------- model


def model_source(cfg: dict[str, Any]) -> str:
    """``"zoo:saccade-cnn"``, ``"graph:net.h5"``, ... (the one source given)."""
    from spikeflow.pipeline.schema import MODEL_SOURCES

    kind = next(s for s in MODEL_SOURCES if cfg[s] is not None)
    return f"{kind}:{cfg[kind]}"


def zoo_options(name: str, options: dict[str, Any], info: dict[str, Any], seed: int) -> dict[str, Any]:
    """A zoo network's options with its size taken from the data (input size, bins, classes)."""
    import inspect

    from spikeflow.models import MODELS

    params = inspect.signature(MODELS[name]).parameters
    sized = {"seed": seed}
    if "n_in" in params:
        sized["n_in"] = math.prod(info["sensor_size"])
    if "n_out" in params:
        sized["n_out"] = len(info["classes"])
    if "bins" in params:
        sized["bins"] = info["bins"]
    if "vocab" in params:  # a char-LM: one input per character of the text's vocabulary
        sized["vocab"] = len(info["classes"])
    return {**{k: v for k, v in sized.items() if k in params}, **options}


def run_model(ctx, entry: Entry) -> dict[str, Any]:
    import spikeflow as sf

    cfg = ctx.config["model"]
    if cfg["zoo"] is not None:
        from spikeflow.models import build

        graph = build(cfg["zoo"], **zoo_options(cfg["zoo"], cfg["options"], ctx.results["data"], ctx.seed))
    elif cfg["graph"] is not None:
        graph = sf.load(cfg["graph"])
    elif cfg["nir"] is not None:
        graph = sf.from_nir(cfg["nir"], dt=cfg["dt"])
    elif cfg["pretrained"] is not None:
        from spikeflow.models import pretrained

        graph = pretrained(cfg["pretrained"])
    else:  # the untrained ANN, converted: its shape and layers for the checks; [train] trains it
        from spikeflow.convert import ann_to_snn

        graph = ann_to_snn(build_ann(ctx), input_shape=tuple(ctx.frames()["x_train"].shape[2:]))
    sf.save(graph, entry.path(GRAPH))
    result = {"source": model_source(cfg), "nodes": len(graph.flatten().nodes)}
    entry.commit(result, [GRAPH])
    return result


def load_graph(entry: Entry):
    import spikeflow as sf

    return sf.load(entry.path(GRAPH))


# ----------------------------------------------------------------------------------- train


def build_ann(ctx):
    """The ``[model] convert`` ANN (spikeflow.models.ann.ANNS), sized from the data, seeded."""
    from spikeflow.models.ann import ANNS

    cfg, info = ctx.config["model"], ctx.results["data"]
    frame = tuple(ctx.frames()["x_train"].shape[2:])
    return ANNS[cfg["convert"]](input_shape=frame, classes=len(info["classes"]), seed=ctx.seed, **cfg["options"])


def train_converted(ctx, entry: Entry) -> dict[str, Any]:
    """Train the ANN on time-averaged frames (cross-entropy, Adam, cosine schedule), then convert it
    to IF neurons (:func:`spikeflow.convert.ann_to_snn`); the SNN sees that average at every step."""
    import torch

    import spikeflow as sf
    from spikeflow.convert import ann_to_snn

    cfg, data = ctx.config["train"], ctx.frames()
    ann = build_ann(ctx)
    mean = {k: torch.as_tensor(data[f"x_{k}"][:, :1]).float()[:, 0] for k in ("train", "val")}  # frames() holds the averages
    labels = {k: torch.as_tensor(data[f"y_{k}"]) for k in ("train", "val")}
    history: dict[str, list[float]] = {"loss": [], "train_acc": [], "val_loss": [], "val_acc": []}
    with torch.random.fork_rng():
        torch.manual_seed(ctx.seed)
        opt = torch.optim.Adam(ann.parameters(), lr=cfg["lr"], weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(cfg["epochs"], 1))
        gen = torch.Generator().manual_seed(ctx.seed)
        for _ in progress_bar(range(cfg["epochs"]), desc="train: ANN epochs", enabled=ctx.progress, unit="epoch"):
            ann.train()
            losses, correct = [], 0
            for idx in torch.randperm(len(labels["train"]), generator=gen).split(ctx.config["data"]["batch_size"]):
                out = ann(mean["train"][idx])
                loss = torch.nn.functional.cross_entropy(out, labels["train"][idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()) * len(idx))
                correct += int((out.argmax(1) == labels["train"][idx]).sum())
            sched.step()
            history["loss"].append(sum(losses) / len(labels["train"]))
            history["train_acc"].append(correct / len(labels["train"]))
            if len(labels["val"]):
                ann.eval()
                with torch.no_grad():
                    out = ann(mean["val"])
                history["val_loss"].append(float(torch.nn.functional.cross_entropy(out, labels["val"])))
                history["val_acc"].append(float((out.argmax(1) == labels["val"]).float().mean()))
            ctx.log("train", len(history["loss"]), {k: v[-1] for k, v in history.items() if v})  # as the epoch ends
    ann.eval()
    sf.save(ann_to_snn(ann, input_shape=tuple(mean["train"].shape[1:])), entry.path(GRAPH))
    return history


def run_train(ctx, entry: Entry) -> dict[str, Any]:
    if ctx.config["model"]["convert"] is not None:
        history = train_converted(ctx, entry)
        return _finish_train(ctx, entry, history, "ann (converted)")
    import torch

    import spikeflow as sf
    from spikeflow.train import RateUpperBound, Trainer

    cfg = ctx.config["train"]
    if cfg["task"] == "next-char":
        from spikeflow.pipeline.zoo_stages import train_next_char

        return train_next_char(ctx, entry)
    data = ctx.frames()
    graph = ctx.graph("model")
    encoder = None
    if cfg["fresh_spikes"]:  # the values the data stage coded, coded afresh every epoch by the trainer's generator
        from spikeflow.pipeline.zoo_stages import rate_encoder

        encoder = rate_encoder(ctx.config["data"])
        x_train, x_val = data["v_train"], data["v_val"]
    else:
        x_train = shape_for(graph, data["x_train"], "[train]")
        x_val = shape_for(graph, data["x_val"], "[train]")
    net = sf.to_torch(graph, dtype=torch.float32)  # float32 trains several times faster and loses nothing here
    spiking = tuple(k for k, v in graph.flatten().nodes.items() if v.spiking)
    # fewer spikes mean fewer synaptic events on the event-driven simulators and the hardware
    regularizers = [RateUpperBound(spiking, cfg["max_rate"], cfg["rate_weight"])] if cfg["max_rate"] > 0 and spiking else []
    long = {}
    if cfg["strategy"] != "full" or cfg["chunk"]:
        long = {"strategy": cfg["strategy"], "chunk": cfg["chunk"] or None, "tbptt": None}
        if cfg["strategy"] == "tbptt":
            long.update(strategy=None, chunk=None, tbptt=cfg["tbptt"])
    torch.manual_seed(ctx.seed)
    trainer = Trainer(net, loss="membrane_max_ce", lr=cfg["lr"], epochs=cfg["epochs"], batch_size=ctx.config["data"]["batch_size"],
                      seed=ctx.seed, progress=ctx.progress, regularizers=regularizers, encoder=encoder, **long)
    history = trainer.fit((x_train, data["y_train"]), (x_val, data["y_val"]) if len(data["y_val"]) else None,
                          on_epoch=lambda epoch, values: ctx.log("train", epoch, values))  # each epoch's row as it ends
    sf.save(sf.to_graph(net), entry.path(GRAPH))
    return _finish_train(ctx, entry, history, cfg["strategy"])


def _finish_train(ctx, entry: Entry, history: dict[str, list], strategy: str) -> dict[str, Any]:
    cfg = ctx.config["train"]
    result = {"history": {k: [float(v) for v in history.get(k, [])] for k in ("loss", "train_acc", "val_loss", "val_acc")},
              "strategy": strategy, "epochs": cfg["epochs"]}
    entry.commit(result, [GRAPH])
    return result


# -------------------------------------------------------------------------------- evaluate


def fan_out(graph) -> dict[str, float]:
    """Mean synapses each spike of a node drives: over the weight nodes it feeds, through the
    nodes that only reshape or pool (counted once each). Affine/Linear: the non-zero weights of
    the neuron's column; Conv: out_channels * kernel area / stride area (interior neurons)."""
    from spikeflow import ir

    flat = graph.flatten()
    succ = {k: [b for a, b in flat.edges if a == k] for k in flat.nodes}

    def drives(name: str, seen: frozenset) -> float:
        total = 0.0
        for nxt in succ[name]:
            node = flat.nodes[nxt]
            if nxt in seen:
                continue
            if isinstance(node, (ir.Affine, ir.Linear)):
                w = np.asarray(node.weight)
                total += float(np.count_nonzero(w)) / max(w.shape[1], 1)
            elif isinstance(node, ir.Conv2d):
                w = np.asarray(node.weight)
                stride = np.broadcast_to(np.asarray(getattr(node, "stride", 1)), (2,))
                total += w.shape[0] * w.shape[2] * w.shape[3] / float(np.prod(stride))
            elif not node.spiking and not isinstance(node, ir.Output):
                total += drives(nxt, seen | {nxt})
        return total

    return {k: drives(k, frozenset({k})) for k, v in flat.nodes.items() if v.spiking or isinstance(v, ir.Input)}


def run_evaluate(ctx, entry: Entry) -> dict[str, Any]:
    import spikeflow as sf

    from spikeflow.pipeline.zoo_stages import TEXT_DATASETS, evaluate_next_char

    if ctx.config["data"]["dataset"] in TEXT_DATASETS:
        return evaluate_next_char(ctx, entry)
    cfg = ctx.config["evaluate"]
    graph = ctx.graph(ctx.graph_stage)
    data = ctx.frames()
    x_all = time_major(shape_for(graph, data["x_test"], "[evaluate]"))
    y_all = data["y_test"]
    backends = {}
    for name in progress_bar(cfg["backends"], desc="evaluate: backends", enabled=ctx.progress, unit="backend"):
        n = min(cfg["sample_limits"].get(name, cfg["samples"]), len(y_all))
        x, y = x_all[:, :n], y_all[:n]
        sf.simulate(graph, x[:, :1], backend=name)  # warm-up: numba compiles or loads its kernels
        res = sf.simulate(graph, x, backend=name)
        backends[name] = {"accuracy": float((predict(res.output, ctx.readout) == y).mean()), "samples": n,
                          "synaptic_events": float(res.stats["synaptic_events"]) / n,
                          "seconds_per_sample": float(res.stats["wall_time"]) / n}
        ctx.log("evaluate", 0, {f"{name}/{k}": v for k, v in backends[name].items()})
        ctx.say(f"  {name}: accuracy {backends[name]['accuracy']:.1%} on {n} samples, "
                f"{backends[name]['seconds_per_sample'] * 1e3:.2f} ms per sample")
    flat = graph.flatten()
    spiking = [k for k, v in flat.nodes.items() if v.spiking]
    n = min(cfg["samples"], len(y_all))
    # per-layer activity, every spiking node recorded; input "rate": the fraction of non-zero values
    res = sf.simulate(graph, x_all[:, :n], backend=RECORD_BACKEND, record=spiking)
    fans = fan_out(graph)
    inputs = x_all[:, :n]
    layers = {flat.inputs[0]: {"rate": float((inputs != 0).mean()),
                               "synaptic_events": float(np.count_nonzero(inputs)) * fans.get(flat.inputs[0], 0.0) / n}}
    for k in spiking:
        s = res.spikes[k]
        layers[k] = {"rate": float(s.mean()), "synaptic_events": float(s.sum()) * fans.get(k, 0.0) / n}
    record = cfg["record"] or spiking[:2]
    rec = sf.simulate(graph, x_all[:, :1], backend=RECORD_BACKEND, record=record)
    arrays = {}
    for k in record:
        arrays[f"spikes/{k}"] = rec.spikes[k].reshape(rec.spikes[k].shape[0], -1)
        arrays[f"v/{k}"] = rec.traces[k].reshape(rec.traces[k].shape[0], -1)
    write_arrays(entry.path(RECORD), arrays)
    thresholds = {k: float(np.mean(getattr(flat.nodes[k], "v_threshold", 1.0))) for k in record}
    # the report's time axes: the data's real step (a frame's duration), not the model's dt, which
    # need not be the bin width (the zoo MLP's 1 ms on 39 ms frames); None: the axes count steps
    # (also for a converted network, which sees the whole recording's average at every step)
    step = ctx.results["data"]["step_us"] if ctx.config["model"]["convert"] is None else None
    result = {"backends": backends, "layers": layers,
              "record": {"dt": None if step is None else step * 1e-6, "nodes": record, "threshold": thresholds, "label": int(y_all[0])}}
    entry.commit(result, [RECORD])
    return result


def read_record(entry: Entry, result: dict[str, Any]) -> dict[str, Any]:
    arrays = read_arrays(entry.path(RECORD))
    rec = result["record"]
    return {"dt": rec["dt"], "threshold": rec["threshold"], "label": rec["label"],
            "spikes": {k: arrays[f"spikes/{k}"] for k in rec["nodes"]}, "v": {k: arrays[f"v/{k}"] for k in rec["nodes"]}}


# ------------------------------------------------------------------------------ early exit


def run_early_exit(ctx, entry: Entry) -> dict[str, Any]:
    import spikeflow as sf
    from spikeflow.exit import calibrate

    cfg = ctx.config["early_exit"]
    graph = ctx.graph(ctx.graph_stage)
    data = ctx.frames()
    val_x, val_y = (data["x_val"], data["y_val"]) if len(data["y_val"]) else (data["x_train"], data["y_train"])
    n = min(cfg["samples"], len(val_y))
    calib = calibrate(graph, (shape_for(graph, val_x[:n], "[early_exit]"), val_y[:n]), cfg["max_accuracy_drop"], progress=ctx.progress)
    calib.apply(graph)
    n_test = min(cfg["samples"], len(data["y_test"]))
    x_test = time_major(shape_for(graph, data["x_test"][:n_test], "[early_exit]"))
    y_test = data["y_test"][:n_test]
    run = sf.exit.simulate(graph, x_test, backend=cfg["backend"])
    full = sf.simulate(graph, x_test, backend=cfg["backend"])
    result = {
        "curve": {k: [float(v) for v in calib.pareto[k]] for k in ("threshold", "accuracy", "mean_steps")},
        # the chosen point sits on the validation curve it was picked from; "test" is the held-out check
        "chosen": {"threshold": float(calib.threshold), "accuracy": float(calib.accuracy), "mean_steps": float(calib.mean_steps)},
        "test": {"accuracy": run.accuracy(y_test), "mean_steps": float(np.mean(run.exit_steps)), "samples": int(n_test)},
        "full": {"accuracy": float((predict(full.output, ctx.readout) == y_test).mean()), "synaptic_events": float(full.stats["synaptic_events"]) / n_test},
        "synaptic_events": float(run.stats["synaptic_events"]) / n_test,
        "full_steps": int(calib.t_max), "backend": cfg["backend"], "policy": calib.policy.to_dict() if hasattr(calib.policy, "to_dict") else None,
    }
    sf.save(graph, entry.path(GRAPH))  # the graph with its exit policy in the metadata
    entry.commit(result, [GRAPH])
    ctx.log("early_exit", 0, {"test_accuracy": result["test"]["accuracy"], "mean_steps": result["test"]["mean_steps"],
                              "threshold": result["chosen"]["threshold"]})
    return result


# ---------------------------------------------------------------------------------- export


def _report_dict(report) -> dict[str, Any]:
    return report.to_dict() if hasattr(report, "to_dict") else dict(report)


def run_export(ctx, entry: Entry, spec: dict[str, Any]) -> dict[str, Any]:
    import spikeflow as sf

    graph = ctx.graph(ctx.graph_stage)
    data = ctx.frames()
    x_test = time_major(shape_for(graph, data["x_test"], "[[export]]"))
    y_test = data["y_test"]
    options = dict(spec["options"])
    if spec["target"] == "spinnaker2" and spec["samples"]:
        options["samples"] = x_test[:, : spec["samples"]]  # activity-weighted clipping and the silence check
    folder = entry.path(spec["target"])
    sf.export(graph, target=spec["target"], path=folder, **options)
    program = sf.load_export(folder)
    result = {"path": str(folder), "report": _report_dict(program.report)}
    if spec["robustness"]:
        result["robustness"] = {"rows": robustness(graph, program, spec["target"], x_test[:, :ROBUSTNESS_SAMPLES], y_test[:ROBUSTNESS_SAMPLES],
                                                  ctx.readout)}
        for row in result["robustness"]["rows"]:
            ctx.log("export", 0, {f"{spec['target']}/{row['case']}": row["accuracy"]})
    entry.commit(result, [spec["target"]])
    return result


def robustness(graph, program, target: str, x: np.ndarray, y: np.ndarray, readout: str = "max") -> list[dict[str, Any]]:
    """Test accuracy of the float graph next to the export's own executor (RRAM: also after drift)."""
    import spikeflow as sf

    def accuracy(output: np.ndarray) -> float:
        return float((predict(output, readout) == y).mean())

    rows = [{"case": "float64 graph (numba-event)", "accuracy": accuracy(sf.simulate(graph, x).output)}]
    if target == "rram-lsm":
        for label, age in (("programmed chip, 1 s", 1.0), ("after 1 day of drift", 86400.0), ("after 1 year of drift", 3.15e7)):
            rows.append({"case": label, "accuracy": accuracy(program.run(x, age_s=age).output)})
    else:
        rows.append({"case": f"{target} executor (fixed point)", "accuracy": accuracy(program.run(x).output)})
    return rows


# ---------------------------------------------------------------------------------- report


def run_report(ctx, entry: Entry) -> dict[str, Any]:
    from spikeflow.pipeline.cache import file_digest
    from spikeflow.report import write_report

    page = Path(write_report(ctx.run_dict(), ctx.out / "report"))
    result = {"path": str(page), "sha256": file_digest(page)}
    entry.commit(result, [])
    return result


def report_is_current(result: dict[str, Any]) -> bool:
    """The report page recorded in a cache entry is still there, unchanged."""
    from spikeflow.pipeline.cache import file_digest

    try:
        return file_digest(result["path"]) == result["sha256"]
    except (OSError, KeyError, TypeError):
        return False


class StageError(SpikeflowError):
    """A stage failed; names the stage."""
