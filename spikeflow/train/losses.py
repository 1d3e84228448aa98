"""Losses on spiking outputs and activity regularisers on recorded hidden activity.

Every tensor is time-major: outputs ``y`` have shape ``[T, B, C]`` (C classes), recorded activity
``z`` has shape ``[T, B, ...]``. A loss is called as ``loss(y, target)`` and also knows how to turn
an output into class scores (``loss.scores(y) -> [B, C]``), which is what the trainer's accuracy
and ``predict`` use. A regulariser names the nodes it needs (``reg.nodes``) and is called on the
dict that ``net.run(x, record=reg.nodes)`` returns.

Losses on spike counts suit a spiking (LIF) output layer; losses on membrane potential suit a
leaky-integrator (LI) output layer, whose output is its membrane potential.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from spikeflow.errors import DataError


def _check_output(y: torch.Tensor, target: torch.Tensor | None = None, name: str = "loss") -> None:
    if y.dim() != 3:
        raise DataError(f"{name}: expected output of shape [T, B, C], got {tuple(y.shape)}")
    if target is not None and (target.dim() != 1 or target.shape[0] != y.shape[1]):
        raise DataError(f"{name}: expected {y.shape[1]} integer class labels, got target of shape {tuple(target.shape)}")


class SpikeCountCrossEntropy:
    """Cross-entropy on summed output spikes.

    .. math:: n_{bc} = \\sum_t y_{tbc}, \\qquad L = \\frac{1}{B}\\sum_b -\\log \\mathrm{softmax}(s\\, n_b)_{c_b}

    Args:
        scale: ``s``, multiplies the counts before the softmax (a temperature; 1 leaves them).
    """

    def __init__(self, scale: float = 1.0):
        self.scale = float(scale)

    def scores(self, y: torch.Tensor) -> torch.Tensor:
        _check_output(y, name=type(self).__name__)
        return y.sum(0)

    def __call__(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_output(y, target, type(self).__name__)
        return F.cross_entropy(self.scale * self.scores(y), target)


class SpikeCountMSE:
    """Mean squared error between output spike counts and target counts from target rates.

    The labelled class should fire at ``on_rate`` spikes per step, every other class at ``off_rate``:

    .. math:: n_{bc} = \\sum_t y_{tbc}, \\quad r_{bc} = \\begin{cases} r_{on} & c = c_b \\\\ r_{off} & \\text{else}\\end{cases},
              \\quad L = \\frac{1}{BC}\\sum_{b,c} (n_{bc} - T r_{bc})^2
    """

    def __init__(self, on_rate: float = 0.8, off_rate: float = 0.1):
        if not (0.0 <= off_rate <= 1.0 and 0.0 <= on_rate <= 1.0):
            raise DataError(f"SpikeCountMSE: rates are spikes per step in [0, 1], got on_rate={on_rate}, off_rate={off_rate}")
        self.on_rate, self.off_rate = float(on_rate), float(off_rate)

    def scores(self, y: torch.Tensor) -> torch.Tensor:
        _check_output(y, name=type(self).__name__)
        return y.sum(0)

    def __call__(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_output(y, target, type(self).__name__)
        steps = y.shape[0]
        rates = torch.full_like(y[0], self.off_rate)
        rates[torch.arange(y.shape[1], device=y.device), target] = self.on_rate
        return F.mse_loss(self.scores(y), steps * rates)


class MembraneCrossEntropy:
    """Cross-entropy on the membrane potential of a leaky-integrator output, reduced over time.

    .. math:: s_{bc} = \\max_t v_{tbc} \\ (\\text{reduce="max"}) \\quad\\text{or}\\quad
              s_{bc} = \\frac{1}{T}\\sum_t v_{tbc} \\ (\\text{reduce="mean"}),
              \\qquad L = \\frac{1}{B}\\sum_b -\\log \\mathrm{softmax}(s_b)_{c_b}
    """

    def __init__(self, reduce: str = "max"):
        if reduce not in ("max", "mean"):
            raise DataError(f"MembraneCrossEntropy: reduce must be 'max' or 'mean', got {reduce!r}")
        self.reduce = reduce

    def scores(self, y: torch.Tensor) -> torch.Tensor:
        _check_output(y, name=type(self).__name__)
        return y.amax(0) if self.reduce == "max" else y.mean(0)

    def __call__(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_output(y, target, type(self).__name__)
        return F.cross_entropy(self.scores(y), target)


LOSSES = {
    "count_ce": SpikeCountCrossEntropy,
    "count_mse": SpikeCountMSE,
    "membrane_max_ce": lambda: MembraneCrossEntropy("max"),
    "membrane_mean_ce": lambda: MembraneCrossEntropy("mean"),
}
"""Losses by name, for ``Trainer(loss="...")`` and the command line."""


def get_loss(loss):
    """A loss object from a name in :data:`LOSSES` or an object with ``__call__`` (returned as is)."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise DataError(f"unknown loss {loss!r}; known: {sorted(LOSSES)}")
        return LOSSES[loss]()
    if not callable(loss):
        raise DataError(f"loss must be a name or a callable loss(y, target), got {type(loss).__name__}")
    return loss


