"""The ``spikeflow`` command line: argument parsing, and calls into the modules that do the work.

Subcommands: ``demo`` (:func:`spikeflow.demo.run_demo`: train a spiking MLP on rate-coded digits
and a spiking CNN on DigitSaccades events, save and reload them, run them with numba-event next to
torch, draw pictures), ``train`` (the digits MLP with options), ``info`` (what a graph file holds),
``bench`` (run the benchmark scripts), ``simulate`` (a graph file on input spikes from a ``.npy``
file), ``export`` (to a registered hardware target), and ``convert``, which points to the Python call
(a model file cannot be loaded without unpickling it).

Run as ``spikeflow ...`` or ``python -m spikeflow.cli ...``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

from spikeflow import demo
from spikeflow.errors import FormatError, SpikeflowError

EXIT_UNAVAILABLE = 2


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

    from spikeflow.ir import nodes as n

    flat = graph.flatten()
    shapes = graph.shapes()
    rows = [("node", "type", "output shape", "params")]
    total = 0
    for name in flat.order():
        node = flat.nodes[name]
        values = [getattr(node, f.name) for f in fields(node)]
        count = sum(int(v.nnz) if n.is_sparse(v) else int(np.size(v)) for v in values if isinstance(v, np.ndarray) or n.is_sparse(v))
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
    cnn_options = {k: v for k, v in (("bins", args.bins), ("subset", args.subset)) if v is not None}
    result = demo.run_demo(args.out, epochs=args.epochs, progress=not args.no_progress, cnn=not args.no_cnn,
                           cnn_epochs=args.cnn_epochs, cnn_options=cnn_options, data_root=args.data, seed=args.seed)
    print("spikeflow demo: a spiking MLP on rate-coded digits and a spiking CNN on DigitSaccades events")
    print(demo.summary(result))
    reloads = list(result["reload"].values()) + list(result.get("cnn", {}).get("reload", {}).values())
    if not all(c["same_predictions"] for c in reloads):
        print("spikeflow demo: a reloaded file does not reproduce the trained network's predictions", file=sys.stderr)
        return 1
    return 0


def _cmd_train(args) -> int:
    options = {k: getattr(args, k) for k in ("hidden", "steps", "lr", "seed") if getattr(args, k) is not None}
    result = demo.train_digits(args.out, epochs=args.epochs, progress=not args.no_progress, checkpoint=args.checkpoint, **options)
    print("spikeflow train: spiking MLP on rate-coded handwritten digits")
    print(demo.summary(result))
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


def _cmd_simulate(args) -> int:
    import spikeflow as sf
    from spikeflow._atomic import atomic_path

    graph = _load_graph(Path(args.path), args.dt)
    try:
        x = np.load(args.inputs, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise FormatError(f"{args.inputs}: not a readable .npy array ({err})") from None
    res = sf.simulate(graph, x, backend=args.backend, record=args.record, precision=args.precision)
    output = np.asarray(res.output)
    print(f"{args.backend}: output {output.shape}, sum over time and batch per unit:")
    print(np.array2string(output.reshape(output.shape[0], output.shape[1], -1).sum((0, 1)), precision=3))
    for key, value in res.stats.items():
        print(f"  {key}: {value}")
    if args.out:
        arrays = {"output": output, **{f"record/{k}": np.asarray(v) for k, v in res.spikes.items()}}
        arrays.update({f"stats/{k}": np.asarray(v) for k, v in res.stats.items() if np.isscalar(v)})
        with atomic_path(args.out) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        print(f"wrote {args.out}")
    return 0


def _cmd_export(args) -> int:
    import spikeflow as sf

    report = sf.export(_load_graph(Path(args.path), args.dt), target=args.target, path=args.out)
    print(report)
    return 0


def _cmd_sweep(args) -> int:
    from spikeflow.scale.config import load_config
    from spikeflow.scale.sweep import run_sweep, summary

    config = load_config(args.config)
    if args.workers is not None:
        from dataclasses import replace

        config = replace(config, workers=args.workers)
    result = run_sweep(config, args.out, address=args.address, num_cpus=args.num_cpus, progress=not args.no_progress)
    print(summary(result, config.objectives))
    for name, path in result["paths"].items():
        print(f"wrote {name}: {path}")
    return 0 if all(r["status"] == "ok" for r in result["records"]) else 1


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
        p.add_argument("--epochs", type=int, default=None, help=f"MLP training epochs (default {demo.DIGITS_DEFAULTS['epochs']})")
        p.add_argument("--seed", type=int, default=0, help="seed for the split, weights, spikes and shuffling")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")

    p = sub.add_parser("demo", help="train a spiking MLP on digits and a spiking CNN on DigitSaccades events, "
                                     "save, reload, simulate with numba-event, draw pictures")
    add_training_options(p, "out/demo")
    p.add_argument("--cnn-epochs", type=int, default=None, help=f"CNN training epochs (default {demo.CNN_DEFAULTS['epochs']})")
    p.add_argument("--bins", type=int, default=None, help=f"CNN time bins per recording (default {demo.CNN_DEFAULTS['bins']})")
    p.add_argument("--subset", type=int, default=None, help="CNN: only the first N digits of each DigitSaccades split (quick looks)")
    p.add_argument("--data", default=None, help="DigitSaccades cache folder (default OUT/data)")
    p.add_argument("--no-cnn", action="store_true", help="skip the CNN stage")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("train", help="train the digits MLP with chosen options and save it to HDF5")
    add_training_options(p, "out/train")
    p.add_argument("--hidden", type=int, default=None, help=f"hidden LIF neurons (default {demo.DIGITS_DEFAULTS['hidden']})")
    p.add_argument("--steps", type=int, default=None, help=f"time steps per sample (default {demo.DIGITS_DEFAULTS['steps']})")
    p.add_argument("--lr", type=float, default=None, help=f"learning rate (default {demo.DIGITS_DEFAULTS['lr']})")
    p.add_argument("--checkpoint", default=None, help="checkpoint file, written every epoch and resumed when present")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("simulate", help="simulate a graph file on input spikes from a .npy file")
    p.add_argument("path", help="graph file (.h5 or .nir)")
    p.add_argument("inputs", help=".npy file holding the input [T, B, ...] (no pickles)")
    p.add_argument("--backend", default="numba-event", help="torch, numba-clock, numba-event or brian2")
    p.add_argument("--precision", default="float64", help="float32 or float64")
    p.add_argument("--record", nargs="*", default=[], help="nodes whose outputs to keep")
    p.add_argument("--out", default=None, help="write output, recorded nodes and stats to this .npz file")
    p.add_argument("--dt", type=float, default=None, help="time step for NIR files without one")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("export", help="export a graph file to a hardware target")
    p.add_argument("path", help="graph file (.h5 or .nir)")
    p.add_argument("--target", default="spinnaker2", help="hardware target")
    p.add_argument("--out", default="out/export", help="output folder")
    p.add_argument("--dt", type=float, default=None, help="time step for NIR files without one")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("convert", help="convert a trained non-spiking model into a spiking graph")
    p.add_argument("path", help="model file")
    p.add_argument("--to", default="snn", help="conversion target")
    p.set_defaults(func=_unavailable(lambda a: (
        "conversion is not available from the command line: a model file cannot be loaded without unpickling it; "
        "from Python call spikeflow.convert.ann_to_snn(model)")))

    p = sub.add_parser("info", help="print a graph file's nodes, shapes and parameter counts")
    p.add_argument("path", help="graph file (.h5 or .nir)")
    p.add_argument("--dt", type=float, default=None, help="time step for NIR files that do not store one")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("sweep", help="run a hyper-parameter sweep (TOML config) on Ray: a grid or Optuna, "
                                      "results table and Pareto plot (needs spikeflow[ray])")
    p.add_argument("config", help="sweep configuration (.toml); see spikeflow.scale.config")
    p.add_argument("--out", default="out/sweep", help="sweep folder; finished trials there are kept and skipped (default out/sweep)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--workers", type=int, default=None, help="worker actors (default: the config's, else the cluster's CPUs)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_sweep)

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
