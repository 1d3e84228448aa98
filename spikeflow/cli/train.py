"""``spikeflow train``: train a zoo network or a graph file on a registered event dataset, or (the
default, without ``--dataset``) the digits MLP on rate-coded digits, and save the result to HDF5.

``torchrun --nproc_per_node N -m spikeflow train ...`` trains data-parallel on N workers
(:mod:`spikeflow.train.distributed`); the result equals one process with the same batch size.
"""

from __future__ import annotations

import math
from pathlib import Path

from spikeflow import workflows as stages
from spikeflow.cli._common import load_graph
from spikeflow.errors import DataError

HELP = "train a zoo network or graph file on a registered event dataset (default: the digits MLP) and save it to HDF5"


def add_arguments(parser) -> None:
    from spikeflow.datasets import DATASETS
    from spikeflow.models import MODELS

    defaults = stages.DIGITS_DEFAULTS
    parser.add_argument("--out", default="out/train", help="output folder (default out/train)")
    parser.add_argument("--epochs", type=int, default=None, help=f"MLP training epochs (default {defaults['epochs']})")
    parser.add_argument("--seed", type=int, default=0, help="seed for the split, weights, spikes and shuffling")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--hidden", type=int, default=None, help=f"digits MLP: hidden LIF neurons (default {defaults['hidden']})")
    parser.add_argument("--steps", type=int, default=None, help=f"digits MLP: time steps per sample (default {defaults['steps']})")
    parser.add_argument("--lr", type=float, default=None, help=f"learning rate (default {defaults['lr']})")
    parser.add_argument("--checkpoint", default=None, help="checkpoint file, written every epoch and resumed when present")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default=None, help="registered event dataset to train on")
    parser.add_argument("--root", default="data", help="dataset folder (default data; spikeflow never downloads)")
    parser.add_argument("--bins", type=int, default=8, help="time steps per recording when training on events (default 8)")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per batch on an event dataset (default 64)")
    parser.add_argument("--model", choices=sorted(MODELS), default=None, help="zoo network to train on the dataset")
    parser.add_argument("--graph", default=None, help="graph file (.h5 or .nir) to train on the dataset instead of a zoo network")


def run(args) -> int:
    from spikeflow.train.distributed import init_workers, launched_by_torchrun, shutdown_workers

    # under torchrun every worker runs this command; they train one network data-parallel
    workers = init_workers() if launched_by_torchrun() else None
    try:
        if args.dataset is None:
            if args.model is not None or args.graph is not None:
                raise DataError("--model / --graph need --dataset (without one, train trains the digits MLP)")
            options = {k: getattr(args, k) for k in ("hidden", "steps", "lr", "seed") if getattr(args, k) is not None}
            result = stages.train_digits(args.out, epochs=args.epochs, progress=not args.no_progress, checkpoint=args.checkpoint,
                                         workers=workers, **options)
        else:
            result = train_on_events(args, workers)
    finally:
        shutdown_workers()
    if workers is not None and not workers.is_main:
        return 0
    label = "" if workers is None else f" on {workers.world_size} workers"
    if args.dataset is None:
        print(f"spikeflow train: spiking MLP on rate-coded handwritten digits{label}")
        print(stages.summary(result))
        return 0
    print(f"spikeflow train: {result['name']} on {args.dataset} ({result['bins']} bins){label}")
    print(f"  test accuracy  {result['test_acc']:.2%} ({result['n_test']} samples)")
    print(f"  file (hdf5)    {result['path']}")
    return 0


def train_on_events(args, workers=None) -> dict:
    """Train ``--model`` or ``--graph`` on ``--dataset`` binned to ``--bins`` steps; save it; test accuracy.
    With ``workers`` (torchrun), data-parallel; the main worker saves."""
    import torch

    import spikeflow as sf
    from spikeflow.datasets import dataset
    from spikeflow.models import build

    if (args.model is None) == (args.graph is None):
        raise DataError("train on a dataset: give exactly one of --model NAME or --graph FILE")
    if args.bins < 1:
        raise DataError(f"--bins: expected an integer >= 1, got {args.bins}")
    probe = dataset(args.dataset, args.root, train=True)
    sensor = tuple(probe.sensor_size)
    if args.graph is not None:
        graph, name = load_graph(args.graph), Path(args.graph).stem
    else:
        graph, name = build(args.model, **_zoo_options(args.model, sensor, args.bins, args.seed)), args.model
    flat = graph.flatten()
    if len(flat.inputs) != 1:
        raise DataError(f"{name}: training on events needs one Input node, the graph has {flat.inputs}")
    shape = tuple(flat.nodes[flat.inputs[0]].shape)
    frames = _frames_transform(sensor, args.bins, shape, name)
    train, test = (dataset(args.dataset, args.root, train=split, transform=frames) for split in (True, False))
    make_trainer = sf.Trainer
    if workers is not None:
        from functools import partial

        from spikeflow.train.distributed import DistributedTrainer

        make_trainer = partial(DistributedTrainer, workers=workers)
    trainer = make_trainer(graph, loss="membrane_max_ce", lr=args.lr or 3e-3, epochs=args.epochs or 5, batch_size=args.batch_size,
                         seed=args.seed, checkpoint=args.checkpoint, progress=not args.no_progress)
    torch.manual_seed(args.seed)
    trainer.fit(train, resume=args.checkpoint is not None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}_{args.dataset}.h5"
    if workers is None or workers.is_main:
        sf.save(sf.to_graph(trainer.model), path)
    test_acc = trainer.evaluate(test)
    return {"name": name, "bins": args.bins, "test_acc": test_acc["acc"], "n_test": test_acc["n"], "path": path}


def _zoo_options(model: str, sensor: tuple, bins: int, seed: int) -> dict:
    """A zoo network sized for the dataset's sensor (W, H, P)."""
    if model == "saccade-cnn":
        if sensor != (34, 34, 2):
            raise DataError(f"saccade-cnn takes 34x34x2 frames; the dataset's sensor is {sensor}: use --model mlp or a graph file")
        return {"bins": bins, "seed": seed}
    if model == "mlp":
        return {"n_in": math.prod(sensor), "hidden": 128, "seed": seed}
    raise DataError(f"{model} is not an event-frame network; on event datasets use saccade-cnn, mlp or a graph file")


def _frames_transform(sensor: tuple, bins: int, shape: tuple, name: str):
    """Events -> ``[bins, *shape]`` float32 frames (tonic's ToFrame, reshaped when the network takes a flat vector)."""
    import numpy as np
    import tonic

    if math.prod(shape) != math.prod(sensor):
        raise DataError(f"{name}: its Input takes {shape} ({math.prod(shape)} values), the sensor gives {sensor} ({math.prod(sensor)})")
    to_frame = tonic.transforms.ToFrame(sensor_size=sensor, n_time_bins=bins)

    def transform(events):
        return np.asarray(to_frame(events), dtype=np.float32).reshape((bins, *shape))

    return transform
