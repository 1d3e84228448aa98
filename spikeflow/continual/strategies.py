"""Continual-learning strategies: hooks that the continual trainer calls around its training loop.

* :class:`FineTuning`: plain sequential training (the forgetting baseline);
* :class:`EWC`: elastic weight consolidation, a quadratic penalty weighted by the diagonal Fisher;
* :class:`ExactProjection`: orthogonal gradient projection on exact SVD subspaces (GPM-style);
* :class:`~spikeflow.continual.hlop.HLOP`: the same projection on subspaces learned by Hebbian neurons;
* :class:`Multitask`: joint training on every task seen so far (the upper bound).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from spikeflow.continual.hlop import HLOP, OrthogonalProjection, top_subspace
from spikeflow.errors import DataError


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
        raise DataError(f"strategy {type(strategy).__name__}: missing hook {missing[0]!r} (subclass spikeflow.continual.Strategy)")
    return strategy
