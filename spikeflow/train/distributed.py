"""One network trained on several workers: data parallelism with ``torch.distributed``.

Launch with ``torchrun --nproc_per_node N -m spikeflow train ...`` (or several machines, see
docs/scaling.md). Every worker holds the whole network and runs the one training loop
(:class:`~spikeflow.train.loop.TrainingLoop`) wrapped by :class:`DistributedLoop`: each global
batch is cut into contiguous shards, one per worker, and before the strategy hooks and the
optimiser step the gradients are summed over the workers in one all-reduce, so every worker takes
the same step and the weights stay identical. :class:`DistributedTrainer` and
:class:`spikeflow.continual.distributed.DistributedContinualTrainer` are the two trainers
with that loop.

Exactness: the global batch (``batch_size``) does not depend on the number of workers, and every
worker draws the same shuffling and spike-encoding random numbers (it encodes the whole global
batch, then keeps its shard). A shard's gradient is weighted by its share of the global batch, so
the summed gradient is the gradient of the global batch's mean loss: N workers give the same
weights as one process with the same batch size (to float rounding), and a checkpoint written by
N workers resumes exactly with any other number.

Why an explicit all-reduce rather than wrapping the model in ``DistributedDataParallel``: DDP's
reducer only sees ``forward()``, while the loop also calls ``model.run(x, record=...)`` for activity
regularisers and HLOP records layer inputs; the last global batch can leave a worker with an
empty shard, which DDP cannot skip. One flattened all-reduce per step is what DDP's bucket does.
Spiking state lives inside each call (fresh per batch), so nothing stateful needs syncing (the
trap of DataParallel with stateful neurons, snnTorch#154).

Limits: every worker loads the whole global batch and keeps its shard (the price of identical
random draws); activity regularisers (firing-rate bounds) see each worker's shard, not the global
batch; normalisation layers keep per-worker statistics.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from spikeflow.errors import BackendError, DataError
from spikeflow.train.loop import TrainingLoop
from spikeflow.train.trainer import Trainer

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Workers:
    """This process's place among the workers of a data-parallel run.

    Attributes:
        rank: this worker (0 is the main worker, the only one that writes files).
        world_size: number of workers.
        device: where this worker's model lives (``cuda:LOCAL_RANK`` with nccl, else the CPU).
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()

    def shard(self, n: int) -> slice:
        """This worker's contiguous part of a global batch of ``n`` samples (sizes differ by at
        most one; with ``n < world_size`` some workers get none)."""
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Sum every parameter's gradient over the workers, in one flattened all-reduce (a missing
        gradient counts as zero, so a worker with an empty shard still takes part)."""
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if not self.active:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()

    def sum(self, values: list[float]) -> list[float]:
        """Sum numbers over the workers (float64, so counts stay exact)."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def gather_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Every worker's rows of ``x [b, ...]`` stacked in rank order (shards of different sizes
        allowed): the global batch's rows in the order one process would see them."""
        if not self.active:
            return x
        sizes = [torch.zeros(1, dtype=torch.int64, device=self.device) for _ in range(self.world_size)]
        dist.all_gather(sizes, torch.tensor([x.shape[0]], dtype=torch.int64, device=self.device))
        biggest = int(max(s.item() for s in sizes))
        padded = x.new_zeros((biggest, *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([part[: int(s.item())] for part, s in zip(parts, sizes)])

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Copy the main worker's parameters and buffers to every worker (one starting point)."""
        if self.active:
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def launched_by_torchrun() -> bool:
    """True when this process was started by ``torchrun`` (its environment names rank and world)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE"))


def init_workers(backend: str | None = None, timeout_s: float = 300.0) -> Workers:
    """Join the run that ``torchrun`` (or the environment variables RANK, WORLD_SIZE, MASTER_ADDR,
    MASTER_PORT) describes; a single process without them is a world of one.

    Args:
        backend: ``"gloo"`` or ``"nccl"``; default nccl when CUDA is available, else gloo.
        timeout_s: how long a collective may wait for the other workers.
    """
    if not launched_by_torchrun():
        return Workers()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_available():
        raise BackendError("torch.distributed is not available in this torch build")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend not in ("gloo", "nccl"):
        raise BackendError(f"init_workers: unknown backend {backend!r}; expected 'gloo' or 'nccl'")
    device = torch.device(f"cuda:{local}") if backend == "nccl" else torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_s))
    return Workers(rank, world, device)


def shutdown_workers() -> None:
    """Leave the process group (every worker calls it at the end)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class DistributedLoop(TrainingLoop):
    """The one training loop (:class:`~spikeflow.train.loop.TrainingLoop`) on several workers.

    Each global batch is encoded whole (the same random draws on every worker) and cut to this
    worker's shard; after the backward pass the strategy hooks see the gradient of the global
    batch's mean loss (each shard's gradient weighted by its share, then summed over workers),
    so projections (HLOP) and the optimiser step are the same on every worker.
    """

    @classmethod
    def around(cls, loop: TrainingLoop, workers: Workers) -> "DistributedLoop":
        """The same loop (model, loss, optimiser, encoder, hooks), made data-parallel."""
        new = cls.__new__(cls)
        new.__dict__.update(vars(loop))
        new.workers = workers
        new.hooks = _SummedGradients(loop.hooks, workers, new)
        return new

    def epoch(self, batches, generator: torch.Generator, *, count: int | None = None, desc: str = "") -> tuple[float, float]:
        """Train on batch-first global batches; return the global mean loss and accuracy."""
        from tqdm.auto import tqdm

        total, correct, seen = 0.0, 0, 0
        bar = tqdm(batches, total=count, desc=desc, disable=not self.progress, leave=False)
        for x, target in bar:
            x = self.time_major(x, generator)  # the whole global batch: the same draws on every worker
            part = self.workers.shard(target.shape[0])
            self.hooks.share = (part.stop - part.start) / target.shape[0]
            x, target = x[:, part], target[part].to(self.device)
            if target.shape[0] == 0:  # a short last batch left this worker nothing
                self._step_without_batch()
                continue
            loss, out = self.step(x, target)
            total += float(loss) * target.shape[0]
            correct += int((self.scores(out).argmax(-1) == target).sum())
            seen += target.shape[0]
        bar.close()
        total, correct, seen = self.workers.sum([total, correct, seen])
        if seen == 0:
            raise DataError("fit: the training data is empty")
        return total / seen, correct / seen

    def _step_without_batch(self) -> None:
        """Take part in this step's collectives and take the same optimiser step as the others."""
        inner = self.hooks.inner
        if hasattr(inner, "skip_batch"):
            inner.skip_batch(self.dtype)  # HLOP: the activity gather of this step
        self.optimizer.zero_grad(set_to_none=True)
        self.hooks.before_step()
        self.optimizer.step()
        self.hooks.after_step()


class _SummedGradients:
    """Strategy hooks that first turn this worker's gradient into the global batch's gradient."""

    def __init__(self, inner: Any, workers: Workers, loop: TrainingLoop):
        self.inner, self.workers, self.loop, self.share = inner, workers, loop, 1.0

    def forward(self, model, x):
        return self.inner.forward(model, x)

    def penalty(self, model):
        return self.inner.penalty(model)

    def before_step(self) -> None:
        params = [p for p in self.loop.model.parameters() if p.requires_grad]
        for p in params:
            if p.grad is not None:
                p.grad.mul_(self.share)  # the shard's mean loss, weighted by its share of the batch
        self.workers.sum_gradients(params)
        self.inner.before_step()

    def after_step(self) -> None:
        self.inner.after_step()


def join_workers(trainer: Any, workers: Workers) -> None:
    """Make a built trainer data-parallel: its loop shards batches and sums gradients over
    ``workers``, and every worker starts from the main worker's parameters."""
    trainer.workers = workers
    trainer.loop = DistributedLoop.around(trainer.loop, workers)
    workers.broadcast_parameters(trainer.model)


def _refuse_loader(data: Any) -> None:
    if isinstance(data, torch.utils.data.DataLoader):
        raise DataError("DistributedTrainer: pass (x, y) arrays or a Dataset, not a DataLoader (its batches cannot be "
                        "sharded exactly)")


class DistributedTrainer(Trainer):
    """:class:`~spikeflow.train.trainer.Trainer` on several workers (data parallel).

    Same arguments as ``Trainer`` plus ``workers`` (from :func:`init_workers`; default: join the
    torchrun run, or a world of one). ``batch_size`` is the global batch. Only the main worker
    writes the checkpoint and shows progress; every worker returns the same history.

    Example (``train.py``, run with ``torchrun --nproc_per_node 2 train.py``)::

        workers = init_workers()
        trainer = DistributedTrainer(net, epochs=5, checkpoint="run.h5", workers=workers)
        trainer.fit((x, y), resume=True)
        shutdown_workers()
    """

    def __init__(self, model: torch.nn.Module, *args: Any, workers: Workers | None = None, **kwargs: Any):
        workers = workers if workers is not None else init_workers()
        kwargs.setdefault("device", workers.device)
        if not workers.is_main:
            kwargs["progress"] = False
        super().__init__(model, *args, **kwargs)
        join_workers(self, workers)

    def fit(self, train_data: Any, val_data: Any = None, resume: bool = False, on_epoch=None) -> dict[str, list[float]]:
        """As :meth:`Trainer.fit`; a DataLoader is refused (pass arrays or a Dataset)."""
        _refuse_loader(train_data)
        return super().fit(train_data, val_data, resume, on_epoch)

    def save_checkpoint(self, path):
        """The main worker writes the checkpoint (atomically); the others wait until it is there."""
        if self.workers.is_main:
            super().save_checkpoint(path)
        self.workers.barrier()
        return path
