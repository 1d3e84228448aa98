"""Sinabs models in spikeflow, spike train for spike train against Sinabs's own simulation.

``sf.from_sinabs`` (the live model) must give every layer's spikes exactly as Sinabs does, for each
neuron layer and reset; the naive import of the exporter's NIR (``sf.from_nir(sinabs.to_nir(m),
dt=1)``) reproduces the quirks it corrects; a Sinabs NIR *file* whose semantics NIR can express is
imported exactly with ``dt=1, integration="exact"``. Sinabs runs in float32 and spikeflow in float64:
inputs are event counts and weights generic, so no membrane lands within float32 rounding of a
threshold (where the two could differ); the tie test uses integer weights, exact in both.
"""

import warnings

import nir
import numpy as np
import pytest
import sinabs
import sinabs.layers as sl
import torch
from sinabs.activation import MembraneReset, MultiSpike, SingleSpike
from torch import nn

import spikeflow as sf
from spikeflow.errors import GraphError

B, T = 2, 16


@pytest.fixture(autouse=True)
def _quiet():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


LAYERS = {
    "IAF subtract": lambda: sl.IAFSqueeze(batch_size=B, spike_fn=SingleSpike),
    "IAF zero": lambda: sl.IAFSqueeze(batch_size=B, spike_fn=SingleSpike, reset_fn=MembraneReset()),
    "LIF": lambda: sl.LIFSqueeze(tau_mem=3.0, batch_size=B, spike_fn=SingleSpike, spike_threshold=0.3),
    "LIF norm_input=False": lambda: sl.LIFSqueeze(tau_mem=8.0, batch_size=B, spike_fn=SingleSpike, norm_input=False),
    "LIF zero": lambda: sl.LIFSqueeze(tau_mem=4.0, batch_size=B, spike_fn=SingleSpike, reset_fn=MembraneReset(), spike_threshold=0.15),
}


def cnn(layer, gain=2.0, readout=None):
    """A small Sinabs CNN (conv -> neuron -> sum pool -> conv -> neuron -> flatten -> linear -> neuron)."""
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), layer(), sl.SumPool2d(2), nn.Conv2d(4, 8, 3), layer(),
                      nn.Flatten(), nn.Linear(8 * 6 * 6, 10), readout() if readout else layer())
    with torch.no_grad():
        for mod in m:
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                mod.weight.mul_(gain)
    return m


