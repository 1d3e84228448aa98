"""Quantisation-aware training in torch with the target's own quantiser (straight-through).

Every weight layer of the torch module gets a parametrisation that replaces its weight by the
export's quantised value, ``round(w * scale * 2**s) / (scale * 2**s)`` clipped to the target's
integer range, with the population scale and fraction computed from the current weights by the same
rules as :mod:`.quantise` (percentile 100). The gradient passes straight through the rounding.
:func:`spikeflow.train.qat.finetune` trains with it and keeps the quantised weights, so exporting the
fine-tuned graph reproduces exactly the network that was trained.
"""

from __future__ import annotations



import torch
from torch.nn.utils import parametrize

from .check import check
from .quantise import _frac, weight_bits, weight_max
from .target import make_target


class _Group:
    """The weight tensors of one population's incoming projections (they share its scale)."""

    def __init__(self, spiking: bool):
        self.spiking = spiking
        self.members: list[tuple[torch.nn.Module, int, int]] = []  # (module, wmax, bits)

    def scale(self) -> float:
        if not self.spiking:
            return 1.0
        ratios = []
        for module, wmax, bits in self.members:
            w = _original(module)
            clip = float(w.detach().abs().max())
            if clip > 0:
                ratios.append(wmax * 2.0 ** -_frac(clip, wmax, bits) / clip)
        return min(ratios) if ratios else 1.0


def _original(module) -> torch.Tensor:
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


class _FakeQuantise(torch.nn.Module):
    def __init__(self, group: _Group, wmax: int, bits: int):
        super().__init__()
        self.group, self.wmax, self.bits = group, wmax, bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale = self.group.scale()
        clip = float(w.detach().abs().max()) * scale
        step = scale * 2.0 ** _frac(clip, self.wmax, self.bits)
        q = torch.clamp(torch.floor(w * step + 0.5), -self.wmax, self.wmax) / step
        return w + (q - w).detach()


def fake_quantise(net, graph, chip=None) -> list[str]:
    """Parametrise the weights of ``net`` (from ``sf.to_torch(graph)``) with the target's quantiser;
    returns the names of the weight layers it wrapped."""
    target = make_target(chip)
    network = check(graph, target)
    groups = {post: _Group(pop.spiking) for post, pop in network.populations.items()}
    done = []
    for proj in network.projections:
        if proj.one_to_one:  # a Scale keeps its float factor during training; the export quantises it
            continue
        module = net.layers[proj.name]
        wmax, bits = weight_max(proj, target), weight_bits(proj, target)
        groups[proj.post].members.append((module, wmax, bits))
        parametrize.register_parametrization(module, "weight", _FakeQuantise(groups[proj.post], wmax, bits))
        done.append(proj.name)
    return done
