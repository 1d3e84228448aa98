"""Running a sequence in chunks: the state API of the fused scans and of GraphModule."""

import numpy as np
import pytest
import torch

import spikeflow as sf
from spikeflow.errors import DataError
from spikeflow.ir import nodes as n
from spikeflow.torch import functional as F
from spikeflow.torch.lowering import GraphState
from tests.backends import egru_graphs
from tests.torch._cases import CASES, inputs, params_for
from tests.torch._graphs import GRAPHS, random_inputs

SPLITS = ([12], [1] * 12, [5, 7], [3, 1, 4, 0, 2, 2], [2, 10])


def _chunks(x, sizes):
    """Split ``x`` (a tensor or a dict of tensors) along time into pieces of ``sizes``."""
    bounds = np.cumsum([0] + list(sizes))
    if isinstance(x, dict):
        return [{k: v[a:b] for k, v in x.items()} for a, b in zip(bounds, bounds[1:])]
    return [x[a:b] for a, b in zip(bounds, bounds[1:])]


def _cat(pieces):
    if isinstance(pieces[0], dict):
        return {k: torch.cat([p[k] for p in pieces]) for k in pieces[0]}
    return torch.cat(pieces)


def _equal(a, b):
    if isinstance(a, dict):
        return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    return torch.equal(a, b)


def _as_torch(x):
    return {k: torch.as_tensor(v) for k, v in x.items()} if isinstance(x, dict) else torch.as_tensor(x)


def _run_chunked(net, x, sizes, batch):
    state, outs = net.initial_state(batch), []
    for piece in _chunks(x, sizes):
        y, state = net.run_chunk(piece, state)
        outs.append(y)
    return _cat(outs), state


# ----------------------------------------------------------------------------- one neuron


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("case", sorted(CASES))
def test_neuron_chunks_equal_one_scan_bit_for_bit(case, fused):
    node = CASES[case]()
    x = torch.from_numpy(inputs(node, np.random.default_rng(2), T=12))
    dyn, coef = F.discretise_params(params_for(node), x)
    whole = F.neuron_scan(x, dyn, coef, fused=fused)
    for sizes in SPLITS:
        state, outs = None, []
        for piece in _chunks(x, sizes):
            y, state = F.neuron_chunk(piece, dyn, coef, state, fused=fused)
            outs.append(y)
        assert torch.equal(torch.cat(outs), whole), sizes
    # the final state is the one the step function reaches
    ref = None
    for t in range(x.shape[0]):
        _, ref = F.neuron_step(x[t], ref, dyn, coef)
    assert torch.equal(state.v, ref.v) and (state.i is None) == (ref.i is None)
    if ref.i is not None:
        assert torch.equal(state.i, ref.i)


@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("case", ["lif_zero", "lif_subtract", "li", "if_subtract", "cuba_lif_zero", "cuba_lif_subtract", "cuba_li"])
def test_fused_gradients_through_the_state_match_autograd_of_the_step_loop(case, detach):
    node = CASES[case]()
    rng = np.random.default_rng(3)
    x = inputs(node, rng, T=9)
    v0, i0 = rng.uniform(-0.2, 0.2, (2,) + x.shape[1:])
    weights = rng.normal(size=x.shape)
    taus = {k: getattr(node, k) for k in ("tau", "tau_mem") if hasattr(node, k)}
    kw = {"detach_reset": detach} if node.spiking else {}
    grads = {}
    for fused in (True, False):
        leaves = {"x": x, "v0": v0, "i0": i0, **taus}
        leaves = {k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for k, v in leaves.items()}
        params = params_for(node, **kw)._replace(**{k: leaves[k] for k in taus})
        dyn, coef = F.discretise_params(params, leaves["x"])
        start = F.State(leaves["v0"], leaves["i0"] if dyn.kind == "cuba" else None)
        y1, mid = F.neuron_chunk(leaves["x"][:4], dyn, coef, start, fused=fused)
        y2, end = F.neuron_chunk(leaves["x"][4:], dyn, coef, mid, fused=fused)
        loss = (torch.cat([y1, y2]) * torch.from_numpy(weights)).sum() + 0.7 * end.v.sum()
        if end.i is not None:
            loss = loss + 0.3 * end.i.sum()
        used = [k for k in leaves if k != "i0" or dyn.kind == "cuba"]
        grads[fused] = dict(zip(used, torch.autograd.grad(loss, [leaves[k] for k in used])))
    for k, g in grads[False].items():
        np.testing.assert_allclose(grads[True][k].numpy(), g.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)
    assert grads[True]["v0"].abs().sum() > 0  # the initial state really gets a gradient


