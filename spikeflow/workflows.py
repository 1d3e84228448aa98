"""The digits MLP and DigitSaccades CNN trainers, and the torch / numba-event comparison, behind
``spikeflow train``, the pretrained models' evaluation data and the examples.

:func:`train_digits` trains a spiking MLP (64 -> 128 LIF -> 10 LI) on rate-coded scikit-learn
digits; :func:`train_saccade_cnn` trains a spiking CNN on the built-in DigitSaccades event set
(:class:`spikeflow.datasets.DigitSaccades`) and checks that its HDF5 and NIR files reload to
identical predictions (:func:`reload_check`); :func:`compare_backends` runs a trained graph on its
test set with the numba-event simulator next to the torch no-grad forward (both float64, through
:func:`spikeflow.simulate`) and compares accuracy, synaptic events, time per sample and predictions.

Heavy packages (torch, numba, matplotlib, tonic) load inside the functions that need them.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from spikeflow.errors import DataError, SpikeflowError
from spikeflow.models import digits_mlp, saccade_cnn
from spikeflow.models.cnn import saccade_duration_us as _duration_us
from spikeflow.pipeline.data import split_validation
from spikeflow.pipeline.stages import predict as _predict  # one readout rule for these workflows and the pipeline

# hyper-parameters of the digits MLP (64 -> hidden LIF -> 10 LI), chosen to train in seconds
DIGITS_DEFAULTS = {
    "hidden": 128, "steps": 20, "epochs": 15, "lr": 2e-3, "batch_size": 32,
    "tau": 10e-3, "tau_out": 20e-3, "dt": 1e-3, "seed": 0,
}
HIDDEN = "lif2"  # name Graph.sequential gives the hidden LIF layer (index 2 in the chain)

# hyper-parameters of the DigitSaccades CNN; T=8 bins of the 315 ms recording (one step per bin)
# and 8 epochs reach ~96% test accuracy in a few seconds of CPU time; the rate bound (spikes per
# step of any conv LIF neuron; None: off) halves the synaptic events without costing accuracy
CNN_DEFAULTS = {
    "bins": 8, "epochs": 8, "lr": 3e-3, "batch_size": 64, "channels": (8, 16),
    "tau_steps": 5.0, "tau_out_steps": 20.0, "val_fraction": 0.1, "subset": None, "seed": 0,
    "max_rate": 0.02, "rate_weight": 30.0,
}
SENSOR_SIZE = (34, 34, 2)  # DigitSaccades (W, H, P), as N-MNIST
LATENCY_SAMPLES = 32  # samples timed one by one (batch 1) per backend


# ------------------------------------------------------------------------ stage 1: digits MLP


def digits_split(seed: int = 0) -> dict[str, np.ndarray]:
    """scikit-learn's 8x8 handwritten digits, scaled to [0, 1], in a fixed stratified split:
    20% test, then 10% of the rest for validation (``x_train``, ``y_train``, ``x_val``, ...)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.1, stratify=y_rest, random_state=seed)
    return {"x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val, "x_test": x_test, "y_test": y_test}


def _encoder(steps: int):
    from spikeflow.train.trainer import RateEncoder

    return RateEncoder(steps)


def _scores(net, x):
    """Class scores of the LI output: maximum membrane potential over time."""
    import torch

    with torch.no_grad():
        return net(x.to(next(net.parameters()).dtype)).amax(0)


def _check_options(what: str, options: dict, defaults: dict) -> None:
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise DataError(f"{what}: unknown option {unknown[0]!r}; known: {sorted(defaults)}")


def train_digits(out_dir: str | Path, epochs: int | None = None, progress: bool = True, checkpoint: str | Path | None = None,
                 workers=None, **options: Any) -> dict[str, Any]:
    """Train the digits MLP and save it to ``out_dir/digits_mlp.h5``.

    Args:
        out_dir: folder for the trained graph.
        epochs: training epochs (default ``DIGITS_DEFAULTS["epochs"]``).
        progress: show tqdm bars.
        checkpoint: trainer checkpoint file; an existing one is resumed.
        workers: :class:`spikeflow.train.distributed.Workers` to train data-parallel (torchrun);
            only the main worker saves the graph.
        **options: overrides of :data:`DIGITS_DEFAULTS` (hidden, steps, lr, batch_size, tau, ...).

    Returns:
        ``{"graph", "net", "trainer", "data", "config", "x_test", "y_test", "pred", "test_acc",
        "train_seconds", "paths"}``.
    """
    import torch

    import spikeflow as sf
    from spikeflow.train import RateUpperBound, Trainer

    _check_options("train_digits", options, DIGITS_DEFAULTS)
    cfg = {**DIGITS_DEFAULTS, **options, "epochs": DIGITS_DEFAULTS["epochs"] if epochs is None else int(epochs)}
    out = Path(out_dir)
    data = digits_split(cfg["seed"])
    # float32 trains several times faster than the float64 default and loses nothing here
    net = sf.to_torch(digits_mlp(cfg["hidden"], cfg["tau"], cfg["tau_out"], cfg["dt"], cfg["seed"]), dtype=torch.float32)
    make_trainer = Trainer
    if workers is not None:
        from spikeflow.train.distributed import DistributedTrainer

        make_trainer = partial(DistributedTrainer, workers=workers)
    trainer = make_trainer(
        net, loss="membrane_max_ce", lr=cfg["lr"], epochs=cfg["epochs"], batch_size=cfg["batch_size"],
        seed=cfg["seed"], encoder=_encoder(cfg["steps"]), progress=progress, checkpoint=checkpoint,
        # keeps the hidden layer from saturating (no neuron above 30% of steps on average)
        regularizers=[RateUpperBound(HIDDEN, max_rate=0.3, weight=1.0)],
    )
    start = time.perf_counter()
    trainer.fit((data["x_train"], data["y_train"]), (data["x_val"], data["y_val"]), resume=checkpoint is not None)
    seconds = time.perf_counter() - start
    # the test spikes are drawn once, so every reloaded copy and backend is judged on identical input
    x_test = _encoder(cfg["steps"])(torch.as_tensor(data["x_test"]), torch.Generator().manual_seed(cfg["seed"] + 10))
    y_test = torch.as_tensor(data["y_test"])
    pred = _scores(net, x_test).argmax(-1)
    graph = sf.to_graph(net)
    paths = {"hdf5": out / "digits_mlp.h5"}
    if workers is None or workers.is_main:
        sf.save(graph, paths["hdf5"])
    return {
        "graph": graph, "net": net, "trainer": trainer, "data": data, "config": cfg,
        "x_test": x_test, "y_test": y_test, "pred": pred,
        "test_acc": float((pred == y_test).float().mean()), "train_seconds": seconds, "paths": paths,
    }


def reload_check(result: dict[str, Any], hdf5: Path, nir: Path) -> dict[str, dict[str, Any]]:
    """Write ``result["graph"]`` to NIR, reload the HDF5 and NIR files, and compare their
    predictions on ``result["x_test"]`` with the trained network's ``result["pred"]``."""
    import torch

    import spikeflow as sf

    sf.to_nir(result["graph"], nir)
    reference = _scores(result["net"], result["x_test"])
    checks = {}
    for kind, graph in (("hdf5", sf.load(hdf5)), ("nir", sf.from_nir(nir))):
        scores = _scores(sf.to_torch(graph, dtype=torch.float32), result["x_test"])
        pred = scores.argmax(-1)
        checks[kind] = {
            "acc": float((pred == result["y_test"]).float().mean()),
            "same_predictions": bool(torch.equal(pred, result["pred"])),
            "max_abs_diff": float((scores.double() - reference.double()).abs().max()),
        }
    return checks


# ------------------------------------------------------------------ stage 2: DigitSaccades CNN


def saccade_data(root: str | Path, bins: int, subset: int | None = None, val_fraction: float = 0.1, seed: int = 0,
                 progress: bool = True) -> dict[str, np.ndarray]:
    """DigitSaccades binned to float32 frames ``[N, T, 2, 34, 34]``: the fixed test split, and the
    train split cut (seeded) into train and validation."""
    from spikeflow.datasets import digit_saccade_frames

    frames = digit_saccade_frames(root, n_bins=bins, subset=subset, progress=progress)
    (x_test, y_test) = frames["test"]
    (x_train, y_train), (x_val, y_val) = split_validation(*frames["train"], val_fraction, seed)
    return {"x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val, "x_test": x_test, "y_test": y_test}


def train_saccade_cnn(out_dir: str | Path, epochs: int | None = None, progress: bool = True, data_root: str | Path | None = None,
                      **options: Any) -> dict[str, Any]:
    """Train the spiking CNN on DigitSaccades, save it to HDF5 and NIR, check the reloads, draw pictures.

    Args:
        out_dir: folder for ``saccade_cnn.h5``, ``saccade_cnn.nir`` and the ``cnn_*.png`` pictures.
        epochs: training epochs (default ``CNN_DEFAULTS["epochs"]``).
        progress: show tqdm bars (event generation and training).
        data_root: DigitSaccades cache folder (default ``out_dir/data``); generated on first use.
        **options: overrides of :data:`CNN_DEFAULTS` (bins, channels, lr, subset, ...).

    Returns:
        ``{"graph", "net", "trainer", "config", "x_test" [T, N, 2, 34, 34], "y_test", "pred",
        "test_acc", "reload", "data_seconds", "train_seconds", "sizes", "data_root", "paths"}``.
    """
    import torch

    import spikeflow as sf
    from spikeflow.train import RateUpperBound, Trainer

    _check_options("train_saccade_cnn", options, CNN_DEFAULTS)
    cfg = {**CNN_DEFAULTS, **options, "epochs": CNN_DEFAULTS["epochs"] if epochs is None else int(epochs)}
    out = Path(out_dir)
    root = Path(data_root) if data_root is not None else out / "data"
    start = time.perf_counter()
    data = saccade_data(root, cfg["bins"], cfg["subset"], cfg["val_fraction"], cfg["seed"], progress)
    data_seconds = time.perf_counter() - start
    graph = saccade_cnn(cfg["bins"], tuple(cfg["channels"]), cfg["tau_steps"], cfg["tau_out_steps"], cfg["seed"])
    net = sf.to_torch(graph, dtype=torch.float32)
    # fewer spikes mean fewer synaptic events for the event-driven simulator
    regularizers = [] if cfg["max_rate"] is None else [RateUpperBound(("lif1", "lif2"), cfg["max_rate"], cfg["rate_weight"])]
    trainer = Trainer(net, loss="membrane_max_ce", lr=cfg["lr"], epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                      seed=cfg["seed"], progress=progress, regularizers=regularizers)
    start = time.perf_counter()
    val = (data["x_val"], data["y_val"]) if len(data["y_val"]) else None
    trainer.fit((data["x_train"], data["y_train"]), val)
    train_seconds = time.perf_counter() - start
    x_test = torch.from_numpy(np.ascontiguousarray(np.swapaxes(data["x_test"], 0, 1)))
    y_test = torch.from_numpy(data["y_test"])
    pred = _scores(net, x_test).argmax(-1)
    result = {
        "graph": sf.to_graph(net), "net": net, "trainer": trainer, "config": cfg, "x_test": x_test, "y_test": y_test,
        "pred": pred, "test_acc": float((pred == y_test).float().mean()), "data_seconds": data_seconds,
        "train_seconds": train_seconds, "data_root": root,
        "sizes": {k: len(data[f"y_{k}"]) for k in ("train", "val", "test")},
        "paths": {"cnn_hdf5": out / "saccade_cnn.h5", "cnn_nir": out / "saccade_cnn.nir"},
    }
    sf.save(result["graph"], result["paths"]["cnn_hdf5"])
    result["reload"] = reload_check(result, result["paths"]["cnn_hdf5"], result["paths"]["cnn_nir"])
    result["paths"].update(_cnn_plots(result, out))
    return result


def saccade_test_events(result: dict[str, Any], count: int) -> list[np.ndarray]:
    """Raw events of the first ``count`` test digits (the cache is already built)."""
    from spikeflow.datasets import DigitSaccades

    ds = DigitSaccades(result["data_root"], train=False, subset=result["config"]["subset"], progress=False)
    try:
        return [ds[i][0] for i in range(min(count, len(ds)))]
    finally:
        ds.close()


def _cnn_plots(result: dict[str, Any], out: Path) -> dict[str, Path]:
    import torch

    from spikeflow import datasets, plots

    events = saccade_test_events(result, 1)[0]
    label = int(result["y_test"][0])
    duration = _duration_us()
    net, dt = result["net"], result["graph"].dt
    with torch.no_grad():
        _, record = net.run(result["x_test"][:, :1], record=("lif1", "lif2"))
    return {
        "cnn_event_frame": datasets.plot_event_frame(events, SENSOR_SIZE, out / "cnn_event_frame.png",
                                                     title=f"test sample 0 (digit {label}): ON red, OFF blue"),
        "cnn_event_strip": datasets.plot_frame_strip(events, SENSOR_SIZE, out / "cnn_event_strip.png", n_frames=6, duration=duration,
                                                     title=f"test sample 0 (digit {label}) over the three saccades"),
        "cnn_raster": plots.spike_raster(
            {"conv1 LIF": record["lif1"][:, 0].reshape(len(record["lif1"]), -1), "conv2 LIF": record["lif2"][:, 0].reshape(len(record["lif2"]), -1)},
            out / "cnn_raster.png", dt=dt, title=f"test sample 0 (digit {label}): spikes of the CNN's LIF layers"),
        "cnn_curves": plots.training_curves(result["trainer"].history, out / "cnn_training.png", title="DigitSaccades CNN"),
    }


# ---------------------------------------------------------- stage 3: numba-event next to torch


def compare_backends(graph, x, y, *, events: list[np.ndarray] | None = None, sensor_size=None,
                     latency_samples: int = LATENCY_SAMPLES) -> dict[str, Any]:
    """Run ``graph`` on the test set with torch (no-grad forward) and numba-event, both float64.

    The prediction is the class whose output is largest over time. Each backend first runs one
    sample to warm up (numba compiles or loads its cached kernels), then the whole set in one call
    (timed), again recording every spiking node (to compare spike trains), then ``latency_samples`` samples one at a time (batch 1) through a prepared network: the torch
    module, and numba-event's streaming :class:`~spikeflow.backends.Simulator`, which reads the raw
    ``events`` when given (binned at the graph's ``dt`` over ``sensor_size``) and ``x`` otherwise.

    Args:
        graph: the trained network.
        x: ``[T, N, ...]`` inputs (array or tensor); ``y``: ``N`` labels.
        events: raw event arrays of the first samples, for the batch-1 run of numba-event.
        sensor_size: ``(W, H, P)`` of ``events``.
        latency_samples: how many samples to time at batch 1.

    Returns:
        Per backend: ``acc``, ``synaptic_events_per_sample`` (torch: the dense count, every
        synapse every step), ``neuron_updates_per_sample``, ``seconds_per_sample`` (whole set,
        one call), ``batch1_seconds_per_sample``, or ``error`` when the backend failed; plus
        ``n``, ``differing_predictions``, ``max_abs_output_diff``, ``differing_spikes`` out of
        ``spikes_compared`` (every spiking node, step and sample), ``batch1_n``, ``batch1_input``
        and ``batch1_same_predictions`` (the batch-1 runs predict what the one-call runs did).
    """
    import spikeflow as sf

    x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y)
    n_one = min(int(latency_samples), x.shape[1], len(events) if events else x.shape[1])
    report: dict[str, Any] = {"n": int(x.shape[1]), "batch1_n": n_one, "batch1_input": "events" if events else "dense"}
    spiking = [name for name, node in graph.flatten().nodes.items() if node.spiking]
    outputs, spikes, batch1_pred = {}, {}, {}
    backends = compared_backends()
    for backend in backends:
        try:
            sf.simulate(graph, x[:, :1], backend=backend)  # warm-up
            res = sf.simulate(graph, x, backend=backend)  # timed without recording
            outputs[backend] = res.output
            spikes[backend] = sf.simulate(graph, x, backend=backend, record=spiking).spikes
            seconds, batch1_pred[backend] = _batch1(graph, backend, x[:, :n_one], events[:n_one] if events else None, sensor_size)
            report[backend] = {
                "acc": float((_predict(res.output) == y).mean()),
                "synaptic_events_per_sample": res.stats["synaptic_events"] / x.shape[1],
                "neuron_updates_per_sample": res.stats["neuron_updates"] / x.shape[1],
                "seconds_per_sample": res.stats["wall_time"] / x.shape[1],
                "batch1_seconds_per_sample": seconds,
            }
        except SpikeflowError as err:  # a backend still being built: report it, run the rest
            report[backend] = {"error": f"{type(err).__name__}: {err}"}
    if len(outputs) == len(backends):
        first, second = (outputs[b] for b in backends)
        report["differing_predictions"] = int((_predict(first) != _predict(second)).sum())
        report["max_abs_output_diff"] = float(np.abs(first - second).max())
        report["differing_spikes"] = int(sum(np.count_nonzero(spikes[backends[0]][k] != spikes[backends[1]][k]) for k in spiking))
        report["spikes_compared"] = int(sum(spikes[backends[0]][k].size for k in spiking))
        report["batch1_same_predictions"] = all(np.array_equal(batch1_pred[b], _predict(outputs[b][:, :n_one])) for b in backends)
    return report


def compared_backends() -> tuple[str, str]:
    """The backends compared, from the registry: the one that trains (torch) and the
    event-driven simulator that takes raw events."""
    from spikeflow.backends import backend_names

    return backend_names(engine="torch")[0], backend_names(event_input=True)[0]


def _batch1(graph, backend: str, x: np.ndarray, events, sensor_size) -> tuple[float, np.ndarray]:
    """Mean seconds per sample and the predictions, running samples one at a time."""
    import spikeflow as sf

    from spikeflow.backends import capabilities

    preds, total = [], 0.0
    if not capabilities(backend).streaming:  # the torch module, lowered once
        import torch

        net = sf.to_torch(graph, dtype=torch.float64).eval()
        xt = torch.from_numpy(x)
        for i in range(x.shape[1]):
            start = time.perf_counter()
            with torch.no_grad():
                out = net(xt[:, i : i + 1])
            total += time.perf_counter() - start
            preds.append(int(out.amax(0).argmax(-1)[0]))
    else:
        from spikeflow.backends import Simulator

        sim = Simulator(graph, backend, sensor_size=sensor_size)
        for i in range(x.shape[1]):
            sim.reset()
            start = time.perf_counter()
            # from raw events the simulator bins them itself; n_steps keeps T when the last bins are empty
            out = sim.step(events[i], n_steps=x.shape[0]) if events else sim.step(x[:, i : i + 1])
            total += time.perf_counter() - start
            preds.append(int(_predict(out.output)[0]))
    return total / max(x.shape[1], 1), np.array(preds)


# ------------------------------------------------------------------------------- summaries


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def _reload_rows(reload: dict[str, dict[str, Any]], prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for kind, check in reload.items():
        same = "identical predictions" if check["same_predictions"] else "PREDICTIONS DIFFER"
        rows.append((f"{prefix}reloaded {kind}", f"{check['acc']:.2%}, {same}, max |score diff| {check['max_abs_diff']:.2e}"))
    return rows


def summary(result: dict[str, Any]) -> str:
    """A two-column table of a :func:`train_digits` result, with its ``"reload"`` checks and its
    ``"simulate"`` comparison (:func:`compare_backends`) when they were added."""
    cfg, rows = result["config"], []
    rows.append(("MLP network", f"64 -> {cfg['hidden']} LIF -> 10 LI, T={cfg['steps']} steps, dt={cfg['dt'] * 1e3:g} ms"))
    rows.append(("MLP data", f"sklearn digits: {len(result['data']['y_train'])} train / {len(result['data']['y_val'])} val / {len(result['data']['y_test'])} test"))
    rows.append(("MLP epochs", str(cfg["epochs"])))
    rows.append(("MLP test accuracy", f"{result['test_acc']:.2%}"))
    rows += _reload_rows(result.get("reload", {}), "MLP ")
    rows.append(("MLP training time", f"{result['train_seconds']:.1f} s"))
    for name, path in result["paths"].items():
        rows.append((f"file ({name})", str(path)))
    text = _table(rows)
    return text + ("\n\n" + backend_table({"MLP": result["simulate"]}) if "simulate" in result else "")


def backend_table(sims: dict[str, dict[str, Any]]) -> str:
    """The torch / numba-event comparison of :func:`compare_backends` reports, one row per network and backend."""
    from spikeflow.backends import capabilities

    head = ("network", "backend", "accuracy", "syn. events/sample", "neuron updates/sample", "time/sample", "batch 1 time/sample")
    rows, notes = [head], []
    for net, rep in sims.items():
        for backend in compared_backends():
            r = rep.get(backend, {})
            if "error" in r or not r:
                rows.append((net, backend, "failed", "-", "-", "-", "-"))
                notes.append(f"{net} on {backend}: {r.get('error', 'not run')}")
                continue
            dense = "" if capabilities(backend).event_driven else " (dense)"
            rows.append((net, backend, f"{r['acc']:.2%}", f"{r['synaptic_events_per_sample']:,.0f}{dense}",
                         f"{r['neuron_updates_per_sample']:,.0f}", f"{r['seconds_per_sample'] * 1e3:.3f} ms",
                         f"{r['batch1_seconds_per_sample'] * 1e3:.3f} ms"))
        if "differing_predictions" in rep:
            if rep["differing_predictions"] == 0:
                agree = f"identical predictions on all {rep['n']} test samples"
            else:
                agree = f"{rep['differing_predictions']} of {rep['n']} predictions DIFFER"
            batch1 = "same" if rep["batch1_same_predictions"] else "DIFFERENT"
            spikes = "identical" if rep["differing_spikes"] == 0 else f"{rep['differing_spikes']:,} DIFFER"
            notes.append(f"{net}: {agree}; hidden spike trains {spikes} ({rep['spikes_compared']:,} values); float64, "
                         f"max |output diff| {rep['max_abs_output_diff']:.2e}")
            notes.append(f"{net}: batch-1 runs on {rep['batch1_n']} samples ({rep['batch1_input']} input to numba-event) "
                         f"predict the {batch1} classes")
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  " + "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  " + "  ".join("-" * w for w in widths))
    return "\n".join(["simulation of the trained networks on their test sets (float64, torch no-grad forward vs numba-event):", *lines,
                      *("  " + n for n in notes)])
