import numpy as np
import pytest
import torch
from torch import nn

import spikeflow as sf
from spikeflow.ir import nodes as n
from spikeflow.torch import lowering
from spikeflow.torch.modules import IF, LI, LIF, CubaLIF, RecurrentLIF
from tests.reference.graph_sim import simulate
from tests.torch._graphs import GRAPHS, nested_flat, random_inputs

SEEDS = (0, 3)


def _tensors(x):
    return {k: torch.tensor(v) for k, v in x.items()} if isinstance(x, dict) else torch.tensor(x)


def _assert_matches_reference(graph, got: dict, ref: dict):
    flat = graph.flatten()
    for name, expected in ref.items():
        value = got[name].detach().numpy()
        if flat.nodes[name].spiking:
            assert np.array_equal(value, expected), f"spikes of {name!r} differ"
            assert 0 < expected.mean() < 1, f"{name!r} should spike sometimes"
        else:
            np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", sorted(set(GRAPHS) - {"nested"}))
def test_float64_spikes_equal_reference_simulator(kind, seed):
    graph = GRAPHS[kind](seed)
    x = random_inputs(graph, seed)
    ref = simulate(graph, x)
    _, got = sf.to_torch(graph, dtype=torch.float64).double().run(_tensors(x), record=tuple(ref))
    _assert_matches_reference(graph, got, ref)


def test_every_lowered_node_type_is_covered():
    from tests.backends.egru_graphs import GRAPHS as EGRU_GRAPHS  # graph_sim has no EGRU: test_egru_lowering.py

    graphs = [make(0) for make in GRAPHS.values()] + [make(0) for make in EGRU_GRAPHS.values()]
    covered = {type(node).__name__ for graph in graphs for node in graph.flatten().nodes.values()}
    assert covered == {t.__name__ for t in lowering.LOWERING}


@pytest.mark.parametrize("seed", SEEDS)
def test_nested_graph_equals_its_flat_twin_and_the_reference(seed):
    nested, flat = GRAPHS["nested"](seed), nested_flat(seed)
    x = random_inputs(flat, seed)
    ref = simulate(flat, x)
    _, got = sf.to_torch(flat, dtype=torch.float64).run(_tensors(x), record=tuple(ref))
    _assert_matches_reference(flat, got, ref)
    y, rec = sf.to_torch(nested, dtype=torch.float64).run(_tensors(x), record=("rnn.lif",))
    assert torch.equal(y, got["output"])
    assert torch.equal(rec["rnn.lif"], got["rnn_lif"])


@pytest.mark.parametrize("fused", [True, False])
def test_fused_and_loop_paths_agree_inside_graphs(fused):
    graph = GRAPHS["feed_forward"](0)
    x = torch.tensor(random_inputs(graph, 0))
    y = sf.to_torch(graph, fused=fused, dtype=torch.float64)(x)
    assert torch.equal(y, sf.to_torch(graph, fused=not fused, dtype=torch.float64)(x))


def test_two_ports_take_and_return_dicts():
    graph = GRAPHS["two_ports"](0)
    x = random_inputs(graph, 0)
    y = sf.to_torch(graph, dtype=torch.float64)(_tensors(x))
    assert sorted(y) == ["membrane", "spikes"]
    assert y["spikes"].shape == (12, 2, 5)


@pytest.mark.parametrize("kind", sorted(GRAPHS))
def test_round_trip_to_graph_is_exact(kind):
    graph = GRAPHS[kind](0)
    assert sf.to_graph(sf.to_torch(graph, dtype=torch.float64)) == graph
    assert sf.to_graph(sf.to_torch(graph, train_tau=True, train_threshold=True, dtype=torch.float64)) == graph


def test_float32_module_keeps_neuron_constants_exact():
    graph = GRAPHS["feed_forward"](1)
    back = sf.to_graph(sf.to_torch(graph, dtype=torch.float64).float())
    for name, node in graph.nodes.items():
        if node.stateful:
            assert back.nodes[name] == node
    np.testing.assert_allclose(back.nodes["affine1"].weight, graph.nodes["affine1"].weight, rtol=1e-7)


