"""The backend-neutral spiking graph IR: nodes, graphs, discretisation (file I/O lives in spikeflow.io)."""

from spikeflow.ir.discretise import INTEGRATIONS, coefficients
from spikeflow.ir.egru import EGRU
from spikeflow.ir.graph import Graph
from spikeflow.ir.nodes import (
    IF,
    LI,
    LIF,
    NODE_TYPES,
    Affine,
    AvgPool2d,
    Conv1d,
    Conv2d,
    CubaLI,
    CubaLIF,
    Delay,
    Flatten,
    I,
    Input,
    Linear,
    Node,
    Output,
    Scale,
    SumPool2d,
    Threshold,
)

__all__ = [
    "INTEGRATIONS", "NODE_TYPES", "Graph", "Node", "coefficients",
    "Input", "Output", "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "Flatten", "SumPool2d",
    "AvgPool2d", "Delay", "Threshold", "I", "IF", "LI", "LIF", "CubaLI", "CubaLIF", "EGRU",
]
