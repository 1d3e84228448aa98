"""``spikeflow demo``: the demo pipeline (:data:`spikeflow.pipeline.DEMO`, shipped in the package):
DigitSaccades, a spiking MLP trained, three simulators, early exit, both hardware exports and the
HTML report. The same as ``spikeflow run`` on that file (``make demo``), from any installed spikeflow."""

from __future__ import annotations

from spikeflow.cli.run import add_stage_options, print_result

HELP = "run the demo pipeline (data, training, 3 simulators, early exit, 2 hardware exports, HTML report), reusing cached stages"


def add_arguments(parser) -> None:
    add_stage_options(parser)
    parser.add_argument("--out", default=None, help="run folder (default out/demo)")
    parser.add_argument("--data", default=None, help="DigitSaccades folder, generated there on first use (default data)")


def run(args) -> int:
    from spikeflow.pipeline import DEMO, run_pipeline

    overrides = {table: {key: value} for table, key, value in (("run", "out", args.out), ("data", "root", args.data)) if value is not None}
    if not args.quiet:
        print(f"spikeflow demo: {DEMO}")
    result = run_pipeline(DEMO, from_stage=args.from_stage, only=args.only, quiet=args.quiet, overrides=overrides or None)
    return print_result(result, args.quiet)
