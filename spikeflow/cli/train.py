"""``spikeflow train``: train the digits MLP with chosen options and save it to HDF5.

``torchrun --nproc_per_node N -m spikeflow train ...`` trains it data-parallel on N workers
(:mod:`spikeflow.train.distributed`); the result equals one process with the same batch size.
"""

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
    from spikeflow.train.distributed import init_workers, launched_by_torchrun, shutdown_workers

    options = {k: getattr(args, k) for k in ("hidden", "steps", "lr", "seed") if getattr(args, k) is not None}
    # under torchrun every worker runs this command; they train one network data-parallel
    workers = init_workers() if launched_by_torchrun() else None
    try:
        result = stages.train_digits(args.out, epochs=args.epochs, progress=not args.no_progress, checkpoint=args.checkpoint,
                                     workers=workers, **options)
    finally:
        shutdown_workers()
    if workers is None or workers.is_main:
        label = "" if workers is None else f" on {workers.world_size} workers"
        print(f"spikeflow train: spiking MLP on rate-coded handwritten digits{label}")
        print(stages.summary(result))
    return 0
