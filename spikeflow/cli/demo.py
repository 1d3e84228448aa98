"""``spikeflow demo``: train a spiking MLP on digits and a spiking CNN on DigitSaccades events, save,
reload, simulate with numba-event and draw pictures (:func:`spikeflow.demo.run_demo`)."""

from __future__ import annotations

import sys

from spikeflow import demo as stages
from spikeflow.cli._common import add_training_options

HELP = "train a spiking MLP on digits and a spiking CNN on DigitSaccades events, save, reload, simulate with numba-event, draw pictures"


def add_arguments(parser) -> None:
    add_training_options(parser, "out/demo", stages.DIGITS_DEFAULTS["epochs"])
    parser.add_argument("--cnn-epochs", type=int, default=None, help=f"CNN training epochs (default {stages.CNN_DEFAULTS['epochs']})")
    parser.add_argument("--bins", type=int, default=None, help=f"CNN time bins per recording (default {stages.CNN_DEFAULTS['bins']})")
    parser.add_argument("--subset", type=int, default=None, help="CNN: only the first N digits of each DigitSaccades split (quick looks)")
    parser.add_argument("--data", default=None, help="DigitSaccades cache folder (default OUT/data)")
    parser.add_argument("--no-cnn", action="store_true", help="skip the CNN stage")


def run(args) -> int:
    cnn_options = {k: v for k, v in (("bins", args.bins), ("subset", args.subset)) if v is not None}
    result = stages.run_demo(args.out, epochs=args.epochs, progress=not args.no_progress, cnn=not args.no_cnn,
                             cnn_epochs=args.cnn_epochs, cnn_options=cnn_options, data_root=args.data, seed=args.seed)
    print("spikeflow demo: a spiking MLP on rate-coded digits and a spiking CNN on DigitSaccades events")
    print(stages.summary(result))
    reloads = list(result["reload"].values()) + list(result.get("cnn", {}).get("reload", {}).values())
    if not all(c["same_predictions"] for c in reloads):
        print("spikeflow demo: a reloaded file does not reproduce the trained network's predictions", file=sys.stderr)
        return 1
    return 0
