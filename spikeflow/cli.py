"""The ``spikeflow`` command line, and the digits demo it runs.

Subcommands: ``demo`` (train a spiking MLP on rate-coded handwritten digits, save it to HDF5 and
NIR, reload both and check them, draw pictures), ``train`` (the same training with options),
``info`` (what a graph file holds), ``bench`` (run the benchmark scripts), and ``simulate``,
``export``, ``convert``, which report that their backend or target is not available here.

Run as ``spikeflow ...`` or ``python -m spikeflow.cli ...``.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from spikeflow.errors import DataError, FormatError, SpikeflowError

# hyper-parameters of the digits MLP (64 -> hidden LIF -> 10 LI), chosen to train in seconds
DIGITS_DEFAULTS = {
    "hidden": 128, "steps": 20, "epochs": 15, "lr": 2e-3, "batch_size": 32,
    "tau": 10e-3, "tau_out": 20e-3, "dt": 1e-3, "seed": 0,
}
HIDDEN = "lif2"  # name Graph.sequential gives the hidden LIF layer (index 2 in the chain)
EXIT_UNAVAILABLE = 2


# ------------------------------------------------------------------------------ the digits demo


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


def _kaiming_uniform(rng: np.random.Generator, n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    # torch.nn.Linear's default: kaiming-uniform with a=sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    bound = 1.0 / math.sqrt(n_in)
    return rng.uniform(-bound, bound, (n_out, n_in)), rng.uniform(-bound, bound, n_out)


def digits_mlp(hidden: int = 128, tau: float = 10e-3, tau_out: float = 20e-3, dt: float = 1e-3, seed: int = 0):
    """The demo network as an IR graph: 64 inputs -> ``hidden`` LIF -> 10 leaky integrators.

    ``r = tau / dt`` makes each input add its full weight to the membrane in one Euler step
    (``v <- (1 - dt/tau) v + W x``), the convention of snnTorch's ``Leaky``.
    """
    import spikeflow as sf

    rng = np.random.default_rng(seed)
    w1, b1 = _kaiming_uniform(rng, hidden, 64)
    w2, b2 = _kaiming_uniform(rng, 10, hidden)
    return sf.Graph.sequential(
        sf.ir.Input(shape=(64,)),
        sf.ir.Affine(weight=w1, bias=b1),
        sf.ir.LIF(tau=np.full(hidden, tau), v_threshold=np.ones(hidden), r=np.full(hidden, tau / dt)),
        sf.ir.Affine(weight=w2, bias=b2),
        sf.ir.LI(tau=np.full(10, tau_out), r=np.full(10, tau_out / dt)),
        dt=dt,
        metadata={"model": "digits-mlp", "input": "rate-coded sklearn digits, 8x8 scaled to [0, 1]"},
    )


def _encoder(steps: int):
    from spikeflow.train.trainer import RateEncoder

    return RateEncoder(steps)


def _scores(net, x):
    """Class scores of the LI output: maximum membrane potential over time."""
    import torch

    with torch.no_grad():
        return net(x.to(next(net.parameters()).dtype)).amax(0)


def train_digits(out_dir: str | Path, epochs: int | None = None, progress: bool = True, checkpoint: str | Path | None = None,
                 **options: Any) -> dict[str, Any]:
    """Train the digits MLP and save it to ``out_dir/digits_mlp.h5``.

    Args:
        out_dir: folder for the trained graph.
        epochs: training epochs (default ``DIGITS_DEFAULTS["epochs"]``).
        progress: show tqdm bars.
        checkpoint: trainer checkpoint file; an existing one is resumed.
        **options: overrides of :data:`DIGITS_DEFAULTS` (hidden, steps, lr, batch_size, tau, ...).

    Returns:
        ``{"graph", "net", "trainer", "data", "config", "test_acc", "train_seconds", "paths"}``.
    """
    import torch

    import spikeflow as sf
    from spikeflow.train import RateUpperBound, Trainer

    unknown = sorted(set(options) - set(DIGITS_DEFAULTS))
    if unknown:
        raise DataError(f"train_digits: unknown option {unknown[0]!r}; known: {sorted(DIGITS_DEFAULTS)}")
    cfg = {**DIGITS_DEFAULTS, **options, "epochs": DIGITS_DEFAULTS["epochs"] if epochs is None else int(epochs)}
    out = Path(out_dir)
    data = digits_split(cfg["seed"])
    # float32 trains several times faster than the float64 default and loses nothing here
    net = sf.to_torch(digits_mlp(cfg["hidden"], cfg["tau"], cfg["tau_out"], cfg["dt"], cfg["seed"]), dtype=torch.float32)
    trainer = Trainer(
        net, loss="membrane_max_ce", lr=cfg["lr"], epochs=cfg["epochs"], batch_size=cfg["batch_size"],
        seed=cfg["seed"], encoder=_encoder(cfg["steps"]), progress=progress, checkpoint=checkpoint,
        # keeps the hidden layer from saturating (no neuron above 30% of steps on average)
        regularizers=[RateUpperBound(HIDDEN, max_rate=0.3, weight=1.0)],
    )
    start = time.perf_counter()
    trainer.fit((data["x_train"], data["y_train"]), (data["x_val"], data["y_val"]), resume=checkpoint is not None)
    seconds = time.perf_counter() - start
    # the test spikes are drawn once, so every reloaded copy is judged on identical input
    x_test = _encoder(cfg["steps"])(torch.as_tensor(data["x_test"]), torch.Generator().manual_seed(cfg["seed"] + 10))
    y_test = torch.as_tensor(data["y_test"])
    pred = _scores(net, x_test).argmax(-1)
    graph = sf.to_graph(net)
    paths = {"hdf5": out / "digits_mlp.h5"}
    sf.save(graph, paths["hdf5"])
    return {
        "graph": graph, "net": net, "trainer": trainer, "data": data, "config": cfg,
        "x_test": x_test, "y_test": y_test, "pred": pred,
        "test_acc": float((pred == y_test).float().mean()), "train_seconds": seconds, "paths": paths,
    }


def _reload_check(result: dict[str, Any], out: Path) -> dict[str, Any]:
    """Save to NIR, reload the HDF5 and NIR files, and compare their predictions with the trained net."""
    import torch

    import spikeflow as sf

    paths = result["paths"]
    paths["nir"] = out / "digits_mlp.nir"
    sf.to_nir(result["graph"], paths["nir"])
    reference = _scores(result["net"], result["x_test"])
    checks = {}
    for kind, graph in (("hdf5", sf.load(paths["hdf5"])), ("nir", sf.from_nir(paths["nir"]))):
        scores = _scores(sf.to_torch(graph, dtype=torch.float32), result["x_test"])
        pred = scores.argmax(-1)
        checks[kind] = {
            "acc": float((pred == result["y_test"]).float().mean()),
            "same_predictions": bool(torch.equal(pred, result["pred"])),
            "max_abs_diff": float((scores.double() - reference.double()).abs().max()),
        }
    return checks


def _demo_plots(result: dict[str, Any], out: Path) -> dict[str, Path]:
    import torch

    from spikeflow import plots

    net, x, cfg = result["net"], result["x_test"][:, :1], result["config"]
    with torch.no_grad():
        v, record = net.run(x.to(next(net.parameters()).dtype), record=(HIDDEN,))
    label = int(result["y_test"][0])
    return {
        "raster": plots.spike_raster(
            {"input": x[:, 0], "hidden": record[HIDDEN][:, 0]}, out / "raster.png", dt=cfg["dt"],
            title=f"test sample 0 (digit {label}): input and hidden spikes"),
        "membrane": plots.membrane_traces(
            v[:, 0], out / "membrane.png", dt=cfg["dt"], labels=[str(d) for d in range(10)],
            title=f"output membrane potentials, test sample 0 (digit {label})"),
        "curves": plots.training_curves(result["trainer"].history, out / "training.png", title="digits MLP"),
    }


def run_demo(out_dir: str | Path = "out/demo", epochs: int | None = None, progress: bool = True, **options: Any) -> dict[str, Any]:
    """Train the spiking digits MLP, save it to HDF5 and NIR, reload both, check, and draw.

    Args:
        out_dir: folder for ``digits_mlp.h5``, ``digits_mlp.nir`` and the PNG pictures.
        epochs: training epochs (default ``DIGITS_DEFAULTS["epochs"]``).
        progress: show tqdm bars.
        **options: overrides of :data:`DIGITS_DEFAULTS`.

    Returns:
        The :func:`train_digits` result plus ``"reload"`` (per file: accuracy, whether the
        predictions equal the trained network's, largest score difference), ``"seconds"`` and
        more ``"paths"`` (nir, raster, membrane, curves).
    """
    start = time.perf_counter()
    out = Path(out_dir)
    result = train_digits(out, epochs=epochs, progress=progress, **options)
    result["reload"] = _reload_check(result, out)
    result["paths"].update(_demo_plots(result, out))
    result["seconds"] = time.perf_counter() - start
    return result


def summary(result: dict[str, Any]) -> str:
    """A short two-column table of a demo or training result."""
    cfg, rows = result["config"], []
    rows.append(("network", f"64 -> {cfg['hidden']} LIF -> 10 LI, T={cfg['steps']} steps, dt={cfg['dt'] * 1e3:g} ms"))
    rows.append(("data", f"sklearn digits: {len(result['data']['y_train'])} train / {len(result['data']['y_val'])} val / {len(result['data']['y_test'])} test"))
    rows.append(("epochs", str(cfg["epochs"])))
    rows.append(("test accuracy", f"{result['test_acc']:.2%}"))
    for kind, check in result.get("reload", {}).items():
        same = "identical predictions" if check["same_predictions"] else "PREDICTIONS DIFFER"
        rows.append((f"reloaded {kind}", f"{check['acc']:.2%}, {same}, max |score diff| {check['max_abs_diff']:.2e}"))
    rows.append(("training time", f"{result['train_seconds']:.1f} s"))
    if "seconds" in result:
        rows.append(("total time", f"{result['seconds']:.1f} s"))
    for name, path in result["paths"].items():
        rows.append((f"file ({name})", str(path)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


# ---------------------------------------------------------------------------------- info


def _load_graph(path: Path, dt: float | None = None):
    import spikeflow as sf

    if not path.exists():
        raise FormatError(f"{path}: no such file")
    if path.suffix.lower() in (".h5", ".hdf5"):
        return sf.load(path)
    if path.suffix.lower() == ".nir":
        return sf.from_nir(path, dt=dt)
    raise FormatError(f"{path}: unknown graph file type {path.suffix!r}; expected .h5, .hdf5 or .nir")


def graph_info(graph) -> str:
    """A table of the graph's nodes: name, type, output shape and number of parameter values."""
    from dataclasses import fields

    flat = graph.flatten()
    shapes = graph.shapes()
    rows = [("node", "type", "output shape", "params")]
    total = 0
    for name in flat.order():
        node = flat.nodes[name]
        count = sum(int(np.size(getattr(node, f.name))) for f in fields(node) if isinstance(getattr(node, f.name), np.ndarray))
        total += count
        rows.append((name, type(node).__name__, str(tuple(shapes[name])), str(count)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"graph: {len(flat.nodes)} nodes, {len(flat.edges)} edges, dt={graph.dt:g} s, integration={graph.integration!r}"]
    lines += ["  " + "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.append(f"total parameter values: {total}")
    if graph.metadata:
        lines.append(f"metadata: {graph.metadata}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- commands


def _cmd_demo(args) -> int:
    result = run_demo(args.out, epochs=args.epochs, progress=not args.no_progress, seed=args.seed)
    print("spikeflow demo: spiking MLP on rate-coded handwritten digits")
    print(summary(result))
    if not all(c["same_predictions"] for c in result["reload"].values()):
        print("spikeflow demo: a reloaded file does not reproduce the trained network's predictions", file=sys.stderr)
        return 1
    return 0


def _cmd_train(args) -> int:
    options = {k: getattr(args, k) for k in ("hidden", "steps", "lr", "seed") if getattr(args, k) is not None}
    result = train_digits(args.out, epochs=args.epochs, progress=not args.no_progress, checkpoint=args.checkpoint, **options)
    print("spikeflow train: spiking MLP on rate-coded handwritten digits")
    print(summary(result))
    return 0


def _cmd_info(args) -> int:
    print(graph_info(_load_graph(Path(args.path), args.dt)))
    return 0


def _cmd_bench(args) -> int:
    candidates = [Path.cwd() / "benchmarks" / "run_all.py", Path(__file__).resolve().parents[1] / "benchmarks" / "run_all.py"]
    script = next((p for p in candidates if p.is_file()), None)
    if script is None:
        print("spikeflow bench: benchmarks/run_all.py not found (run from a source checkout)", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return subprocess.call([sys.executable, str(script)], cwd=script.parent.parent)


def _unavailable(what):
    """A command whose backend or target this command line cannot run yet: exit status 2."""

    def command(args) -> int:
        print(f"spikeflow {args.command}: {what(args)}", file=sys.stderr)
        return EXIT_UNAVAILABLE

    return command


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="spikeflow", description="Spiking networks: one graph IR, trained in PyTorch, exchanged through NIR.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_training_options(p, out_default):
        p.add_argument("--out", default=out_default, help=f"output folder (default {out_default})")
        p.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {DIGITS_DEFAULTS['epochs']})")
        p.add_argument("--seed", type=int, default=0, help="seed for the split, weights, spikes and shuffling")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")

    p = sub.add_parser("demo", help="train a spiking MLP on handwritten digits, save and reload it, draw pictures")
    add_training_options(p, "out/demo")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("train", help="train the digits MLP with chosen options and save it to HDF5")
    add_training_options(p, "out/train")
    p.add_argument("--hidden", type=int, default=None, help=f"hidden LIF neurons (default {DIGITS_DEFAULTS['hidden']})")
    p.add_argument("--steps", type=int, default=None, help=f"time steps per sample (default {DIGITS_DEFAULTS['steps']})")
    p.add_argument("--lr", type=float, default=None, help=f"learning rate (default {DIGITS_DEFAULTS['lr']})")
    p.add_argument("--checkpoint", default=None, help="checkpoint file, written every epoch and resumed when present")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("simulate", help="simulate a graph file on a backend")
    p.add_argument("path", help="graph file (.h5 or .nir)")
    p.add_argument("--backend", default="numba-event", help="simulator backend")
    p.set_defaults(func=_unavailable(lambda a: (
        f"backend {a.backend!r} is not available from the command line in this installation; "
        f"from Python call spikeflow.simulate(graph, inputs, backend={a.backend!r})")))

    p = sub.add_parser("export", help="export a graph file to a hardware target")
    p.add_argument("path", help="graph file (.h5 or .nir)")
    p.add_argument("--target", default="spinnaker2", help="hardware target")
    p.add_argument("--out", default="out/export", help="output folder")
    p.set_defaults(func=_unavailable(lambda a: (
        f"target {a.target!r} is not available from the command line in this installation; "
        f"from Python call spikeflow.export(graph, target={a.target!r}, path=...)")))

    p = sub.add_parser("convert", help="convert a trained non-spiking model into a spiking graph")
    p.add_argument("path", help="model file")
    p.add_argument("--to", default="snn", help="conversion target")
    p.set_defaults(func=_unavailable(lambda a: f"conversion target {a.to!r} is not available in this installation"))

    p = sub.add_parser("info", help="print a graph file's nodes, shapes and parameter counts")
    p.add_argument("path", help="graph file (.h5 or .nir)")
    p.add_argument("--dt", type=float, default=None, help="time step for NIR files that do not store one")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("bench", help="run the benchmark scripts (benchmarks/run_all.py)")
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``spikeflow`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpikeflowError as err:
        print(f"spikeflow {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
