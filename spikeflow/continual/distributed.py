"""Continual learning on several workers: :class:`DistributedContinualTrainer`, the continual
trainer with the data-parallel loop of :mod:`spikeflow.train.distributed`."""

from __future__ import annotations

from typing import Any

import torch

from spikeflow.continual.trainer import ContinualTrainer
from spikeflow.train.distributed import Workers, init_workers, join_workers


class DistributedContinualTrainer(ContinualTrainer):
    """:class:`~spikeflow.continual.ContinualTrainer` on several workers (data parallel).

    Same arguments plus ``workers``. Training batches are sharded and gradients summed as in
    :class:`DistributedTrainer`; HLOP (and the exact-projection baseline) learn their subspaces
    from every worker's activity rows gathered in rank order, so every worker keeps the subspace
    that one process would learn; EWC's Fisher is computed by every worker on the whole task.
    Only the main worker writes checkpoints, which resume with any number of workers.
    """

    def __init__(self, model: torch.nn.Module, *args: Any, workers: Workers | None = None, **kwargs: Any):
        workers = workers if workers is not None else init_workers()
        if not workers.is_main:
            kwargs["progress"] = False
        super().__init__(model, *args, **kwargs)
        join_workers(self, workers)
        if hasattr(self.strategy, "gathered"):
            self.strategy.workers = workers

    def save_checkpoint(self, path):
        """The main worker writes the checkpoint (atomically); the others wait until it is there."""
        if self.workers.is_main:
            super().save_checkpoint(path)
        self.workers.barrier()
        return path