def test_training_changes_weights_tau_and_threshold_and_to_graph_sees_it():
    graph = GRAPHS["recurrent"](0)
    net = sf.to_torch(graph, train_tau=True, train_threshold=True, dtype=torch.float64).float()
    names = dict(net.named_parameters())
    assert "layers.lif.tau" in names and "layers.lif.v_threshold" in names and "layers.if_self.v_threshold" in names
    x = torch.tensor(random_inputs(graph, 0), dtype=torch.float32)
    opt = torch.optim.SGD(net.parameters(), lr=1e-4)
    net(x).pow(2).sum().backward()
    for key in ("layers.in_w.weight", "layers.rec_w.weight", "layers.lif.tau", "layers.lif.v_threshold"):
        assert names[key].grad is not None and names[key].grad.abs().sum() > 0, key
    opt.step()
    back = sf.to_graph(net)
    assert not np.array_equal(back.nodes["lif"].tau, graph.nodes["lif"].tau)
    assert not np.array_equal(back.nodes["rec_w"].weight, graph.nodes["rec_w"].weight)


def test_run_records_named_nodes():
    graph = GRAPHS["recurrent"](0)
    x = torch.tensor(random_inputs(graph, 0))
    y, rec = sf.to_torch(graph, dtype=torch.float64).run(x, record=["lif", "delay"])
    assert rec["lif"].shape == (12, 2, 6) and set(rec["lif"].unique().tolist()) <= {0.0, 1.0}
    assert y.shape == (12, 2, 3)


# ------------------------------------------------------------------ nn.Sequential -> graph


def _run_sequential(seq, x):
    """Run layers time-major: stateless layers on all T*B samples, spikeflow modules on [T, B, ...]."""
    for layer in seq:
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.Conv1d, nn.AvgPool2d, nn.Flatten)):
            y = layer(x.reshape((-1,) + tuple(x.shape[2:])))
            x = y.reshape(tuple(x.shape[:2]) + tuple(y.shape[1:]))
        else:
            x = layer(x)
    return x


def test_sequential_mlp_to_graph_and_back():
    torch.manual_seed(0)
    seq = nn.Sequential(
        nn.Linear(6, 8, dtype=torch.float64), LIF(tau=0.01, v_threshold=0.2, dtype=torch.float64),
        nn.Linear(8, 4, bias=False, dtype=torch.float64), CubaLIF(tau_syn=0.003, tau_mem=0.02, v_threshold=0.02, reset="subtract"),
        nn.Linear(4, 2, dtype=torch.float64), LI(tau=0.02),
    )
    graph = sf.to_graph(seq)
    assert [type(v).__name__ for v in graph.nodes.values()] == ["Input", "Affine", "LIF", "Linear", "CubaLIF", "Affine", "LI", "Output"]
    x = torch.rand(15, 3, 6, dtype=torch.float64) * 3
    expected = _run_sequential(seq, x)
    assert torch.equal(sf.to_torch(graph, dtype=torch.float64)(x), expected)


def test_sequential_conv_stack_to_graph_needs_sample():
    torch.manual_seed(1)
    seq = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, dtype=torch.float64), IF(v_threshold=0.002),
        nn.AvgPool2d(2, divisor_override=1), nn.Conv2d(4, 4, 2, bias=False, dtype=torch.float64), LIF(tau=0.01, v_threshold=0.05),
        nn.AvgPool2d(2, stride=1, padding=1), nn.Flatten(), nn.Linear(4 * 3 * 3, 3, dtype=torch.float64), LIF(tau=0.02, v_threshold=0.01),
    )
    x = torch.rand(10, 2, 2, 6, 6, dtype=torch.float64)
    with pytest.raises(sf.GraphError, match="pass sample"):
        sf.to_graph(seq)
    graph = sf.to_graph(seq, x)
    kinds = [type(v).__name__ for v in graph.nodes.values()]
    assert kinds[1:9] == ["Conv2d", "IF", "SumPool2d", "Conv2d", "LIF", "AvgPool2d", "Flatten", "Affine"]
    assert graph.nodes["flatten7"].start_dim == 0 and graph.nodes["flatten7"].end_dim == -1
    expected = _run_sequential(seq, x)
    assert expected.abs().sum() > 0
    assert torch.equal(sf.to_torch(graph, dtype=torch.float64)(x), expected)
    assert sf.to_graph(sf.to_torch(graph, dtype=torch.float64)) == graph


