"""``spikeflow train``: train the digits MLP with chosen options and save it to HDF5."""

from __future__ import annotations

from spikeflow import demo as stages
from spikeflow.cli._common import add_training_options

HELP = "train the digits MLP with chosen options and save it to HDF5"


def add_arguments(parser) -> None:
    defaults = stages.DIGITS_DEFAULTS
    add_training_options(parser, "out/train", defaults["epochs"])
    parser.add_argument("--hidden", type=int, default=None, help=f"hidden LIF neurons (default {defaults['hidden']})")
    parser.add_argument("--steps", type=int, default=None, help=f"time steps per sample (default {defaults['steps']})")
    parser.add_argument("--lr", type=float, default=None, help=f"learning rate (default {defaults['lr']})")
    parser.add_argument("--checkpoint", default=None, help="checkpoint file, written every epoch and resumed when present")


def run(args) -> int:
    options = {k: getattr(args, k) for k in ("hidden", "steps", "lr", "seed") if getattr(args, k) is not None}
    result = stages.train_digits(args.out, epochs=args.epochs, progress=not args.no_progress, checkpoint=args.checkpoint, **options)
    print("spikeflow train: spiking MLP on rate-coded handwritten digits")
    print(stages.summary(result))
    return 0
