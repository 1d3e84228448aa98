"""The accuracy matrix of a task sequence, its metrics (ACC, BWT) and its pictures.

``R[i, j]`` is the accuracy on task ``j`` after training task ``i``:

.. math:: \\mathrm{ACC} = \\frac{1}{n}\\sum_j R_{n-1, j}, \\qquad
          \\mathrm{BWT} = \\frac{1}{n-1}\\sum_{j<n-1} (R_{n-1, j} - R_{j, j})

(backward transfer: negative means forgetting).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikeflow.errors import DataError
from spikeflow.plots import new_figure, save_png


def average_accuracy(matrix: np.ndarray) -> float:
    """ACC: mean accuracy over all tasks after the last one (last row of the accuracy matrix)."""
    matrix = _check_matrix(matrix)
    return float(matrix[-1].mean())


def backward_transfer(matrix: np.ndarray) -> float:
    """BWT: mean change of each earlier task's accuracy from right after it was learned to the end."""
    matrix = _check_matrix(matrix)
    n = matrix.shape[0]
    if n < 2:
        return 0.0
    return float(np.mean([matrix[-1, j] - matrix[j, j] for j in range(n - 1)]))


def _check_matrix(matrix) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.size == 0:
        raise DataError(f"accuracy matrix: expected a square [tasks, tasks] array, got shape {matrix.shape}")
    if np.isnan(matrix[-1]).any() or np.isnan(np.diag(matrix)).any():
        raise DataError("accuracy matrix: the sequence is not finished (NaN in the last row or the diagonal)")
    return matrix


@dataclass
class ContinualResult:
    """What :meth:`ContinualTrainer.fit` returns.

    Attributes:
        matrix: ``[n, n]`` accuracies; row ``i`` after training task ``i`` (NaN: not reached).
        names: task names.
        strategy: the strategy's name.
        history: per task, per epoch: training loss and accuracy.
        task_seconds: wall time of each task's training (epochs plus the strategy's end-of-task work)
            in this process (NaN for tasks trained before a resume).
    """

    matrix: np.ndarray
    names: list[str]
    strategy: str
    history: dict[str, list[list[float]]] = field(default_factory=dict)
    task_seconds: list[float] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return not np.isnan(self.matrix[-1]).any()

    @property
    def acc(self) -> float:
        """ACC (fraction, 0..1)."""
        return average_accuracy(self.matrix)

    @property
    def bwt(self) -> float:
        """BWT (fraction, -1..1)."""
        return backward_transfer(self.matrix)


def plot_accuracy_matrix(matrices: np.ndarray | Mapping[str, np.ndarray], path: str | Path, title: str | None = None) -> Path:
    """Heat map of one accuracy matrix, or of several side by side (``{method: matrix}``), as PNG.

    Cells show accuracy in percent; rows are "after training task i", columns "tested on task j".
    """
    panels = dict(matrices) if isinstance(matrices, Mapping) else {"": matrices}
    if not panels:
        raise DataError("plot_accuracy_matrix: no matrix given")
    arrays = {}
    for name, m in panels.items():
        m = np.asarray(m, dtype=np.float64)
        if m.ndim != 2 or m.shape[0] != m.shape[1] or m.size == 0:
            raise DataError(f"plot_accuracy_matrix {name!r}: expected a square matrix, got shape {m.shape}")
        arrays[name] = m
    fig = new_figure(0.6 + 3.2 * len(arrays) + 0.6, 3.4)
    axes = fig.subplots(1, len(arrays), squeeze=False)[0]
    image = None
    for ax, (name, m) in zip(axes, arrays.items()):
        image = ax.imshow(100 * m, vmin=0, vmax=100, cmap="viridis")
        if m.shape[0] <= 12:
            for i in range(m.shape[0]):
                for j in range(m.shape[1]):
                    if not np.isnan(m[i, j]):
                        ax.text(j, i, f"{100 * m[i, j]:.0f}", ha="center", va="center", fontsize=6,
                                color="black" if m[i, j] > 0.6 else "white")
        ticks = np.arange(m.shape[0])
        ax.set_xticks(ticks, [str(t + 1) for t in ticks], fontsize=7)
        ax.set_yticks(ticks, [str(t + 1) for t in ticks], fontsize=7)
        ax.set_xlabel("tested on task")
        ax.set_ylabel("after training task")
        if name:
            ax.set_title(name)
    fig.colorbar(image, ax=list(axes), label="accuracy (%)", shrink=0.8)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def plot_task_curves(matrix: np.ndarray, path: str | Path, names: Sequence[str] | None = None, title: str | None = None) -> Path:
    """Accuracy on each task (one line per task) against the number of tasks trained, as PNG.

    A line starts when its task is learned; a falling line is forgetting.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.size == 0:
        raise DataError(f"plot_task_curves: expected a square accuracy matrix, got shape {m.shape}")
    if names is not None and len(names) != m.shape[1]:
        raise DataError(f"plot_task_curves: {len(names)} names for {m.shape[1]} tasks")
    fig = new_figure(6.5, 3.8)
    ax = fig.subplots()
    after = np.arange(1, m.shape[0] + 1)
    for j in range(m.shape[1]):
        ax.plot(after[j:], 100 * m[j:, j], marker="o", ms=3, lw=1.2, label=names[j] if names is not None else f"task {j + 1}")
    mean = [np.nanmean(m[i, : i + 1]) for i in range(m.shape[0])]
    ax.plot(after, 100 * np.asarray(mean), color="black", lw=2.2, ls="--", label="mean of learned")
    ax.set_xlabel("tasks trained")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 101)
    ax.set_xticks(after)
    ax.legend(fontsize=6, ncol=2)
    if title:
        ax.set_title(title)
    return save_png(fig, path)
