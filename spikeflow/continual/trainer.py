"""The continual trainer: one network trained on a sequence of tasks, with a strategy.

:class:`ContinualTrainer` trains tasks one after another with a *strategy*
(:mod:`spikeflow.continual.strategies`, all with the same hooks) and records the accuracy matrix
``R`` (``R[i, j]`` = accuracy on task ``j`` after training task ``i``; see
:mod:`spikeflow.continual.metrics`).

Tasks hold in-memory ``(x, y)`` data: dense samples ``[N, ...]`` turned into spikes by
``encoder(x, generator) -> [T, B, ...]`` (e.g. :class:`spikeflow.train.trainer.RateEncoder`), or
spikes ``[N, T, ...]`` without an encoder. Runs are seeded and deterministic; the trainer writes a
checkpoint (HDF5, atomically) after every task, and a run resumed from it in a new process ends
with the same accuracy matrix as an uninterrupted one.

The optimisation step (with the strategy's hooks), the dtype/encoding/optimiser setup and the
checkpoint file are :mod:`spikeflow.train.loop`'s, shared with :class:`spikeflow.train.Trainer`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spikeflow._progress import progress_bar
from spikeflow.continual.metrics import ContinualResult
from spikeflow.continual.strategies import get_strategy
from spikeflow.continual.tasks import Task, _pair
from spikeflow.errors import DataError, FormatError, SpikeflowError
from spikeflow.train.loop import OPTIMIZERS, TrainingLoop, load_state, make_optimizer, restore_all_or_nothing, save_state

CHECKPOINT_FORMAT = "spikeflow-continual"
CHECKPOINT_VERSION = 2
"""Version 2: the state file of :func:`spikeflow.train.loop.save_state` (version 1: the graph walker's tree)."""


class ContinualTrainer:
    """Train a time-major spiking network on a sequence of tasks with a continual-learning strategy.

    Args:
        model: ``nn.Module`` mapping ``[T, B, ...]`` to ``[T, B, C]`` (e.g. ``sf.to_torch(graph)``).
        strategy: a name from :data:`STRATEGIES` or a strategy object (e.g. ``HLOP(subspace=8)``).
        loss: a name from :data:`spikeflow.train.losses.LOSSES` or a callable with ``scores``.
        optimizer: ``"sgd"`` (with ``momentum``), ``"adam"``, ``"adamw"``, or ``(params, lr) -> Optimizer``;
            a fresh optimiser is made for every task.
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
        if isinstance(optimizer, str) and optimizer not in OPTIMIZERS:
            raise DataError(f"ContinualTrainer: unknown optimizer {optimizer!r}; known: {sorted(OPTIMIZERS)}")
        self.strategy = get_strategy(strategy)
        self.loop = TrainingLoop(model, loss, encoder=encoder, hooks=self.strategy, progress=progress)
        self.model, self.loss = self.loop.model, self.loop.loss
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

    def _set_tasks(self, tasks: Sequence[Task]) -> None:
        if not tasks:
            raise DataError("fit: no tasks given")
        data, shape = [], None
        for i, task in enumerate(tasks):
            if not isinstance(task, Task):
                raise DataError(f"task {i}: expected a spikeflow.continual.Task, got {type(task).__name__}")
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
        found = tuple(self.loop.time_major(x[:1], torch.Generator().manual_seed(0)).shape[2:])
        if found != expected:
            raise DataError(f"tasks: encoded samples have shape {found}, but the model's input expects {expected}")

    def batches(self, tasks: int | Sequence[int], shuffle: bool = True, desc: str = "") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Time-major batches ``(x [T, B, ...], y [B])`` of some tasks' training data.

        Shuffling and encoding draw from the trainer's seeded generator, so the sequence repeats.
        """
        for x, y in progress_bar(self._raw_batches(tasks, shuffle), desc=desc, enabled=self.progress, leave=False):
            yield self.loop.time_major(x, self._rng), y

    def _raw_batches(self, tasks: int | Sequence[int], shuffle: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batch-first ``(x, y)`` batches of some tasks' training data, in the trainer's seeded order."""
        ids = [tasks] if isinstance(tasks, int) else list(tasks)
        x = torch.cat([self._data[i][0] for i in ids])
        y = torch.cat([self._data[i][1] for i in ids])
        order = torch.randperm(x.shape[0], generator=self._rng) if shuffle else torch.arange(x.shape[0])
        for idx in order.split(self.batch_size):
            yield x[idx], y[idx]

    def _test_batches(self, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        # the test spikes of each task are drawn once, from their own seed: every evaluation, in
        # every process, sees the same input
        if task not in self._test:
            x, y = self._test_raw[task]
            self._test[task] = (self.loop.time_major(x, torch.Generator().manual_seed(self.seed + 1_000_003 * (task + 1))), y)
        return self._test[task]

    # ------------------------------------------------------------------------- running

    @torch.no_grad()
    def evaluate(self, task: int) -> float:
        """Accuracy on one task's test data."""
        self.model.eval()
        x, y = self._test_batches(task)
        correct = 0
        for start in range(0, y.shape[0], max(self.batch_size, 256)):
            out = self.model(x[:, start:start + max(self.batch_size, 256)])
            correct += int((self.loop.scores(out).argmax(-1) == y[start:start + out.shape[1]]).sum())
        return correct / y.shape[0]

    def _train_task(self, t: int) -> None:
        self.loop.optimizer = make_optimizer(self.model, self.optimizer, self.lr, self.momentum)
        losses, accs = [], []
        for epoch in range(self.epochs):
            self.model.train()
            self.strategy.begin_epoch(epoch, self)
            ids = self.strategy.training_tasks(t)
            loss, acc = self.loop.epoch(self._raw_batches(ids, shuffle=True), self._rng, desc=f"continual: task {t + 1} epoch {epoch + 1}/{self.epochs}")
            losses.append(loss)
            accs.append(acc)
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
        """Write :meth:`state_dict` atomically (HDF5, :func:`spikeflow.train.loop.save_state`); return the path."""
        return save_state(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, self.state_dict())

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` (call after the tasks are set,
        as :meth:`fit` does with ``resume=True``).

        Raises:
            FormatError: not such a checkpoint, or one that does not fit this model or strategy.
        """
        path = Path(path)
        state = load_state(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, what="continual-learning checkpoint")
        try:  # all or nothing: a checkpoint that does not fit leaves the trainer as it was
            restore_all_or_nothing(self, state, shared=(self.tasks, self._data, self._test, self._test_raw, self.encoder))
        except SpikeflowError as err:
            raise FormatError(f"{path}: {err}") from None
        except Exception as err:  # noqa: BLE001 - every misfit becomes one FormatError
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