def event_counts(seed=1) -> torch.Tensor:
    """N-MNIST-like event counts ``[B, T, 2, 16, 16]`` (0, 1 or 2 events per pixel and step)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(B, T, 2, 16, 16, generator=g) < 0.3).float() * torch.randint(1, 3, (B, T, 2, 16, 16), generator=g).float()


def sinabs_run(m, x):
    """Every layer's output, time-major ``[T, B, ...]``, from Sinabs's own simulation."""
    acts = {}
    hooks = [mod.register_forward_hook(lambda mod, i, o, k=k: acts.__setitem__(k, o)) for k, mod in m.named_modules() if k]
    sinabs.reset_states(m)
    with torch.no_grad():
        m(x.reshape(B * T, *x.shape[2:]))
    for h in hooks:
        h.remove()
    return {k: v.reshape(B, T, *v.shape[1:]).transpose(0, 1).double().numpy() for k, v in acts.items()}


def neurons(graph):
    return [k for k, v in graph.nodes.items() if getattr(v, "spiking", False)]


def spikeflow_run(graph, x, backend="numba-event"):
    record = [k for k, v in graph.nodes.items() if v.stateful]
    return sf.simulate(graph, x.transpose(0, 1).double().numpy(), backend=backend, record=record)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_from_sinabs_equals_sinabs_layer_by_layer(kind):
    m = cnn(LAYERS[kind])
    x = event_counts()
    graph = sf.from_sinabs(m, x.reshape(B * T, 2, 16, 16)[:B])
    assert graph.dt == 1.0 and graph.integration == "exact"
    theirs = sinabs_run(m, x)
    for backend in ("numba-event", "torch"):
        ours = spikeflow_run(graph, x, backend)
        for k in neurons(graph):
            assert np.array_equal(ours.spikes[k], theirs[k]), f"{kind}: spikes of layer {k} differ ({backend})"
    assert all(theirs[k].any() for k in neurons(graph)), "every layer spikes"


def test_exp_leak_readout_and_batch_time_layout():
    """Non-squeeze layers take ``[B, T, ...]``; an ExpLeak readout (input unscaled) is a LI node."""
    m = nn.Sequential(nn.Linear(20, 30), sl.IAF(spike_fn=SingleSpike), nn.Linear(30, 5), sl.ExpLeak(tau_mem=5.0))
    x = (torch.rand(B, T, 20, generator=torch.Generator().manual_seed(2)) < 0.4).float()
    graph = sf.from_sinabs(m, x)
    sinabs.reset_states(m)
    with torch.no_grad():
        hidden = m[1](m[0](x))
        out = m[3](m[2](hidden))
    ours = spikeflow_run(graph, x)
    assert hidden.any()
    assert np.array_equal(ours.spikes["1"], hidden.transpose(0, 1).numpy())
    np.testing.assert_allclose(ours.output, out.transpose(0, 1).double().numpy(), rtol=1e-5, atol=1e-5)


def test_threshold_ties_spike_as_in_sinabs():
    """Sinabs spikes at ``v >= threshold``: with integer weights membranes hit the threshold exactly."""
    m = nn.Sequential(nn.Linear(6, 4, bias=False), sl.IAF(spike_fn=SingleSpike, spike_threshold=torch.tensor(2.0)))
    with torch.no_grad():
        m[0].weight.copy_(torch.randint(-1, 3, (4, 6)).float())
    x = (torch.rand(B, T, 6, generator=torch.Generator().manual_seed(3)) < 0.5).float()
    graph = sf.from_sinabs(m, x)
    sinabs.reset_states(m)
    with torch.no_grad():
        theirs = m(x).transpose(0, 1).numpy()
    assert theirs.sum() > 5
    assert np.array_equal(spikeflow_run(graph, x).output, theirs)


@pytest.mark.parametrize("kind", ["IAF subtract", "LIF norm_input=False"])
def test_the_exporter_quirks_are_real(kind):
    """Without the corrections (the exporter's NIR read with dt=1), the spikes differ."""
    m = cnn(LAYERS[kind])
    x = event_counts()
    sample = x.reshape(B * T, 2, 16, 16)[:B]
    naive = sf.from_nir(sinabs.to_nir(m, sample), dt=1.0, integration="exact") if "LIF" in kind else None
    if naive is None:
        naive = _naive_graph(m, sample)
    sinabs.reset_states(m)
    theirs = sinabs_run(m, x)
    ours = spikeflow_run(naive, x)
    assert any(not np.array_equal(ours.spikes[k], theirs[k]) for k in neurons(naive))


def _naive_graph(m, sample):
    import spikeflow.io.peers as peers

    return peers._finish(sinabs.to_nir(m, sample), sample, 1.0, "Sinabs", integration="exact")


def test_sinabs_nir_file_imports_exactly_where_nir_expresses_it(tmp_path):
    """A file Sinabs wrote, for layers whose semantics NIR keeps (IAF with reset to zero):
    ``sf.from_nir(path, dt=1)`` spikes as Sinabs does. (``nir.write`` cannot store what Sinabs's
    exporter gives for Conv2d and Flatten, empty ``input_shape``/``input_type``, nor its scalar LIF
    parameters; so its files hold dense IAF layers. A non-Squeeze layer traced on ``[B, T, ...]``
    writes an Input of shape ``(T, ...)``.)"""
    m = nn.Sequential(nn.Linear(20, 30), sl.IAFSqueeze(batch_size=B, spike_fn=SingleSpike, reset_fn=MembraneReset()),
                      nn.Linear(30, 10), sl.IAFSqueeze(batch_size=B, spike_fn=SingleSpike, reset_fn=MembraneReset(),
                                                       spike_threshold=torch.tensor(0.5)))
    x = (torch.rand(B, T, 20, generator=torch.Generator().manual_seed(5)) < 0.4).float()
    nir.write(tmp_path / "sinabs.nir", sinabs.to_nir(m, x[:, 0]))  # Squeeze layers trace [B*T, ...]: the Input is (20,)
    graph = sf.from_nir(tmp_path / "sinabs.nir", dt=1.0)
    theirs = sinabs_run(m, x)
    ours = spikeflow_run(graph, x)
    for k in ("1", "3"):
        assert theirs[k].any() and np.array_equal(ours.spikes[k], theirs[k]), f"layer {k}"


@pytest.mark.parametrize("layer, match", [
    (lambda: sl.IAFSqueeze(batch_size=B), "MultiSpike.*SingleSpike"),
    (lambda: sl.IAFSqueeze(batch_size=B, spike_fn=SingleSpike, min_v_mem=-1.0), "min_v_mem"),
    (lambda: sl.LIFSqueeze(tau_mem=4.0, tau_syn=2.0, batch_size=B, spike_fn=SingleSpike), "tau_syn"),
    (lambda: sl.IAFSqueeze(batch_size=B, spike_fn=SingleSpike, reset_fn=MembraneReset(reset_value=0.5)), "MembraneReset"),
])
def test_refusals_name_the_layer_and_the_fix(layer, match):
    m = cnn(layer)
    with pytest.raises(GraphError, match=match):
        sf.from_sinabs(m, event_counts().reshape(B * T, 2, 16, 16)[:B])


def test_exporter_failures_are_graph_errors():
    """Sinabs's exporter itself fails on LIF(train_alphas=True) (it reads a tau_mem that layer lacks)."""
    m = nn.Sequential(nn.Linear(4, 3), sl.LIF(tau_mem=4.0, train_alphas=True, spike_fn=SingleSpike))
    with pytest.raises(GraphError, match="exporter"):
        sf.from_sinabs(m, torch.zeros(B, T, 4))


def test_multispike_is_the_default_and_is_refused():
    assert sl.IAF().spike_fn is MultiSpike  # why spike_fn=SingleSpike is asked for
