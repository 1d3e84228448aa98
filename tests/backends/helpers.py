"""Shared checks: compare a backend result with graph_sim on every node of the graph."""

from __future__ import annotations

import numpy as np

from spikeflow.backends import simulate
from spikeflow.ir import nodes as n
from tests.reference.graph_sim import simulate as reference


def run_all(graph, x, backend: str, **kwargs):
    return simulate(graph, x, backend=backend, record=list(graph.flatten().nodes), **kwargs)


def assert_matches_reference(graph, x, res, rtol: float = 1e-9):
    """Spikes identical to graph_sim; membranes and analog values equal to rounding."""
    ref = reference(graph, x, record_state=True)
    flat = graph.flatten()
    for name, node in flat.nodes.items():
        if node.spiking:
            np.testing.assert_array_equal(res.spikes[name], ref[name], err_msg=f"spikes of {name}")
        has_membrane = node.stateful and not isinstance(node, n.Delay)
        expected = ref[name + ":v"] if has_membrane else ref[name]
        np.testing.assert_allclose(res.traces[name], expected, rtol=rtol, atol=rtol, err_msg=f"trace of {name}")
    for name in flat.outputs:
        np.testing.assert_allclose(res.outputs[name], ref[name], rtol=rtol, atol=rtol)


def assert_identical(a, b):
    """Two results with bit-identical outputs, spikes and traces."""
    for attr in ("outputs", "spikes", "traces"):
        da, db = getattr(a, attr), getattr(b, attr)
        assert sorted(da) == sorted(db)
        for k in da:
            assert np.array_equal(da[k], db[k]), f"{attr}[{k!r}] differs"