def test_delay_chunks_equal_one_delay():
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(11, 2, 4)))
    steps = np.array([0, 1, 3, 5])
    whole = F.delay(x, steps)
    for sizes in ([11], [1] * 11, [4, 0, 7], [2, 6, 3]):
        hist, outs = None, []
        for piece in _chunks(x, sizes):
            y, hist = F.delay_chunk(piece, steps, hist)
            outs.append(y)
        assert torch.equal(torch.cat(outs), whole)
        assert torch.equal(hist, x[-5:])
    with pytest.raises(DataError, match=r"last 5 inputs"):
        F.delay_chunk(x, steps, torch.zeros(4, 2, 4))


def test_neuron_state_shape_is_checked():
    node = CASES["cuba_lif_zero"]()
    x = torch.from_numpy(inputs(node, np.random.default_rng(0), T=3))
    dyn, coef = F.discretise_params(params_for(node), x)
    with pytest.raises(DataError, match=r"field 'i'.*\(3, 5\)"):
        F.neuron_chunk(x, dyn, coef, F.State(torch.zeros(3, 5)))
    with pytest.raises(DataError, match=r"field 'v'"):
        F.neuron_chunk(x, dyn, coef, F.State(torch.zeros(2, 5), torch.zeros(3, 5)))


# ----------------------------------------------------------------------------- a graph


def _egru_loop(seed):
    return egru_graphs.loop(seed)


CHUNK_GRAPHS = {**GRAPHS, "egru_single": egru_graphs.single, "egru_loop": _egru_loop}


@pytest.mark.parametrize("limit", [0.0, 1.0])
@pytest.mark.parametrize("name", sorted(CHUNK_GRAPHS))
def test_graph_chunks_equal_one_call_bit_for_bit(name, limit):
    graph = CHUNK_GRAPHS[name](1)
    net = sf.to_torch(graph, dtype=torch.float64)
    net.sparse_limit = limit  # fixed dense (0) or sparse (1) products: same rounding in every chunk
    x = _as_torch(random_inputs(graph, seed=5, T=12, B=3))
    with torch.no_grad():
        whole = net(x)
        for sizes in SPLITS:
            got, state = _run_chunked(net, x, sizes, 3)
            assert _equal(got, whole), (name, sizes)
            assert isinstance(state, GraphState) and state.batch == 3


def test_recurrent_state_carries_delays_and_loops():
    graph = GRAPHS["recurrent"](0)
    net = sf.to_torch(graph, dtype=torch.float64)
    state = net.initial_state(2)
    assert set(state.nodes) == {"lif", "delay", "if_self", "li"} and state.carried == {}
    assert state.nodes["delay"].shape == (2, 2, 6)  # max delay 2 steps
    x = _as_torch(random_inputs(graph, seed=1, T=5, B=2))
    with torch.no_grad():
        _, state = net.run_chunk(x, state)
    assert sorted(state.carried) == sorted({a for a, _ in net.delayed})


@pytest.mark.parametrize("name", ["feed_forward", "recurrent", "conv_stack", "egru_loop"])
def test_select_keeps_a_subset_exactly(name):
    graph = CHUNK_GRAPHS[name](2)
    net = sf.to_torch(graph, dtype=torch.float64)
    net.sparse_limit = 0.0
    x = _as_torch(random_inputs(graph, seed=7, T=10, B=5))
    keep = [4, 1, 3]
    with torch.no_grad():
        y1, state = net.run_chunk(x[:4], net.initial_state(5))
        y2, state = net.run_chunk(x[4:7, keep], net.select(state, keep))
        y3, state = net.run_chunk(x[7:, [keep[2]]], net.select(state, torch.tensor([2])))  # sample 3
        alone = net(x[:, keep])
    assert torch.equal(torch.cat([y1[:, keep], y2]), alone[:7])
    assert torch.equal(y3, alone[7:, [2]])


