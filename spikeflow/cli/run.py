"""``spikeflow run PIPELINE.toml``: data, model, training, evaluation, early exit, exports, report."""

from __future__ import annotations

HELP = "run a pipeline file (data, model, train, evaluate, early exit, export, report), reusing cached stages"


def add_arguments(parser) -> None:
    parser.add_argument("pipeline", help="the pipeline TOML file (docs/pipeline.md)")
    add_stage_options(parser)


def add_stage_options(parser) -> None:
    """``--from``, ``--only`` and ``--quiet`` (``run`` and ``demo``)."""
    from spikeflow.pipeline import STAGES

    which = parser.add_mutually_exclusive_group()
    which.add_argument("--from", dest="from_stage", choices=STAGES, default=None, help="rerun this stage and every later one")
    which.add_argument("--only", choices=STAGES, default=None, help="rerun only this stage (the earlier ones must be cached)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or stage lines; print only the report path")


def run(args) -> int:
    from spikeflow.pipeline import run_pipeline

    result = run_pipeline(args.pipeline, from_stage=args.from_stage, only=args.only, quiet=args.quiet)
    return print_result(result, args.quiet)


def print_result(result: dict, quiet: bool) -> int:
    """Stage times and the run folder (unless quiet), then the report's path (or run.json's)."""
    if not quiet:
        stages = ", ".join(f"{k} {'cached' if k in result['cached'] else f'{v:.1f} s'}" for k, v in result["seconds"].items())
        print(f"spikeflow run: {stages}; total {result['total_seconds']:.1f} s")
        print(f"run folder: {result['out']}")
    print(result["report"] if result["report"] else f"{result['out'] / 'run.json'}")
    return 0