def test_recurrent_layer_maps_to_a_recurrent_subgraph():
    torch.manual_seed(2)
    seq = nn.Sequential(
        nn.Linear(4, 6, dtype=torch.float64),
        RecurrentLIF(6, tau=0.01, v_threshold=0.1, dtype=torch.float64),
        nn.Linear(6, 2, dtype=torch.float64),
        LI(tau=0.01),
    )
    graph = sf.to_graph(seq)
    sub = graph.nodes["recurrent2"]
    assert isinstance(sub, sf.Graph) and ("recurrent", "lif") in sub.edges
    assert graph.flatten().delayed_edges() == [("recurrent2.recurrent", "recurrent2.lif")]
    x = torch.rand(20, 3, 4, dtype=torch.float64) * 4
    expected = _run_sequential(seq, x)
    net = sf.to_torch(graph, dtype=torch.float64)
    y, rec = net.run(x, record=("recurrent2.lif",))
    assert 0 < rec["recurrent2.lif"].mean() < 1
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------- errors


def test_unsupported_node_names_node_type_and_backend(monkeypatch):
    monkeypatch.delitem(lowering.LOWERING, n.Scale)
    with pytest.raises(sf.BackendError) as err:
        sf.to_torch(GRAPHS["feed_forward"](0), dtype=torch.float64)
    assert all(word in str(err.value) for word in ("'scale6'", "Scale", "torch"))


def test_bad_inputs_raise_data_errors():
    net = sf.to_torch(GRAPHS["feed_forward"](0), dtype=torch.float64)
    with pytest.raises(sf.DataError, match=r"input 'input'.*\(6,\).*\(4, 2, 5\)"):
        net(torch.zeros(4, 2, 5))
    with pytest.raises(sf.DataError, match="record"):
        net.run(torch.zeros(4, 2, 6), record=("nope",))
    two = sf.to_torch(GRAPHS["two_ports"](0), dtype=torch.float64)
    with pytest.raises(sf.DataError, match="dict"):
        two(torch.zeros(4, 2, 4))
    with pytest.raises(sf.DataError, match=r"\['a', 'b'\]"):
        two({"a": torch.zeros(4, 2, 4)})
    with pytest.raises(sf.GraphError):
        sf.to_torch("not a graph")


def test_to_graph_errors_name_the_layer():
    with pytest.raises(sf.BackendError, match="layer 2.*ReLU.*torch"):
        sf.to_graph(nn.Sequential(nn.Linear(3, 2), nn.ReLU()))
    with pytest.raises(sf.BackendError, match="batch"):
        sf.to_graph(nn.Sequential(nn.Flatten(0), nn.Linear(3, 2)), torch.zeros(2, 2, 3))
    with pytest.raises(sf.GraphError, match="dt"):
        sf.to_graph(nn.Sequential(nn.Linear(3, 2), LIF(tau=0.01, dt=1e-3), nn.Linear(2, 2), LIF(tau=0.01, dt=2e-3)))
    with pytest.raises(sf.GraphError, match="layer 2"):
        sf.to_graph(nn.Sequential(nn.Linear(3, 2), nn.Linear(3, 2)))
    with pytest.raises(sf.BackendError, match="padding"):
        sf.to_graph(nn.Sequential(nn.Conv2d(1, 1, 3, padding="same")), torch.zeros(1, 1, 1, 5, 5))


# ------------------------------------------------------------------------------- dtypes


def test_default_dtype_is_torchs_and_float64_is_on_request():
    graph = GRAPHS["feed_forward"](0)
    assert all(p.dtype == torch.float32 for p in sf.to_torch(graph).parameters())
    assert all(p.dtype == torch.float64 for p in sf.to_torch(graph, dtype=torch.float64).parameters())
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert all(p.dtype == torch.float64 for p in sf.to_torch(graph).parameters())
    finally:
        torch.set_default_dtype(previous)


def test_inputs_of_another_dtype_are_cast_once_to_the_modules():
    graph = GRAPHS["feed_forward"](0)
    x = random_inputs(graph, 0)
    net32, net64 = sf.to_torch(graph), sf.to_torch(graph, dtype=torch.float64)
    y32 = net32(torch.tensor(x))  # float64 input into a float32 module
    assert y32.dtype == torch.float32 and torch.equal(y32, net32(torch.tensor(x).float()))
    assert net64(torch.tensor(x).float()).dtype == torch.float64
    # float32 is float64 rounded: the membranes agree to float32 precision
    _, rec32 = net32.run(torch.tensor(x), record=tuple(graph.flatten().nodes))
    _, rec64 = net64.run(torch.tensor(x), record=tuple(graph.flatten().nodes))
    name = next(k for k, node in graph.flatten().nodes.items() if not node.spiking and k != "input")
    np.testing.assert_allclose(rec32[name].detach().numpy(), rec64[name].detach().numpy(), rtol=1e-3, atol=1e-3)
