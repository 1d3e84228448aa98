"""The "torch" backend: the graph lowered by :func:`spikeflow.to_torch`, run without gradients.

Recorded nodes come back from ``net.run(x, record=names)``: spiking nodes in ``result.spikes``,
others in ``result.traces`` (the torch modules do not expose a spiking node's membrane). Operation
counts are the dense ones (every synapse every step), since torch evaluates them all.
"""

from __future__ import annotations

import math
from importlib.util import find_spec


from spikeflow.errors import BackendError
from spikeflow.ir import nodes as n
from spikeflow.ir.egru import EGRU

from .capabilities import Capabilities

CAPABILITIES = Capabilities(engine="torch", precisions=("float64", "float32"), early_exit=True)


def is_available() -> bool:
    """True when torch is installed and spikeflow's torch lowering is present."""
    try:
        return find_spec("torch") is not None and find_spec("spikeflow.torch.lowering") is not None
    except ModuleNotFoundError:
        return False


def dense_counts(graph) -> tuple[int, int]:
    """(synaptic multiply-adds, neuron updates) of one step of one sample, evaluated densely."""
    flat = graph.flatten()
    shapes = flat.shapes()
    synapses = neurons = 0
    for name, node in flat.nodes.items():
        size = math.prod(shapes[name])
        if isinstance(node, (n.Affine, n.Linear)):
            synapses += node.weight.size
        elif isinstance(node, (n.Conv1d, n.Conv2d)):
            synapses += size * math.prod(node.weight.shape[1:])
        elif isinstance(node, (n.SumPool2d, n.AvgPool2d)):
            synapses += size * math.prod(node.kernel_size)
        elif isinstance(node, EGRU):  # gate weights, input and recurrent, read densely
            synapses += node.weight_ih.size + node.weight_hh.size
            neurons += size
        elif node.stateful and not isinstance(node, n.Delay):
            neurons += size
    return synapses, neurons


def run(graph, inputs, *, record=(), precision="float64", device: str = "cpu"):
    """Run ``sf.to_torch(graph)`` under ``torch.no_grad()``; see :func:`spikeflow.simulate`."""
    import torch

    from spikeflow.torch.lowering import to_torch

    from .result import SimulationResult

    if precision not in ("float64", "float32"):
        raise BackendError(f"argument 'precision': backend 'torch' runs 'float64' or 'float32', got {precision!r}")
    flat = graph.flatten()
    unknown = [k for k in record if k not in flat.nodes]
    if unknown:
        from spikeflow.errors import DataError

        raise DataError(f"argument 'record': unknown node {unknown[0]!r}; nodes are {sorted(flat.nodes)}")
    dtype = torch.float64 if precision == "float64" else torch.float32
    net = to_torch(graph, dtype=dtype).to(device=device)
    net.eval()
    x = {k: torch.from_numpy(v).to(device=device, dtype=dtype) for k, v in inputs.items()}
    with torch.no_grad():
        y, recorded = net.run(x, record=list(record))
    as_np = lambda t: t.detach().cpu().numpy()  # noqa: E731
    outputs = {k: as_np(v) for k, v in y.items()} if isinstance(y, dict) else {flat.outputs[0]: as_np(y)}
    result = SimulationResult(outputs=outputs, backend="torch")
    for name in record:
        target = result.spikes if flat.nodes[name].spiking else result.traces
        target[name] = as_np(recorded[name])
    steps, batch = next(iter(inputs.values())).shape[:2]
    synapses, neurons = dense_counts(graph)
    result.stats = {"synaptic_events": synapses * steps * batch, "neuron_updates": neurons * steps * batch, "steps": int(steps), "wall_time": 0.0}
    return result
