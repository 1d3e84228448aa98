"""A small, deterministic training loop for time-major spiking networks.

Data conventions (every form is batch-first; the trainer hands the model time-major tensors):

* ``(x, y)`` tensors or NumPy arrays: ``x`` is ``[N, T, ...]`` and ``y`` holds ``N`` integer labels.
* a ``torch.utils.data.Dataset``, or any dataset with ``len()`` and ``[i]`` (spikeflow's own, e.g.
  ``DigitSaccades(root, transform=tonic.transforms.ToFrame(sensor_size, n_time_bins=8))``), whose
  items are ``(x, y)`` with ``x`` of shape ``[T, ...]``; the trainer batches, shuffles and collates
  it itself (seeded). Raw event arrays must be binned by the dataset's ``transform`` first.
* a ``torch.utils.data.DataLoader`` yielding ``(x [B, T, ...], y [B])``; its order is its own.

With ``encoder=...`` the samples are dense values (``x`` is ``[N, ...]``) and
``encoder(x, generator) -> [T, B, ...]`` turns each batch into spikes, freshly drawn every epoch
from the trainer's seeded generator. Without an encoder, ``x`` is transposed to ``[T, B, ...]``.

Determinism: the same model initialisation, data and ``seed`` give identical weights and history.
The trainer owns its random streams (shuffling, encoding, and torch's global RNG inside
:meth:`Trainer.fit`, which is forked so the caller's RNG is left alone) and stores them in each
checkpoint, so a run interrupted after epoch ``k`` and resumed equals an uninterrupted run (CPU).

The optimisation step, dtype/encoding setup and checkpoint file are :mod:`spikeflow.train.loop`'s,
shared with the continual-learning trainer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm.auto import tqdm

from spikeflow.errors import DataError, FormatError
from spikeflow.train.loop import OPTIMIZERS, TrainingLoop, load_state, make_optimizer, restore_all_or_nothing, save_state

CHECKPOINT_FORMAT = "spikeflow-checkpoint"
CHECKPOINT_VERSION = 2
"""Version 2: sealed HDF5 written by :func:`spikeflow.train.loop.save_state` (version 1 was a torch.save file)."""

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "OPTIMIZERS", "RateEncoder", "Trainer"]


class RateEncoder:
    """Rate-code dense batches for ``Trainer(encoder=...)``: :func:`spikeflow.datasets.encode.rate_encode`
    driven by the trainer's generator, so the spikes are fresh every epoch yet reproducible.

    Args:
        steps: number of time steps ``T``.
        gain: scales the values to per-step spike probabilities (values must lie in ``[0, 1/gain]``).
        method: ``"bernoulli"`` (0/1 spikes) or ``"poisson"`` (counts).
    """

    def __init__(self, steps: int, gain: float = 1.0, method: str = "bernoulli"):
        self.steps, self.gain, self.method = int(steps), float(gain), method

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[B, ...]`` values -> ``[T, B, ...]`` spikes; one seed drawn from ``generator`` per batch."""
        from spikeflow.datasets.encode import rate_encode

        seed = None if generator is None else int(torch.randint(0, 2**62, (1,), generator=generator))
        x = torch.as_tensor(x)
        x = x if x.is_floating_point() else x.float()
        return rate_encode(x, self.steps, gain=self.gain, method=self.method, seed=seed)


# ------------------------------------------------------------------------------------ data


def _as_pair(data: Any, need_labels: bool) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """``(x, y)`` tensors when ``data`` is in-memory arrays, else None (a Dataset or DataLoader)."""
    if isinstance(data, (torch.Tensor, np.ndarray)):
        if need_labels:
            raise DataError("expected (x, y) data with labels, got only x")
        return torch.as_tensor(data), None
    if isinstance(data, (tuple, list)) and len(data) == 2 and not isinstance(data, Dataset):
        x, y = torch.as_tensor(data[0]), torch.as_tensor(data[1])
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise DataError(f"labels: expected shape [{x.shape[0]}] to match x of shape {tuple(x.shape)}, got {tuple(y.shape)}")
        if y.is_floating_point() or y.dtype == torch.bool:
            raise DataError(f"labels: expected integer class labels, got dtype {y.dtype}")
        return x, y.long()
    if isinstance(data, (Dataset, DataLoader)) or _is_map_dataset(data):
        return None
    raise DataError(f"data: expected (x, y) arrays, a dataset (len() and [i] giving (x, y)) or a DataLoader, got {type(data).__name__}")


