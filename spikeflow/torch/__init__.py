"""PyTorch side of spikeflow: surrogate gradients, neuron step functions and fused scans, modules,
and the lowering between the graph IR and ``nn.Module`` s (:func:`to_torch`, :func:`to_graph`)."""

from spikeflow.torch.lowering import GraphModule, to_graph, to_torch
from spikeflow.torch.modules import CubaLI, CubaLIF, IF, LI, LIF, Delay, I, Recurrent, RecurrentLIF, Scale, Threshold
from spikeflow.torch.surrogate import SURROGATES, Surrogate, surrogate

__all__ = [
    "GraphModule", "to_graph", "to_torch", "LIF", "LI", "IF", "I", "CubaLIF", "CubaLI", "Threshold", "Scale",
    "Delay", "Recurrent", "RecurrentLIF", "SURROGATES", "Surrogate", "surrogate",
]
