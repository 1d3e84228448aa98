"""``spikeflow sweep CONFIG``: a hyper-parameter sweep on Ray (see :mod:`spikeflow.scale.sweep`)."""

from __future__ import annotations

from dataclasses import replace

HELP = "run a hyper-parameter sweep (TOML config) on Ray: grid or Optuna, results table and Pareto plot (needs spikeflow[ray])"


def add_arguments(parser) -> None:
    parser.add_argument("config", help="sweep configuration (.toml); see spikeflow.scale.config")
    parser.add_argument("--out", default="out/sweep", help="sweep folder; finished trials there are kept and skipped (default out/sweep)")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    parser.add_argument("--workers", type=int, default=None, help="worker actors (default: the config's, else the cluster's CPUs)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
    from spikeflow.errors import DataError
    from spikeflow.scale.config import load_config
    from spikeflow.scale.sweep import run_sweep, summary

    config = load_config(args.config)
    if args.workers is not None:
        if args.workers < 1:
            raise DataError(f"--workers: expected at least 1, got {args.workers}")
        config = replace(config, workers=args.workers)
    result = run_sweep(config, args.out, address=args.address, num_cpus=args.num_cpus, progress=not args.no_progress)
    print(summary(result, config.objectives))
    for name, path in result["paths"].items():
        print(f"wrote {name}: {path}")
    return 0 if all(r["status"] == "ok" for r in result["records"]) else 1
