"""Continual-learning tasks: in-memory ``(x, y)`` splits, and the permuted-digits benchmark."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from spikeflow.errors import DataError


@dataclass
class Task:
    """One task: training and test data, each ``(x, y)`` (``x`` batch-first, ``y`` integer labels)."""

    name: str
    train: tuple[Any, Any]
    test: tuple[Any, Any]


def permuted_tasks(train: tuple[Any, Any], test: tuple[Any, Any], n_tasks: int, seed: int = 0) -> list[Task]:
    """Permuted-input tasks: task 0 is the data as is, task ``i`` applies one fixed random
    permutation of the features (pixels) to every training and test sample.

    Args:
        train, test: ``(x [N, D...], y [N])``; features are everything after the batch dimension.
        n_tasks: number of tasks.
        seed: seeds the permutations.
    """
    x_tr, x_te = np.asarray(train[0]), np.asarray(test[0])
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError(f"permuted_tasks: train samples have shape {x_tr.shape[1:]}, test samples {x_te.shape[1:]}")
    size = int(np.prod(x_tr.shape[1:]))
    rng = np.random.default_rng(seed)
    tasks = []
    for i in range(n_tasks):
        perm = np.arange(size) if i == 0 else rng.permutation(size)
        permute = lambda x: x.reshape(len(x), size)[:, perm].reshape(x.shape)  # noqa: E731
        tasks.append(Task(f"task {i + 1}", (permute(x_tr), np.asarray(train[1])), (permute(x_te), np.asarray(test[1]))))
    return tasks


def permuted_digits(n_tasks: int = 10, size: int = 28, seed: int = 0, test_fraction: float = 0.2,
                    limit: int | None = None) -> list[Task]:
    """Permuted handwritten digits: scikit-learn's 8x8 ``load_digits`` scaled to ``[0, 1]``,
    upsampled (bilinear) to ``size x size`` and flattened, one fixed pixel permutation per task.

    Upsampling to 28x28 gives MNIST's geometry: each task's images fill a small subspace of a
    large input space, as in permuted MNIST, so the tasks' input subspaces barely overlap.

    Args:
        n_tasks: number of tasks (task 1 is unpermuted).
        size: image side after upsampling (8 keeps the original images).
        seed: seeds the stratified train/test split and the permutations.
        test_fraction: share of the 1797 images held out for testing.
        limit: keep only this many training images (for fast tests).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if size < 8:
        raise DataError(f"permuted_digits: size must be >= 8 (the images are 8x8), got {size}")
    digits = load_digits()
    x = torch.as_tensor(digits.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    if size != 8:
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)
    x = x.reshape(len(x), -1).numpy()
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed)
    if limit is not None:
        x_tr, y_tr = x_tr[:limit], y_tr[:limit]
    return permuted_tasks((x_tr, y_tr), (x_te, y_te), n_tasks, seed)


def _pair(data: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise DataError(f"{where}: expected (x, y) arrays, got {type(data).__name__}")
    x, y = torch.as_tensor(np.asarray(data[0])), torch.as_tensor(np.asarray(data[1]))
    if y.dim() != 1 or y.shape[0] != x.shape[0] or y.is_floating_point() or y.dtype == torch.bool:
        raise DataError(f"{where}: expected {x.shape[0]} integer labels, got labels of shape {tuple(y.shape)} and dtype {y.dtype}")
    if x.shape[0] == 0:
        raise DataError(f"{where}: no samples")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise DataError(f"{where}: x contains NaN or inf")
    return x, y.long()
