"""Continual learning: train one network on a sequence of tasks and measure what it forgets.

:class:`ContinualTrainer` trains tasks one after another with a *strategy* and records the accuracy
matrix ``R`` (``R[i, j]`` = accuracy on task ``j`` after training task ``i``), from which

.. math:: \\mathrm{ACC} = \\frac{1}{n}\\sum_j R_{n-1, j}, \\qquad
          \\mathrm{BWT} = \\frac{1}{n-1}\\sum_{j<n-1} (R_{n-1, j} - R_{j, j})

(backward transfer: negative means forgetting). Strategies, all with the same API:

* :class:`FineTuning`: plain sequential training (the forgetting baseline);
* :class:`EWC`: elastic weight consolidation, a quadratic penalty weighted by the diagonal Fisher;
* :class:`ExactProjection`: orthogonal gradient projection on exact SVD subspaces (GPM-style);
* :class:`~spikeflow.train.hlop.HLOP`: the same projection on subspaces learned by Hebbian neurons;
* :class:`Multitask`: joint training on every task seen so far (the upper bound).

Tasks hold in-memory ``(x, y)`` data: dense samples ``[N, ...]`` turned into spikes by
``encoder(x, generator) -> [T, B, ...]`` (e.g. :class:`spikeflow.train.trainer.RateEncoder`), or
spikes ``[N, T, ...]`` without an encoder. Runs are seeded and deterministic; the trainer writes a
checkpoint (HDF5, atomically) after every task, and a run resumed from it in a new process ends
with the same accuracy matrix as an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from spikeflow._progress import progress_bar

from spikeflow._atomic import atomic_path
from spikeflow.errors import DataError, FormatError, SpikeflowError
from spikeflow.ir import nodes
from spikeflow.ir.graph import Graph
from spikeflow.plots import new_figure, save_png
from spikeflow.train.hlop import HLOP, OrthogonalProjection, top_subspace
from spikeflow.train.losses import get_loss

CHECKPOINT_FORMAT = "spikeflow-continual"
CHECKPOINT_VERSION = 1


# ------------------------------------------------------------------------------------ tasks


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


# ------------------------------------------------------------------------------- metrics


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


# ----------------------------------------------------------------------------- strategies


class Strategy:
    """Base of the continual-learning strategies: every hook does nothing.

    The trainer calls, per task ``t``: ``begin_task(t, trainer)``; per epoch ``begin_epoch(epoch, trainer)``
    after ``model.train()``; per batch ``forward(model, x)`` (the training forward pass),
    ``penalty(model)`` (added to the loss), ``before_step()``
    (after backward) and ``after_step()`` (after the optimiser step); ``end_task(t, trainer)``.
    ``training_tasks(t)`` says which tasks' data task ``t`` trains on. ``attach(model, seed)`` runs
    once; ``state_dict``/``load_state_dict`` carry the strategy across a checkpoint.
    """

    name = "strategy"

    def attach(self, model: nn.Module, seed: int) -> None:
        self.model = model

    def begin_task(self, task: int, trainer: ContinualTrainer) -> None:
        pass

    def begin_epoch(self, epoch: int, trainer: ContinualTrainer) -> None:
        pass

    def forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model(x)

    def training_tasks(self, task: int) -> list[int]:
        return [task]

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        return None

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        pass

    def end_task(self, task: int, trainer: ContinualTrainer) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


class FineTuning(Strategy):
    """Plain sequential training: each task starts from the previous task's weights."""

    name = "finetune"


class Multitask(Strategy):
    """Joint training: task ``t`` trains on the union of tasks ``0..t`` (the upper bound)."""

    name = "multitask"

    def training_tasks(self, task: int) -> list[int]:
        return list(range(task + 1))


