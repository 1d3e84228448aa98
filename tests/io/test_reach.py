"""from_nir warns when a foreign graph's neurons cannot reach their thresholds at the chosen dt."""

import warnings

import nir
import numpy as np
import pytest
import sinabs
import sinabs.layers as sl
import torch
from sinabs.activation import SingleSpike
from torch import nn

import spikeflow as sf
from spikeflow.io.reach import unreachable_thresholds


def foreign_if(r=1.0, weight=0.5):
    """A per-step IF layer as Sinabs writes it (r = 1: the whole input each step when dt = 1)."""
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([4])}), "w": nir.Linear(weight=np.full((3, 4), weight)),
               "if": nir.IF(r=np.full(3, r), v_threshold=np.full(3, 1.0)), "output": nir.Output(output_type={"output": np.array([3])})},
        edges=[("input", "w"), ("w", "if"), ("if", "output")],
    )


def no_warnings(source, dt):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return sf.from_nir(source, dt=dt)


def test_if_layer_with_tiny_step_warns_with_the_likely_dt():
    with pytest.warns(UserWarning, match=r"node 'if' \(IF\).*more than 1000 steps at dt=1e-05.*likely used a larger dt.*dt = 1"):
        graph = sf.from_nir(foreign_if(), dt=1e-5)
    x = np.ones((200, 1, 4))
    assert sf.simulate(graph, x, backend="numba-event").output.sum() == 0  # the warning was right: silent
    assert sf.simulate(no_warnings(foreign_if(), 1.0), x, backend="numba-event").output.sum() > 0


def test_lost_input_gain_warns_at_any_dt():
    """Sinabs's LIF(norm_input=False) exported with r = 1: its steady state stays under threshold."""
    m = nn.Sequential(nn.Linear(4, 3, bias=False), sl.LIF(tau_mem=20.0, spike_fn=SingleSpike, norm_input=False))
    with torch.no_grad():
        m[0].weight.fill_(0.1)
    ng = sinabs.to_nir(m, torch.zeros(1, 4))
    with pytest.warns(UserWarning, match=r"steady-state potential.*below v_threshold=1 at any dt"):
        sf.from_nir(ng, dt=1.0, integration="exact")
    with warnings.catch_warnings(record=True) as caught:  # the live import restores the gain r = 1/(1-alpha): no warning
        warnings.simplefilter("always")
        sf.from_sinabs(m, torch.zeros(1, 5, 4))
    assert not [w for w in caught if "v_threshold" in str(w.message)]


def test_slow_time_constants_warn():
    m = nn.Sequential(nn.Linear(4, 3, bias=False), sl.LIF(tau_mem=20.0, spike_fn=SingleSpike))
    with torch.no_grad():
        m[0].weight.fill_(1.0)
    ng = sinabs.to_nir(m, torch.zeros(1, 4))
    with pytest.warns(UserWarning, match=r"tau=20 s at dt=0.001.*dt = 1 if its time constants count steps"):
        sf.from_nir(ng, dt=1e-3, integration="exact")
    no_warnings(ng, 1.0)


def test_spikeflow_files_and_reachable_graphs_do_not_warn(tmp_path):
    graph = no_warnings(foreign_if(), 1.0)
    sf.to_nir(sf.Graph(graph.nodes, graph.edges, dt=1e-5), tmp_path / "own.nir")
    no_warnings(tmp_path / "own.nir", None)  # spikeflow wrote its dt: nothing was guessed
    assert unreachable_thresholds(sf.from_nir(tmp_path / "own.nir")) != []  # though the check itself would complain
