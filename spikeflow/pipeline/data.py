"""The data stage's work: a registered event dataset as float32 frames, split and limited."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from spikeflow._progress import progress_bar
from spikeflow.errors import DataError

N_EXAMPLES = 4  # raw test recordings kept for the report's event frames


def split_validation(x: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple[tuple, tuple]:
    """``(x, y)`` cut (seeded) into train and validation parts, each in the original order."""
    perm = np.random.default_rng(seed).permutation(len(y))
    n_val = int(round(fraction * len(y)))
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return (x[train], y[train]), (x[val], y[val])


def _open(name: str, root: str, train: bool, limit: int, options: dict[str, Any], progress: bool):
    from spikeflow.datasets import dataset
    from spikeflow.pipeline.schema import GENERATED_DATASETS

    if name in GENERATED_DATASETS:  # generated sets make only the first ``subset`` digits
        return dataset(name, root, train=train, subset=limit or None, progress=progress, **options)
    return dataset(name, root, train=train, **options)


def split_frames(ds, bins: int, limit: int, progress: bool, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The first ``limit`` recordings (0: all) as ``[N, bins, P, H, W]`` float32 frames and labels."""
    n = len(ds) if not limit else min(limit, len(ds))
    if hasattr(ds, "frames"):  # the generated sets bin their whole store at once
        x, y = ds.frames(bins)
        return np.ascontiguousarray(x[:n], dtype=np.float32), np.asarray(y[:n], dtype=np.int64)
    import tonic

    to_frame = tonic.transforms.ToFrame(sensor_size=tuple(ds.sensor_size), n_time_bins=bins)
    xs, ys = [], []
    for i in progress_bar(range(n), desc=f"data: binning {what}", enabled=progress, unit="rec"):
        events, label = ds[i]
        xs.append(np.asarray(to_frame(events), dtype=np.float32))
        ys.append(int(label))
    if not xs:
        raise DataError(f"the {what} split is empty")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def step_us(ds, bins: int) -> float | None:
    """The real duration of one time step (frame) in µs, where the data has one: a generated set
    (:meth:`frames`) bins its fixed recording length ``duration_us`` into ``bins`` equal frames.
    None otherwise: tonic's ``ToFrame(n_time_bins=bins)`` splits each recording's own span, so a
    step lasts differently in every sample (and a rate code or a text has no time at all)."""
    duration = getattr(ds, "duration_us", 0) if hasattr(ds, "frames") else 0
    return float(duration) / bins if duration else None


def load_data(cfg: dict[str, Any], seed: int, progress: bool) -> tuple[dict[str, np.ndarray], dict[str, Any], list]:
    """Frames of every split (``x_train``, ``y_train``, ``x_val``, ..., ``x_test``), the facts the
    report shows (with ``step_us``: :func:`step_us`), and a few raw test recordings ``[(events, label)]``."""
    from spikeflow.pipeline.zoo_stages import ZOO_DATASETS, load_zoo_data

    if cfg["dataset"] in ZOO_DATASETS:
        return load_zoo_data(cfg, seed, progress)
    splits, info, examples = {}, {}, []
    for train in (True, False):
        limit = cfg["train_limit"] if train else cfg["test_limit"]
        ds = _open(cfg["dataset"], cfg["root"], train, limit, cfg["options"], progress)
        try:
            x, y = split_frames(ds, cfg["bins"], limit, progress, "train" if train else "test")
            if train:
                info["sensor_size"] = [int(s) for s in ds.sensor_size]
                info["step_us"] = step_us(ds, cfg["bins"])
                info["classes"] = [str(c) for c in getattr(ds, "classes", [])] or [str(c) for c in range(int(y.max()) + 1)]
                (splits["x_train"], splits["y_train"]), (splits["x_val"], splits["y_val"]) = split_validation(
                    x, y, cfg["val_fraction"], seed)
            else:
                splits["x_test"], splits["y_test"] = x, y
                examples = [(np.asarray(ds[i][0]), int(ds[i][1])) for i in range(min(N_EXAMPLES, len(y)))]
        finally:
            if hasattr(ds, "close"):
                ds.close()
    if len(splits["y_train"]) == 0:
        raise DataError("the training split is empty after the validation cut: raise [data] train_limit")
    info.update(dataset=cfg["dataset"], bins=cfg["bins"], n_train=len(splits["y_train"]), n_val=len(splits["y_val"]),
                n_test=len(splits["y_test"]))
    return splits, info, examples


def shape_for(graph, x: np.ndarray, where: str) -> np.ndarray:
    """Frames ``[N, T, ...]`` reshaped to the graph's one Input shape (a flat MLP takes ``P*H*W``)."""
    flat = graph.flatten()
    if len(flat.inputs) != 1:
        raise DataError(f"{where}: the model needs one Input node, it has {flat.inputs}")
    shape = tuple(flat.nodes[flat.inputs[0]].shape)
    if math.prod(shape) != math.prod(x.shape[2:]):
        raise DataError(f"{where}: the model's Input takes {shape} ({math.prod(shape)} values); "
                        f"a frame of the data has {x.shape[2:]} ({math.prod(x.shape[2:])})")
    return x.reshape(x.shape[:2] + shape)