def _is_map_dataset(data: Any) -> bool:
    return hasattr(data, "__len__") and hasattr(data, "__getitem__") and not isinstance(data, (str, bytes, dict))


def _collate(items: list, where: str):
    x = items[0][0] if items and isinstance(items[0], (tuple, list)) else None
    if isinstance(x, np.ndarray) and x.dtype.names:
        raise DataError(f"{where}: the items are raw event arrays (fields {x.dtype.names}); give the dataset a transform "
                        "that bins them, e.g. tonic.transforms.ToFrame(sensor_size=ds.sensor_size, n_time_bins=T)")
    try:
        return default_collate(items)
    except (TypeError, RuntimeError) as err:
        raise DataError(f"{where}: cannot batch the items ({err})") from None


def _split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return torch.as_tensor(batch[0]), torch.as_tensor(batch[1]).long()
    if isinstance(batch, torch.Tensor):
        return batch, None
    raise DataError(f"data: each batch must be (x, y), got {type(batch).__name__}")


def _batches(data: Any, batch_size: int, shuffle: bool, generator: torch.Generator, need_labels: bool) -> tuple[Iterator, int | None]:
    """Batch-first ``(x, y)`` batches and their number."""
    pair = _as_pair(data, need_labels)
    if pair is not None:
        x, y = pair
        n = x.shape[0]
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        chunks = order.split(batch_size)
        return ((x[i], None if y is None else y[i]) for i in chunks), len(chunks)
    if isinstance(data, DataLoader):
        try:
            count = len(data)
        except TypeError:  # a loader over an IterableDataset has no length
            count = None
        return (_labelled(_split_batch(b), need_labels) for b in data), count
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    chunks = order.split(batch_size)
    where = f"data ({type(data).__name__})"
    return (_labelled(_split_batch(_collate([data[int(i)] for i in idx], where)), need_labels) for idx in chunks), len(chunks)


