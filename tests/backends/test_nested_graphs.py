"""Nested graphs run on every backend (issue 17: the torch backend re-validated dotted names)."""

import numpy as np
import pytest

import spikeflow as sf
from spikeflow.datasets.events import make_events


def nested() -> sf.Graph:
    inner = sf.Graph.sequential(
        sf.ir.Input(shape=(2, 2, 2)), sf.ir.Flatten(), sf.ir.Affine(weight=np.full((3, 8), 0.4), bias=np.zeros(3)),
        sf.ir.LIF(tau=0.01, v_threshold=np.ones(3)), sf.ir.Output(shape=(3,)),
    )
    return sf.Graph({"input": sf.ir.Input(shape=(2, 2, 2)), "block": inner, "output": sf.ir.Output(shape=(3,))},
                    [("input", "block.input"), ("block.output", "output")])


@pytest.mark.parametrize("backend", ["numba-event", "numba-clock", "torch"])
def test_nested_graph_runs_and_records_on_every_backend(backend):
    x = np.random.default_rng(0).uniform(0, 1, (12, 2, 2, 2, 2))
    want = sf.simulate(nested(), x, backend="numba-clock", record=["block.lif3"])
    got = sf.simulate(nested(), x, backend=backend, record=["block.lif3"])
    assert want.spikes["block.lif3"].sum() > 0  # the network spikes: the comparison means something
    np.testing.assert_array_equal(got.spikes["block.lif3"], want.spikes["block.lif3"])
    np.testing.assert_allclose(got.output, want.output)


def test_nested_graph_takes_events():
    ev = make_events([0, 1, 1, 0] * 5, [0, 1, 0, 1] * 5, np.arange(20) * 500, [1, 0, 1, 1] * 5)
    res = sf.simulate(nested(), ev, backend="numba-event", record=["block.lif3"], sensor_size=(2, 2, 2))
    ref = sf.simulate(nested(), ev, backend="torch", record=["block.lif3"], sensor_size=(2, 2, 2))
    np.testing.assert_array_equal(res.spikes["block.lif3"], ref.spikes["block.lif3"])
