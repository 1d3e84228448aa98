"""numba-clock: dense time-stepped simulation; every synapse is evaluated every step."""

from __future__ import annotations

from ..capabilities import Capabilities
from . import is_available  # noqa: F401  (the registry asks each backend module)

CAPABILITIES = Capabilities(engine="numba", precisions=("float64", "float32", "fixed"), early_exit=True, streaming=True)


def run(graph, inputs, *, record=(), precision="float64", sparse="auto"):
    """Simulate ``graph`` on checked inputs ``{Input name: [T, B, ...]}``; see :func:`spikeflow.simulate`."""
    from .engine import Engine

    return Engine(graph, backend="numba-clock", event=False, precision=precision, sparse=sparse, record=record).run(inputs)