class EWC(Strategy):
    """Elastic weight consolidation (Kirkpatrick et al. 2017), online form.

    After each task the diagonal empirical Fisher ``F`` (squared gradients of the loss on the task's
    training batches) is added to a running sum and the weights are stored as the anchor ``θ*``:

    .. math:: L = L_{task} + \\frac{\\lambda}{2} \\sum_i F_i (\\theta_i - \\theta^*_i)^2

    Args:
        lam: ``λ``, the penalty strength.
        fisher_batches: training batches used for the Fisher estimate (None: all).
    """

    name = "ewc"

    def __init__(self, lam: float = 1000.0, fisher_batches: int | None = None):
        if lam < 0:
            raise DataError(f"EWC: lam must be >= 0, got {lam}")
        self.lam, self.fisher_batches = float(lam), fisher_batches
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}

    def attach(self, model: nn.Module, seed: int) -> None:
        self.params = {k: p for k, p in model.named_parameters() if p.requires_grad}

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        if not self.fisher:
            return None
        total = sum((self.fisher[k] * (p - self.anchor[k]).pow(2)).sum() for k, p in self.params.items())
        return 0.5 * self.lam * total

    def end_task(self, task: int, trainer: ContinualTrainer) -> None:
        fisher = {k: torch.zeros_like(p) for k, p in self.params.items()}
        seen = 0
        trainer.model.eval()
        for i, (x, target) in enumerate(trainer.batches(task, shuffle=False, desc=f"task {task + 1} fisher")):
            if self.fisher_batches is not None and i >= self.fisher_batches:
                break
            trainer.model.zero_grad(set_to_none=True)
            trainer.loss(trainer.model(x), target).backward()
            for k, p in self.params.items():
                if p.grad is not None:
                    fisher[k] += p.grad.detach().pow(2) * target.shape[0]
            seen += target.shape[0]
        trainer.model.zero_grad(set_to_none=True)
        for k in fisher:
            fisher[k] /= max(seen, 1)
            self.fisher[k] = self.fisher[k] + fisher[k] if k in self.fisher else fisher[k]
            self.anchor[k] = self.params[k].detach().clone()

    def state_dict(self) -> dict[str, Any]:
        names = list(self.fisher)
        return {
            "names": names,
            "fisher": {str(i): self.fisher[k].cpu().numpy() for i, k in enumerate(names)},
            "anchor": {str(i): self.anchor[k].cpu().numpy() for i, k in enumerate(names)},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        names = list(state.get("names", []))
        unknown = [k for k in names if k not in self.params]
        if unknown:
            raise DataError(f"EWC checkpoint: parameter {unknown[0]!r} is not a trainable parameter of this model")
        like = {k: self.params[k] for k in names}
        self.fisher = {k: torch.as_tensor(state["fisher"][str(i)]).to(like[k]) for i, k in enumerate(names)}
        self.anchor = {k: torch.as_tensor(state["anchor"][str(i)]).to(like[k]) for i, k in enumerate(names)}


class ExactProjection(OrthogonalProjection):
    """Orthogonal gradient projection on exact subspaces (the non-Hebbian reference, GPM-style).

    The protected layers' activity vectors over the task's last training epoch are collected; at
    the end of the task the part already explained by the frozen basis is removed and the top
    ``k`` right singular vectors of the residual (an SVD) join the basis. Same projection as
    :class:`HLOP`.

    Args:
        subspace: new directions per task: one int for every layer, or ``{layer: int}``.
        layers: names of the layers to protect (default: every Linear and Conv2d layer).
    """

    name = "exact"

    def begin_task(self, task: int, trainer: ContinualTrainer) -> None:
        super().begin_task(task, trainer)
        self._rows: dict[str, list[torch.Tensor]] = {name: [] for name in self.layers}

    def observe(self, activity: Mapping[str, torch.Tensor]) -> None:
        for name, vectors in activity.items():
            self._rows[name].append(vectors)

    def finish(self) -> None:
        for name, sub in self.subspaces.items():
            sub.new = top_subspace(torch.cat(self._rows[name]), sub.new.shape[0], against=sub.frozen)
        self._rows = {}


STRATEGIES: dict[str, Callable[[], Any]] = {
    "finetune": FineTuning,
    "ewc": EWC,
    "exact": ExactProjection,
    "hlop": HLOP,
    "multitask": Multitask,
}
"""Strategies by name, with default settings."""

_HOOKS = ("attach", "begin_task", "begin_epoch", "forward", "training_tasks", "penalty", "before_step", "after_step", "end_task",
          "state_dict", "load_state_dict")


def get_strategy(strategy: str | Any) -> Any:
    """A strategy object from a name in :data:`STRATEGIES`, or an object with the hooks (as is)."""
    if isinstance(strategy, str):
        if strategy not in STRATEGIES:
            raise DataError(f"unknown continual-learning strategy {strategy!r}; known: {sorted(STRATEGIES)}")
        return STRATEGIES[strategy]()
    missing = [h for h in _HOOKS if not callable(getattr(strategy, h, None))]
    if missing:
        raise DataError(f"strategy {type(strategy).__name__}: missing hook {missing[0]!r} (subclass spikeflow.train.continual.Strategy)")
    return strategy


# ------------------------------------------------------------------------------- the trainer


class ContinualTrainer:
    """Train a time-major spiking network on a sequence of tasks with a continual-learning strategy.

    Args:
        model: ``nn.Module`` mapping ``[T, B, ...]`` to ``[T, B, C]`` (e.g. ``sf.to_torch(graph)``).
        strategy: a name from :data:`STRATEGIES` or a strategy object (e.g. ``HLOP(subspace=8)``).
        loss: a name from :data:`spikeflow.train.losses.LOSSES` or a callable with ``scores``.
        optimizer: ``"sgd"`` (with ``momentum``), ``"adam"``, or ``(params, lr) -> Optimizer``; a fresh
            optimiser is made for every task.
        lr: learning rate.
        momentum: SGD momentum.
        epochs: epochs per task.
        batch_size: samples per batch.
        seed: seeds shuffling, spike encoding, torch's RNG during training, and the strategy.
        encoder: ``encoder(x_dense_batch, generator) -> [T, B, ...]``; None: ``x`` is ``[N, T, ...]``.
        checkpoint: HDF5 file written atomically after every task; ``fit(resume=True)`` continues.
        progress: show tqdm bars.
    """

    def __init__(self, model: nn.Module, strategy: str | Any = "finetune", loss: str | Callable = "membrane_max_ce",
                 optimizer: str | Callable = "sgd", lr: float = 0.05, momentum: float = 0.9, epochs: int = 3,
                 batch_size: int = 32, seed: int = 0, encoder: Callable | None = None,
                 checkpoint: str | Path | None = None, progress: bool = True):
        if not isinstance(model, nn.Module):
            raise DataError(f"ContinualTrainer: model must be an nn.Module, got {type(model).__name__}")
        if epochs < 1 or batch_size < 1 or lr <= 0:
            raise DataError(f"ContinualTrainer: need epochs >= 1, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}")
        if isinstance(optimizer, str) and optimizer not in ("sgd", "adam"):
            raise DataError(f"ContinualTrainer: unknown optimizer {optimizer!r}; known: ['adam', 'sgd']")
        self.model, self.loss = model, get_loss(loss)
        self.strategy = get_strategy(strategy)
        self.optimizer, self.lr, self.momentum = optimizer, float(lr), float(momentum)
        self.epochs, self.batch_size, self.seed = int(epochs), int(batch_size), int(seed)
        self.encoder, self.progress = encoder, progress
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.strategy.attach(model, self.seed)
        self.task_index = 0
        self.matrix: np.ndarray | None = None
        self.history: dict[str, list[list[float]]] = {"loss": [], "train_acc": []}
        self._rng = torch.Generator().manual_seed(self.seed)
        self._torch_rng = torch.Generator().manual_seed(self.seed + 1).get_state()
        self.tasks: list[Task] = []
        self._data: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._test: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    # ---------------------------------------------------------------------------- data

    def _dtype(self) -> torch.dtype:
        p = next(self.model.parameters(), None)
        return p.dtype if p is not None and p.is_floating_point() else torch.float32

    def _time_major(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = self.encoder(x, generator) if self.encoder is not None else x.transpose(0, 1)
        return x.to(self._dtype())

    def _set_tasks(self, tasks: Sequence[Task]) -> None:
        if not tasks:
            raise DataError("fit: no tasks given")
        data, shape = [], None
        for i, task in enumerate(tasks):
            if not isinstance(task, Task):
                raise DataError(f"task {i}: expected a spikeflow.train.continual.Task, got {type(task).__name__}")
            tr = _pair(task.train, f"task {i} ({task.name!r}) train")
            te = _pair(task.test, f"task {i} ({task.name!r}) test")
            for part, (x, _) in (("train", tr), ("test", te)):
                sample = tuple(x.shape[1:])
                if shape is None:
                    shape = sample
                elif sample != shape:
                    raise DataError(
                        f"task {i} ({task.name!r}) {part}: samples have shape {sample}, but task 0 "
                        f"({tasks[0].name!r}) has {shape}; every task must share one input shape"
                    )
            data.append((tr, te))
        self._check_model_input(data[0][0][0])
        self.tasks = list(tasks)
        self._data = [tr for tr, _ in data]
        self._test = {}
        self._test_raw = [te for _, te in data]

    def _check_model_input(self, x: torch.Tensor) -> None:
        expected = None
        if hasattr(self.model, "shapes") and hasattr(self.model, "inputs") and len(self.model.inputs) == 1:
            expected = tuple(self.model.shapes[self.model.inputs[0]])
        if expected is None:
            return
        found = tuple(self._time_major(x[:1], torch.Generator().manual_seed(0)).shape[2:])
        if found != expected:
            raise DataError(f"tasks: encoded samples have shape {found}, but the model's input expects {expected}")

    def batches(self, tasks: int | Sequence[int], shuffle: bool = True, desc: str = "") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Time-major batches ``(x [T, B, ...], y [B])`` of some tasks' training data.

        Shuffling and encoding draw from the trainer's seeded generator, so the sequence repeats.
        """
        ids = [tasks] if isinstance(tasks, int) else list(tasks)
        x = torch.cat([self._data[i][0] for i in ids])
        y = torch.cat([self._data[i][1] for i in ids])
        order = torch.randperm(x.shape[0], generator=self._rng) if shuffle else torch.arange(x.shape[0])
        chunks = order.split(self.batch_size)
        for idx in progress_bar(chunks, desc=desc, enabled=self.progress, leave=False):
            yield self._time_major(x[idx], self._rng), y[idx]

    def _test_batches(self, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        # the test spikes of each task are drawn once, from their own seed: every evaluation, in
        # every process, sees the same input
        if task not in self._test:
            x, y = self._test_raw[task]
            self._test[task] = (self._time_major(x, torch.Generator().manual_seed(self.seed + 1_000_003 * (task + 1))), y)
        return self._test[task]

    # ------------------------------------------------------------------------- running

    @torch.no_grad()
    def evaluate(self, task: int) -> float:
        """Accuracy on one task's test data."""
        self.model.eval()
        x, y = self._test_batches(task)
        correct = 0
        scores = getattr(self.loss, "scores", lambda out: out.sum(0))
        for start in range(0, y.shape[0], max(self.batch_size, 256)):
            out = self.model(x[:, start:start + max(self.batch_size, 256)])
            correct += int((scores(out).argmax(-1) == y[start:start + out.shape[1]]).sum())
        return correct / y.shape[0]

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise DataError("ContinualTrainer: the model has no trainable parameters")
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr)
        return self.optimizer(params, lr=self.lr)

    def _train_task(self, t: int) -> None:
        opt = self._make_optimizer()
        scores = getattr(self.loss, "scores", lambda out: out.sum(0))
        losses, accs = [], []
        for epoch in range(self.epochs):
            self.model.train()
            self.strategy.begin_epoch(epoch, self)
            total, correct, seen = 0.0, 0, 0
            ids = self.strategy.training_tasks(t)
            for x, target in self.batches(ids, shuffle=True, desc=f"task {t + 1} epoch {epoch + 1}/{self.epochs}"):
                out = self.strategy.forward(self.model, x)
                loss = self.loss(out, target)
                extra = self.strategy.penalty(self.model)
                if extra is not None:
                    loss = loss + extra
                opt.zero_grad(set_to_none=True)
                loss.backward()
                self.strategy.before_step()
                opt.step()
                self.strategy.after_step()
                total += float(loss.detach()) * target.shape[0]
                correct += int((scores(out.detach()).argmax(-1) == target).sum())
                seen += target.shape[0]
            losses.append(total / seen)
            accs.append(correct / seen)
        self.history["loss"].append(losses)
        self.history["train_acc"].append(accs)

    def fit(self, tasks: Sequence[Task], resume: bool = False, stop_after: int | None = None) -> ContinualResult:
        """Train the tasks in order, from the current task on; evaluate every task after each.

        Args:
            tasks: the task sequence (the same list every call, also when resuming).
            resume: first load ``checkpoint`` if that file exists.
            stop_after: stop once this many tasks are trained (to interrupt a sequence).

        Returns:
            the :class:`ContinualResult` so far.
        """
        self._set_tasks(tasks)
        n = len(tasks)
        if resume and self.checkpoint is not None and self.checkpoint.exists():
            self.load_checkpoint(self.checkpoint)
        if self.matrix is None or self.matrix.shape != (n, n):
            if self.task_index:
                raise DataError(f"fit: {self.task_index} tasks already trained, but the accuracy matrix does not fit {n} tasks")
            self.matrix = np.full((n, n), np.nan)
        end = n if stop_after is None else min(n, int(stop_after))
        seconds = [float("nan")] * n
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._torch_rng)
            bar = progress_bar(range(self.task_index, end), desc=f"continual ({self.strategy.name}): tasks", enabled=self.progress)
            for t in bar:
                start = time.perf_counter()
                self.strategy.begin_task(t, self)
                self._train_task(t)
                self.strategy.end_task(t, self)
                seconds[t] = time.perf_counter() - start
                self.matrix[t] = [self.evaluate(j) for j in range(n)]
                bar.set_postfix(acc=f"{np.mean(self.matrix[t, :t + 1]):.3f}")
                self._torch_rng = torch.get_rng_state()
                self.task_index = t + 1
                if self.checkpoint is not None:
                    self.save_checkpoint(self.checkpoint)
        return ContinualResult(self.matrix.copy(), [task.name for task in tasks], self.strategy.name,
                               {k: [list(v) for v in vals] for k, vals in self.history.items()}, seconds)

    # ---------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue at the next task, as a tree for the HDF5 walker."""
        model = self.model.state_dict()
        names = list(model)
        return {
            "progress": {
                "task_index": self.task_index, "seed": self.seed, "strategy": self.strategy.name,
                "matrix": self.matrix if self.matrix is not None else np.zeros((0, 0)),
                **{k: np.asarray(v, dtype=np.float64).reshape(len(v), -1) if v else np.zeros((0, self.epochs))
                   for k, v in self.history.items()},
            },
            # state-dict keys may hold '/', which HDF5 reads as a path: store names and values apart
            "model": {"names": names, "values": {str(i): model[k].detach().cpu().numpy() for i, k in enumerate(names)}},
            "strategy": self.strategy.state_dict(),
            "rng": {"shuffle": self._rng.get_state().numpy(), "torch": self._torch_rng.numpy()},
        }

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write :meth:`state_dict` to an HDF5 file atomically (no pickle); return the path."""
        import h5py

        from spikeflow.ir.hdf5 import write_header, write_tree

        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w", track_order=True) as f:
                write_header(f, CHECKPOINT_FORMAT, CHECKPOINT_VERSION)
                write_tree(f, self.state_dict())
        return Path(path)

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` (call after the tasks are set,
        as :meth:`fit` does with ``resume=True``).

        Raises:
            FormatError: not such a checkpoint, or one that does not fit this model or strategy.
        """
        import h5py

        from spikeflow.ir.hdf5 import check_header, read_tree

        path = Path(path)
        try:
            with h5py.File(path, "r") as f:
                check_header(f, path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION)
                state = read_tree(f)
        except FileNotFoundError:
            raise FormatError(f"{path}: no such file") from None
        except SpikeflowError:
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError) as err:
            raise FormatError(f"{path}: not a readable continual-learning checkpoint (truncated or not HDF5?): {err}") from None
        try:
            self._restore(state)
        except SpikeflowError as err:
            raise FormatError(f"{path}: {err}") from None
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise FormatError(f"{path}: does not fit this model or strategy ({type(err).__name__}: {first})") from None

    def _restore(self, state: Mapping[str, Any]) -> None:
        progress = state["progress"]
        if progress["strategy"] != self.strategy.name:
            raise DataError(f"written by strategy {progress['strategy']!r}, this trainer uses {self.strategy.name!r}")
        if progress["seed"] != self.seed:
            raise DataError(f"written with seed {progress['seed']}, this trainer has seed {self.seed}")
        matrix = np.asarray(progress["matrix"], dtype=np.float64)
        if self.tasks and matrix.shape != (len(self.tasks), len(self.tasks)):
            raise DataError(f"holds an accuracy matrix for {matrix.shape[0]} tasks, the sequence has {len(self.tasks)}")
        names, values = state["model"]["names"], state["model"]["values"]
        own = self.model.state_dict()
        if sorted(names) != sorted(own):
            raise DataError(f"model parameters {sorted(set(names) ^ set(own))[:3]} differ from this model's")
        self.model.load_state_dict({k: torch.from_numpy(np.asarray(values[str(i)])).to(own[k].dtype) for i, k in enumerate(names)})
        self.strategy.load_state_dict(state.get("strategy", {}))
        self._rng.set_state(torch.from_numpy(np.asarray(state["rng"]["shuffle"], dtype=np.uint8)))
        self._torch_rng = torch.from_numpy(np.asarray(state["rng"]["torch"], dtype=np.uint8))
        self.task_index = int(progress["task_index"])
        self.matrix = matrix
        self.history = {k: np.asarray(progress[k]).tolist() for k in ("loss", "train_acc")}


# ------------------------------------------------------------------------------ networks


def spiking_mlp(n_in: int, hidden: int, n_out: int = 10, seed: int = 0) -> Graph:
    """``n_in`` inputs -> ``hidden`` LIF -> ``n_out`` leaky integrators, torch's default init."""
    rng = np.random.default_rng(seed)
    b1, b2 = 1 / np.sqrt(n_in), 1 / np.sqrt(hidden)
    return Graph.sequential(
        nodes.Input(shape=(n_in,)),
        nodes.Affine(weight=rng.uniform(-b1, b1, (hidden, n_in)), bias=rng.uniform(-b1, b1, hidden)),
        # r = tau/dt: each input adds its full weight to the membrane in one step
        nodes.LIF(tau=np.full(hidden, 10e-3), v_threshold=np.ones(hidden), r=np.full(hidden, 10.0)),
        nodes.Affine(weight=rng.uniform(-b2, b2, (n_out, hidden)), bias=rng.uniform(-b2, b2, n_out)),
        nodes.LI(tau=np.full(n_out, 20e-3), r=np.full(n_out, 20.0)),
        dt=1e-3,
    )


# --------------------------------------------------------------------------------- pictures


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