# ----------------------------------------------------------------------------- regularisers


class _ActivityRegularizer(ABC):
    """Shared plumbing: which recorded nodes to read, and a weight."""

    def __init__(self, nodes: str | Sequence[str], weight: float):
        self.nodes = (nodes,) if isinstance(nodes, str) else tuple(nodes)
        if not self.nodes:
            raise DataError(f"{type(self).__name__}: name at least one node to regularise")
        self.weight = float(weight)

    def _activity(self, record: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for name in self.nodes:
            if name not in record:
                raise DataError(f"{type(self).__name__}: node {name!r} was not recorded; recorded: {sorted(record)}")
            z = record[name]
            if z.dim() < 3:
                raise DataError(f"{type(self).__name__}: node {name!r} activity must be [T, B, ...], got {tuple(z.shape)}")
            out.append(z.reshape(z.shape[0], z.shape[1], -1))
        return out

    @abstractmethod
    def term(self, z: torch.Tensor) -> torch.Tensor:
        """The penalty of one node's activity ``[T, B, n]``."""

    def __call__(self, record: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.weight * sum(self.term(z) for z in self._activity(record))


class SpikeCountL1(_ActivityRegularizer):
    """L1 penalty on spike counts, averaged over samples and neurons (summed over nodes).

    .. math:: R = w \\cdot \\frac{1}{BN}\\sum_{b,i} \\Big|\\sum_t z_{tbi}\\Big|
    """

    def __init__(self, nodes, weight: float = 1e-3):
        super().__init__(nodes, weight)

    def term(self, z):
        return z.sum(0).abs().mean()


class SpikeCountL2(_ActivityRegularizer):
    """L2 penalty on spike counts, averaged over samples and neurons (summed over nodes).

    .. math:: R = w \\cdot \\frac{1}{BN}\\sum_{b,i} \\Big(\\sum_t z_{tbi}\\Big)^2
    """

    def __init__(self, nodes, weight: float = 1e-4):
        super().__init__(nodes, weight)

    def term(self, z):
        return z.sum(0).pow(2).mean()


class RateUpperBound(_ActivityRegularizer):
    """Penalise neurons whose firing rate (spikes per step, averaged over time and batch) exceeds
    ``max_rate``.

    .. math:: r_i = \\frac{1}{TB}\\sum_{t,b} z_{tbi}, \\qquad R = w \\cdot \\frac{1}{N}\\sum_i \\max(0, r_i - r_{max})^2
    """

    def __init__(self, nodes, max_rate: float = 0.2, weight: float = 1.0):
        super().__init__(nodes, weight)
        self.max_rate = float(max_rate)

    def term(self, z):
        return F.relu(z.mean((0, 1)) - self.max_rate).pow(2).mean()


class RateLowerBound(_ActivityRegularizer):
    """Penalise neurons whose firing rate (spikes per step, averaged over time and batch) is below
    ``min_rate``, which revives silent neurons.

    .. math:: r_i = \\frac{1}{TB}\\sum_{t,b} z_{tbi}, \\qquad R = w \\cdot \\frac{1}{N}\\sum_i \\max(0, r_{min} - r_i)^2
    """

    def __init__(self, nodes, min_rate: float = 0.01, weight: float = 1.0):
        super().__init__(nodes, weight)
        self.min_rate = float(min_rate)

    def term(self, z):
        return F.relu(self.min_rate - z.mean((0, 1))).pow(2).mean()