@pytest.mark.parametrize("name", ["feed_forward", "recurrent", "conv_stack", "egru_loop"])
def test_join_admits_fresh_samples_next_to_running_ones(name):
    """Continuous batching: samples 0-1 run 4 steps, then samples 2-3 join from rest; each sample's
    outputs equal those of running it alone from its own start."""
    graph = CHUNK_GRAPHS[name](2)
    net = sf.to_torch(graph, dtype=torch.float64)
    net.sparse_limit = 0.0
    x = _as_torch(random_inputs(graph, seed=8, T=10, B=4))
    with torch.no_grad():
        y1, state = net.run_chunk(x[:4, :2], net.initial_state(2))
        state = net.join(state, net.initial_state(2))
        assert state.batch == 4
        late = torch.cat([x[4:10, :2], x[:6, 2:]], 1)  # the running samples' steps 4-9, the new ones' 0-5
        y2, _ = net.run_chunk(late, state)
        alone = net(x)
    assert torch.equal(torch.cat([y1, y2[:, :2]]), alone[:, :2])
    assert torch.equal(y2[:, 2:], alone[:6, 2:])
    with pytest.raises(DataError, match="GraphState"):
        net.join(state, None)


def test_gradients_flow_across_chunks():
    graph = GRAPHS["feed_forward"](0)
    x = torch.as_tensor(random_inputs(graph, seed=3, T=12, B=2))
    grads = []
    for sizes in ([12], [5, 7]):
        net = sf.to_torch(graph, train_tau=True, dtype=torch.float64)
        net.sparse_limit = 0.0
        y, _ = _run_chunked(net, x, sizes, 2)
        (y * torch.linspace(-1, 1, y.shape[-1], dtype=torch.float64)).sum().backward()
        grads.append({k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None})
    assert sorted(grads[0]) == sorted(grads[1]) and any("tau" in k for k in grads[0])
    for k in grads[0]:
        np.testing.assert_allclose(grads[1][k].numpy(), grads[0][k].numpy(), rtol=1e-9, atol=1e-12, err_msg=k)


def test_chunk_api_errors():
    graph = GRAPHS["feed_forward"](0)
    net = sf.to_torch(graph, dtype=torch.float64)
    x = torch.as_tensor(random_inputs(graph, seed=0, T=3, B=2))
    with pytest.raises(DataError, match="batch size"):
        net.initial_state(0)
    with pytest.raises(DataError, match="GraphState"):
        net.run_chunk(x, None)
    with pytest.raises(DataError, match="holds 3 samples, the input 2"):
        net.run_chunk(x, net.initial_state(3))
    state = net.initial_state(2)
    with pytest.raises(DataError, match=r"\[0, 2\)"):
        net.select(state, [0, 2])
    with pytest.raises(DataError, match="integer"):
        net.select(state, [True, False])
    with pytest.raises(DataError, match="GraphState"):
        net.select({}, [0])


def test_odd_row_counts_round_like_a_large_gemm():
    """float64 dense layers: a row's value must not depend on how many rows share the product."""
    rng = np.random.default_rng(0)
    graph = sf.Graph.sequential(n.Input(shape=(300,)), n.Linear(weight=rng.normal(size=(64, 300))), dt=1e-3)
    net = sf.to_torch(graph, dtype=torch.float64)
    net.sparse_limit = 0.0
    x = torch.from_numpy(rng.normal(size=(1, 37, 300)))
    with torch.no_grad():
        whole = net(x)
        for b in (1, 2, 3, 5, 9):
            assert torch.equal(net(x[:, :b]), whole[:, :b])
