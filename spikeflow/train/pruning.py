"""Magnitude pruning to a target weight sparsity, with a gradual schedule for fine-tuning.

Pruned weights are exact zeros, so a pruned EGRU exported with
:meth:`spikeflow.torch.egru.EGRU.to_nodes` is stored and run as CSR by the numba-event runner
(:mod:`spikeflow.backends.numba.egru`), which skips them.

Example::

    pruner = MagnitudePruner(model, sparsity=0.8, steps=500)
    for batch in loader:
        loss(model, batch).backward(); optimizer.step(); optimizer.zero_grad()
        pruner.step()            # raise sparsity along the schedule, re-apply the masks
"""

from __future__ import annotations

import torch
from torch import nn


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Boolean mask keeping all but the ``round(sparsity * numel)`` smallest-magnitude entries."""
    if not 0 <= sparsity <= 1:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    drop = int(round(sparsity * weight.numel()))
    mask = torch.ones(weight.numel(), dtype=torch.bool)
    # a stable sort on |w| makes the count exact even when magnitudes tie
    order = torch.sort(weight.detach().abs().flatten(), stable=True).indices
    mask[order[:drop]] = False
    return mask.reshape(weight.shape)


def default_targets(module: nn.Module) -> list[str]:
    """Names of the parameters to prune: every matrix (ndim >= 2) whose name contains ``weight``."""
    return [name for name, p in module.named_parameters() if p.ndim >= 2 and "weight" in name]


class MagnitudePruner:
    """Per-tensor magnitude pruning; sparsity rises as ``s (1 - (1 - k/steps)^3)`` (Zhu & Gupta, 2017).

    Args:
        module: the model whose weights are pruned in place.
        sparsity: final fraction of zeros in each pruned tensor.
        steps: number of :meth:`step` calls to reach it (0: prune at once).
        names: parameter names to prune (default: :func:`default_targets`).
    """

    def __init__(self, module: nn.Module, sparsity: float, steps: int = 0, names: list[str] | None = None):
        if not 0 <= sparsity < 1:
            raise ValueError(f"target sparsity must be in [0, 1), got {sparsity}")
        params = dict(module.named_parameters())
        self.names = default_targets(module) if names is None else list(names)
        unknown = [n for n in self.names if n not in params]
        if unknown:
            raise KeyError(f"MagnitudePruner: no parameter named {unknown[0]!r}; have {sorted(params)}")
        self.params = {n: params[n] for n in self.names}
        self.target, self.steps, self.count = sparsity, steps, 0
        self.masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in self.params.items()}
        if steps == 0:
            self._prune(sparsity)

    def current_target(self) -> float:
        """The schedule's sparsity after ``count`` steps."""
        if self.steps == 0:
            return self.target
        frac = min(self.count / self.steps, 1.0)
        return self.target * (1 - (1 - frac) ** 3)

    def _prune(self, sparsity: float) -> None:
        for name, p in self.params.items():
            # already-pruned weights are zero, hence smallest: masks only ever shrink
            self.masks[name] = magnitude_mask(p * self.masks[name], sparsity)
        self.apply()

    def step(self) -> float:
        """Advance the schedule, prune to its sparsity and re-apply the masks; return that sparsity."""
        self.count += 1
        target = self.current_target()
        self._prune(target)
        return target

    @torch.no_grad()
    def apply(self) -> None:
        """Zero the pruned weights (call after every optimizer step while fine-tuning)."""
        for name, p in self.params.items():
            p.mul_(self.masks[name].to(p.dtype))

    def sparsity(self) -> dict[str, float]:
        """Measured fraction of exact zeros in each pruned tensor."""
        return {n: float((p == 0).to(torch.float64).mean()) for n, p in self.params.items()}
