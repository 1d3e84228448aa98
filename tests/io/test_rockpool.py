"""Rockpool models in spikeflow, spike train for spike train against Rockpool's own simulation.

``sf.from_rockpool`` (the live model, through Rockpool's NIR exporter) gives every LIF layer's
spikes exactly as Rockpool does; the exporter's NIR read as it is (its gains, no bias, no
subtractive reset) does not. Rockpool runs in float32, spikeflow in float64; inputs are event
counts and weights generic, so no membrane lands within float32 rounding of a threshold.
"""

import warnings

import numpy as np
import pytest
import torch
from rockpool.nn.combinators import Sequential
from rockpool.nn.modules import LIFTorch, LinearTorch
from rockpool.nn.modules.torch.nir import to_nir

import spikeflow as sf
from spikeflow.errors import GraphError

B, T, DT = 2, 60, 1e-3


@pytest.fixture(autouse=True)
def _quiet():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def network(bias=0.01, **lif):
    options = {"dt": DT, "max_spikes_per_dt": 1, **lif}
    return Sequential(LinearTorch((20, 30), has_bias=True), LIFTorch(30, tau_mem=0.02, tau_syn=0.01, bias=bias, **options),
                      LinearTorch((30, 5)), LIFTorch(5, tau_mem=0.03, tau_syn=0.005, threshold=0.5, **options))


def events(seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(B, T, 20, generator=g) < 0.3).float() * torch.randint(1, 4, (B, T, 20), generator=g).float()


def rockpool_spikes(net, x):
    net.reset_state()
    _, _, rec = net(x, record=True)
    return {k: v["spikes"].transpose(0, 1).detach().double().numpy() for k, v in rec.items() if isinstance(v, dict) and "spikes" in v}


def run(graph, x, backend="numba-event"):
    lifs = [k for k, v in graph.nodes.items() if getattr(v, "spiking", False)]
    return sf.simulate(graph, x.transpose(0, 1).double().numpy(), backend=backend, record=lifs)


@pytest.mark.parametrize("bias", [0.0, 0.01])
def test_from_rockpool_equals_rockpool(bias):
    net, x = network(bias), events()
    graph = sf.from_rockpool(net)
    assert graph.dt == DT and graph.integration == "exact"
    theirs = rockpool_spikes(net, x)
    for backend in ("numba-event", "torch"):
        ours = run(graph, x, backend)
        for k in ("1_LIFTorch", "3_LIFTorch"):
            assert theirs[k].any() and np.array_equal(ours.spikes[k], theirs[k]), f"layer {k} ({backend})"


def test_the_exporter_quirks_are_real():
    """Rockpool's NIR read as written (its batch dimension dropped) spikes differently."""
    import spikeflow.io.peers as peers

    net, x = network(), events()
    sample = torch.zeros(1, 20)
    naive = peers._finish(to_nir(net, sample), sample, DT, "Rockpool", integration="exact")
    theirs, ours = rockpool_spikes(net, x), run(naive, x)
    assert not np.array_equal(ours.spikes["3_LIFTorch"], theirs["3_LIFTorch"])


@pytest.mark.parametrize("options, match", [
    ({"max_spikes_per_dt": 2.0**16}, "max_spikes_per_dt=1"),
    ({"noise_std": 0.1}, "noise_std"),
    ({"has_rec": True}, "w_rec"),
])
def test_refusals_name_the_fix(options, match):
    with pytest.raises(GraphError, match=match):
        sf.from_rockpool(network(**options))