def _labelled(batch: tuple[torch.Tensor, torch.Tensor | None], need_labels: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    if need_labels and batch[1] is None:
        raise DataError("data: expected (x, y) samples with labels, got x only")
    return batch


# --------------------------------------------------------------------------------- trainer


class Trainer:
    """Fit, evaluate and predict with a time-major spiking network.

    Args:
        model: an ``nn.Module`` mapping ``[T, B, ...]`` to ``[T, B, C]`` (for example
            ``sf.to_torch(graph)``), or an IR ``Graph`` (lowered with ``sf.to_torch``: PyTorch's
            default dtype).
        loss: a name from :data:`spikeflow.train.losses.LOSSES` or a callable ``loss(y, target)``;
            its ``scores(y) -> [B, C]`` method (default: sum over time) decides predictions.
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"``, or a callable ``(params, lr) -> Optimizer``.
        lr: learning rate.
        epochs: total number of epochs that :meth:`fit` trains to.
        batch_size: samples per batch (in-memory data and Datasets).
        seed: seeds shuffling, encoding and torch's RNG inside :meth:`fit`.
        regularizers: callables on the ``record`` dict of ``model.run(x, record=...)``, each naming
            the nodes it needs in ``.nodes`` (see :mod:`spikeflow.train.losses`).
        checkpoint: HDF5 file written atomically after every epoch; ``fit(resume=True)`` continues from it.
        device: torch device for the model and batches.
        encoder: ``encoder(x_dense_batch, generator) -> [T, B, ...]``, e.g. :class:`RateEncoder`.
        progress: report progress: a bar per epoch on a terminal, and one line per epoch (also in
            logs, where the bar is off).
        strategy: how a long sequence is trained (a graph's module, :func:`spikeflow.to_torch`):
            ``"full"``, ``"bptt"`` (lean exact BPTT), ``"tbptt"`` or ``"ottt"``; see
            :mod:`spikeflow.train.long_sequences`. None: one autograd pass over the whole sequence
            (with ``memory_budget``: ``"full"`` when it fits, ``"bptt"`` otherwise).
        chunk: steps per chunk of the strategy (None: 128, or the largest that fits the budget).
        tbptt: truncation length: the same as ``strategy="tbptt", chunk=tbptt``.
        memory_budget: e.g. ``"2GB"``: the first training batch is planned with
            :func:`spikeflow.train.plan` (a few probe steps in a subprocess), which picks the chunk
            size (and the strategy, when None); the plan is kept in :attr:`plan`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss: str | Callable = "count_ce",
        optimizer: str | Callable = "adam",
        lr: float = 1e-3,
        epochs: int = 10,
        batch_size: int = 64,
        seed: int = 0,
        regularizers: Sequence[Callable] = (),
        checkpoint: str | Path | None = None,
        device: str | torch.device = "cpu",
        encoder: Callable | None = None,
        progress: bool = True,
        strategy: str | None = None,
        chunk: int | None = None,
        tbptt: int | None = None,
        memory_budget: str | int | None = None,
    ):
        from spikeflow.ir.graph import Graph

        if isinstance(model, Graph):
            from spikeflow.torch.lowering import to_torch

            model = to_torch(model)
        if not isinstance(model, torch.nn.Module):
            raise DataError(f"Trainer: model must be an nn.Module or a spikeflow Graph, got {type(model).__name__}")
        if epochs < 0 or batch_size < 1:
            raise DataError(f"Trainer: need epochs >= 0 and batch_size >= 1, got epochs={epochs}, batch_size={batch_size}")
        sequence = None
        if strategy is not None or chunk is not None or tbptt is not None or memory_budget is not None:
            from spikeflow.train.long_sequences import SequenceStrategy

            sequence = SequenceStrategy(strategy, chunk, tbptt, memory_budget, progress=progress)
        self.loop = TrainingLoop(model, loss, device=device, encoder=encoder, regularizers=regularizers, progress=progress, sequence=sequence)
        self.lr, self.epochs, self.batch_size, self.seed = float(lr), int(epochs), int(batch_size), int(seed)
        self.loop.optimizer = make_optimizer(self.loop.model, optimizer, self.lr)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.progress = progress
        self.epoch = 0
        self.history: dict[str, list[float]] = {"loss": [], "train_acc": [], "val_loss": [], "val_acc": []}
        self._shuffle_rng = torch.Generator().manual_seed(self.seed)
        self._torch_rng = torch.Generator().manual_seed(self.seed + 1).get_state()

    # the loop's parts, under the names a PyTorch user looks for
    model = property(lambda self: self.loop.model)
    optimizer = property(lambda self: self.loop.optimizer)
    loss = property(lambda self: self.loop.loss)
    device = property(lambda self: self.loop.device)
    encoder = property(lambda self: self.loop.encoder)
    plan = property(lambda self: self.loop.sequence.plan if self.loop.sequence is not None else None)
    """The memory plan of ``memory_budget`` (after the first training batch), else None."""

    def _eval_rng(self) -> torch.Generator:
        # evaluation draws its own spikes so it repeats exactly and never shifts training's stream
        return torch.Generator().manual_seed(self.seed + 2)

    # ---------------------------------------------------------------------------- training

    def fit(self, train_data: Any, val_data: Any = None, resume: bool = False,
            on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, list[float]]:
        """Train from the current epoch up to ``epochs``; return the history.

        Args:
            train_data: training data (see the module docstring for the accepted forms).
            val_data: optional validation data, evaluated after each epoch.
            resume: load ``checkpoint`` first when that file exists, and continue from its epoch.
            on_epoch: called as each epoch ends (after its checkpoint) with the epoch's number
                (1-based) and its history values ``{"loss", "train_acc", "val_loss", "val_acc"}``,
                e.g. to write them to a log as training goes.

        Returns:
            ``{"loss", "train_acc", "val_loss", "val_acc"}``: one float per epoch (NaN without
            validation data).
        """
        if resume and self.checkpoint is not None and self.checkpoint.exists():
            self.load_checkpoint(self.checkpoint)
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._torch_rng)
            while self.epoch < self.epochs:
                batches, count = _batches(train_data, self.batch_size, True, self._shuffle_rng, need_labels=True)
                self.model.train()
                loss, acc = self.loop.epoch(batches, self._shuffle_rng, count=count, desc=f"train: epoch {self.epoch + 1}/{self.epochs}")
                self.history["loss"].append(loss)
                self.history["train_acc"].append(acc)
                val = self.evaluate(val_data) if val_data is not None else {"loss": math.nan, "acc": math.nan}
                self.history["val_loss"].append(val["loss"])
                self.history["val_acc"].append(val["acc"])
                self._torch_rng = torch.get_rng_state()
                self.epoch += 1
                if self.progress:  # one line per epoch, also in logs where the bar is off
                    tqdm.write(f"epoch {self.epoch}/{self.epochs}: loss {self.history['loss'][-1]:.4f}, "
                               f"train acc {self.history['train_acc'][-1]:.3f}"
                               + (f", val acc {val['acc']:.3f}" if val_data is not None else ""))
                if self.checkpoint is not None:
                    self.save_checkpoint(self.checkpoint)
                if on_epoch is not None:
                    on_epoch(self.epoch, {k: v[-1] for k, v in self.history.items()})
        return self.history

    # -------------------------------------------------------------------------- inference

    @torch.no_grad()
    def _outputs(self, data: Any, need_labels: bool) -> Iterable[tuple[torch.Tensor, torch.Tensor | None]]:
        self.model.eval()
        rng = self._eval_rng()
        batches, _ = _batches(data, self.batch_size, False, rng, need_labels)
        for x, target in batches:
            x = self.loop.time_major(x, rng)
            # long-sequence strategies also infer chunk by chunk: no [T, B, H] hidden tensor
            yield (self.loop.sequence.outputs(self.model, x) if self.loop.sequence is not None else self.model(x)), target

    def evaluate(self, data: Any) -> dict[str, float]:
        """Mean loss (without regularisers) and accuracy on labelled data: ``{"loss", "acc", "n"}``."""
        total, correct, seen = 0.0, 0, 0
        for y, target in self._outputs(data, need_labels=True):
            target = target.to(self.device)
            total += float(self.loss(y, target)) * target.shape[0]
            correct += int((self.loop.scores(y).argmax(-1) == target).sum())
            seen += target.shape[0]
        if seen == 0:
            raise DataError("evaluate: the data is empty")
        return {"loss": total / seen, "acc": correct / seen, "n": seen}

    def predict(self, data: Any, scores: bool = False) -> torch.Tensor:
        """Predicted classes ``[N]`` (or class scores ``[N, C]`` with ``scores=True``), in data order.

        ``data`` may also be ``x`` alone (labels are not needed).
        """
        out = [self.loop.scores(y).cpu() for y, _ in self._outputs(data, need_labels=False)]
        if not out:
            raise DataError("predict: the data is empty")
        s = torch.cat(out)
        return s if scores else s.argmax(-1)

    # ------------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: model, optimizer, epoch, history, RNG states."""
        return {
            "epoch": self.epoch,
            "seed": self.seed,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "history": {k: list(v) for k, v in self.history.items()},
            "rng": {"shuffle": self._shuffle_rng.get_state(), "torch": self._torch_rng.clone()},
        }

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write :meth:`state_dict` atomically (HDF5, :func:`spikeflow.train.loop.save_state`); return the path."""
        return save_state(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, self.state_dict())

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` (HDF5 and JSON: nothing is unpickled).

        Raises:
            FormatError: missing, truncated or foreign file, or one that does not fit this model.
        """
        state = load_state(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION)
        where = f"checkpoint {str(path)!r}"
        missing = [k for k in ("epoch", "model", "optimizer", "history", "rng") if k not in state]
        if missing:
            raise FormatError(f"{where}: missing field {missing[0]!r}")
        try:  # all or nothing: a checkpoint that does not fit leaves the trainer as it was
            restore_all_or_nothing(self, state)
        except Exception as err:  # noqa: BLE001 - every misfit becomes one FormatError
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise FormatError(f"{where}: does not fit this model/optimizer ({type(err).__name__}: {first})") from None

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._shuffle_rng.set_state(state["rng"]["shuffle"].cpu())
        self._torch_rng = state["rng"]["torch"].cpu().clone()
        self.epoch = int(state["epoch"])
        self.history = {str(k): [float(v) for v in vals] for k, vals in state["history"].items()}
