"""EGRU nodes through ``sf.to_torch`` / ``sf.to_graph``: the NumPy reference, exact round trips."""

import numpy as np
import pytest
import torch

import spikeflow as sf
from spikeflow.ir import nodes as n
from spikeflow.torch.egru import EGRU, egru_from_node
from tests.backends.egru_graphs import GRAPHS, egru_names, egru_node, reference, sparse_inputs

SEEDS = (0, 1)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", sorted(GRAPHS))
def test_float64_equals_numpy_reference(kind, seed):
    graph = GRAPHS[kind](seed)
    x = sparse_inputs(graph, seed)
    ref = reference(graph, x)
    with torch.no_grad():
        y, got = sf.to_torch(graph, dtype=torch.float64).run(torch.tensor(x), record=tuple(ref))
    for name, expected in ref.items():
        np.testing.assert_allclose(got[name].numpy(), expected, rtol=1e-12, atol=1e-12, err_msg=name)
    for name in egru_names(graph):
        zeros = ref[name] == 0
        assert 0.5 < zeros.mean() < 0.99, f"{name}: events should be sparse but present"
        assert np.array_equal(got[name].numpy() == 0, zeros), f"{name}: event pattern differs"
    assert torch.equal(y, got["output"])


@pytest.mark.parametrize("kind", ["single", "stacked", "conv"])
def test_float64_events_equal_numba_event_bit_for_bit(kind):
    graph = GRAPHS[kind](0)
    x = sparse_inputs(graph, 0)
    names = egru_names(graph)
    res = sf.simulate(graph, x, backend="numba-event", record=names)
    with torch.no_grad():
        _, got = sf.to_torch(graph, dtype=torch.float64).run(torch.tensor(x), record=names)
    for name in names:
        assert np.array_equal(got[name].numpy(), res.traces[name]), name


def test_the_rule_builds_a_time_major_egru_module():
    graph = GRAPHS["stacked"](0)
    net = sf.to_torch(graph, dtype=torch.float64)
    layers = [net.layers[k] for k in egru_names(graph)]
    assert all(isinstance(layer, EGRU) and layer.num_layers == 1 and not layer.batch_first for layer in layers)
    assert layers[1].trace_decay == 0.6 and layers[0].weight_hh_l0.dtype == torch.float64
    x = torch.tensor(sparse_inputs(graph, 0))
    with torch.no_grad():
        direct, _ = egru_from_node(graph.nodes["egru1"])(x)
        _, rec = net.run(x, record=("egru1",))
    assert torch.equal(direct, rec["egru1"])


@pytest.mark.parametrize("kind", ["stacked", "loop"])
def test_fresh_state_every_call(kind):
    graph = GRAPHS[kind](1)
    net = sf.to_torch(graph, dtype=torch.float64)
    x = torch.tensor(sparse_inputs(graph, 1))
    names = egru_names(graph)
    with torch.no_grad():
        _, first = net.run(x, record=names)
        _, again = net.run(x, record=names)
        _, short = net.run(x[:5], record=names)  # no state leaks from the previous, longer call
    for name in names:
        assert torch.equal(again[name], first[name]) and torch.equal(short[name], first[name][:5]), name


@pytest.mark.parametrize("kind", sorted(GRAPHS))
def test_to_graph_round_trip_is_exact(kind, tmp_path):
    graph = GRAPHS[kind](0)
    back = sf.to_graph(sf.to_torch(graph, dtype=torch.float64))
    assert back == graph
    sf.save(back, tmp_path / "g.h5")
    assert sf.load(tmp_path / "g.h5") == graph


def test_trained_parameters_reach_the_graph():
    graph = GRAPHS["single"](0)
    net = sf.to_torch(graph, train_threshold=True, dtype=torch.float64)
    layer = net.layers["egru1"]
    assert isinstance(layer.threshold_l0, torch.nn.Parameter)
    x = torch.tensor(sparse_inputs(graph, 0))
    net(x).square().sum().backward()
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "threshold_l0"):
        grad = getattr(layer, name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    with torch.no_grad():
        layer.weight_hh_l0.mul_(0.5)
    back = sf.to_graph(net)
    np.testing.assert_array_equal(back.nodes["egru1"].weight_hh, graph.nodes["egru1"].weight_hh * 0.5)
    assert back.nodes["affine2"] == graph.nodes["affine2"]


def test_to_graph_of_an_egru_module_is_one_node_per_layer():
    torch.manual_seed(0)
    module = EGRU(4, 6, num_layers=2, dtype=torch.float64, threshold_mean=0.15, trace_decay=0.5).eval()
    graph = sf.to_graph(module)
    assert list(graph.nodes) == ["input", "egru1_1", "egru1_2", "output"]
    assert graph.nodes["egru1_2"].trace_decay == 0.5 and graph.nodes["egru1_1"].trace_decay == 0
    x = torch.tensor(sparse_inputs(graph, 2))
    with torch.no_grad():
        want, _ = module(x)
    assert torch.equal(sf.to_torch(graph, dtype=torch.float64)(x), want)
    assert np.array_equal(sf.simulate(graph, x.numpy(), backend="numba-event").output, want.numpy())


def test_a_multi_layer_module_is_not_one_node():
    from spikeflow.torch.lowering import node_of

    with pytest.raises(sf.BackendError, match="2-layer"):
        node_of(EGRU(3, 4, num_layers=2), where="layer 1: ")
    assert node_of(EGRU(3, 4, dtype=torch.float64)).hidden_size == 4


def test_float32_module_runs_close_to_float64():
    graph = GRAPHS["conv"](1)
    x = torch.tensor(sparse_inputs(graph, 1))
    net = sf.to_torch(graph, dtype=torch.float64)
    with torch.no_grad():
        y64 = net(x)
        y32 = net.float()(x.float())
    assert y32.dtype == torch.float32
    np.testing.assert_allclose(y32.numpy(), y64.numpy(), rtol=1e-4, atol=1e-4)


def test_bad_input_names_the_problem():
    graph = GRAPHS["single"](0)
    with pytest.raises(sf.DataError, match="input"):
        sf.to_torch(graph, dtype=torch.float64)(torch.zeros(4, 2, 6, dtype=torch.float64))


def test_to_nir_raises_naming_the_egru_node():
    pytest.importorskip("nir")
    rng = np.random.default_rng(0)
    graph = sf.Graph.sequential(n.Input(shape=(3,)), egru_node(rng, 3, 4), n.Linear(weight=np.ones((2, 4))))
    with pytest.raises(sf.SpikeflowError, match="'egru1'"):
        sf.to_nir(graph)
