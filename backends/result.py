"""What every backend returns: outputs, recorded spikes and traces, and operation counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SimulationResult:
    """The result of :func:`spikeflow.simulate`; all arrays are time-major ``[T, B, ...]``.

    Attributes:
        outputs: every Output node's values by name.
        spikes: recorded spiking nodes' output spikes (0/1) by name.
        traces: recorded nodes' membrane potential after the reset (neurons) or output values
            (every other node) by name.
        stats: ``synaptic_events`` (multiply-adds of synaptic ops actually performed),
            ``neuron_updates`` (neuron state updates), ``steps``, ``wall_time`` (seconds), plus
            backend extras such as ``overflows`` in fixed point.
        backend: the backend that ran.
    """

    outputs: dict[str, np.ndarray]
    spikes: dict[str, np.ndarray] = field(default_factory=dict)
    traces: dict[str, np.ndarray] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    backend: str = ""

    @property
    def output(self) -> np.ndarray:
        """The output of a single-output graph (use :attr:`outputs` when there are several)."""
        if len(self.outputs) != 1:
            raise AttributeError(f"graph has {len(self.outputs)} outputs {sorted(self.outputs)}; use result.outputs[name]")
        return next(iter(self.outputs.values()))

    def __repr__(self) -> str:
        shapes = {k: v.shape for k, v in self.outputs.items()}
        return f"SimulationResult(backend={self.backend!r}, outputs={shapes}, spikes={sorted(self.spikes)}, traces={sorted(self.traces)}, stats={self.stats})"


def concat(results: list[SimulationResult]) -> SimulationResult:
    """Join results of consecutive chunks along time; counts add up."""
    first = results[0]

    def join(attr):
        return {k: np.concatenate([getattr(r, attr)[k] for r in results]) for k in getattr(first, attr)}

    stats = {k: sum(r.stats[k] for r in results) if isinstance(v, (int, float)) else v for k, v in first.stats.items()}
    return SimulationResult(join("outputs"), join("spikes"), join("traces"), stats, first.backend)
