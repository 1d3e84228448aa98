"""Long-sequence training strategies: lean BPTT equals full BPTT, TBPTT cuts at chunk
boundaries, OTTT matches a slow reference; memory-relevant behaviour (sparse input, chunks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import spikeflow as sf
from spikeflow.errors import DataError
from spikeflow.ir import nodes as n
from spikeflow.torch.surrogate import surrogate
from spikeflow.train.long_sequences import Chunks, map_state, train_step
from tests.backends import egru_graphs
from tests.reference.ottt import ottt_grads
from tests.torch import _graphs

GRAPHS = {
    **{k: _graphs.GRAPHS[k] for k in ("feed_forward", "conv_stack", "conv1d_stack", "recurrent", "nested")},
    "egru": egru_graphs.single,
    "egru_conv": egru_graphs.conv,
    "egru_loop": egru_graphs.loop,
}


def _inputs(name, graph, T=17, B=3):
    if name.startswith("egru"):
        return torch.as_tensor(egru_graphs.sparse_inputs(graph, 0, steps=T, batch=B))
    return torch.as_tensor(_graphs.random_inputs(graph, 0, T=T, B=B))


def _loss(y):
    w = torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype)
    return (y * w).sum() + 0.1 * (y.sum(0) ** 2).sum()


def _grads(net, x, strategy, chunk, loss=_loss):
    net.zero_grad(set_to_none=True)
    res = train_step(net, x, loss, strategy=strategy, chunk=chunk)
    return res, {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_lean_bptt_gradients_equal_full_bptt(name):
    graph = GRAPHS[name](0)
    net = sf.to_torch(graph, train_tau=True, train_threshold=True, dtype=torch.float64)
    net.sparse_limit = 0  # the same dense products in both runs
    x = _inputs(name, graph)
    full, g_full = _grads(net, x, "full", 0 + 1)
    assert g_full and any(float(g.abs().max()) > 0 for g in g_full.values())
    for chunk in (1, 4, 17, 40):
        lean, g_lean = _grads(net, x, "bptt", chunk)
        assert lean.loss == full.loss
        assert torch.equal(lean.outputs, full.outputs)
        assert sorted(g_lean) == sorted(g_full)
        for k in g_full:
            torch.testing.assert_close(g_lean[k], g_full[k], rtol=1e-11, atol=1e-12 * float(g_full[k].abs().max()), msg=k)



@pytest.mark.parametrize("name", ["feed_forward", "recurrent", "nested"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lean_bptt_with_sparse_products_equals_full_bptt(name, dtype):
    """With the sparse products on (every dense layer), lean BPTT's no-grad pass uses the CSR-free
    inference product and its reruns the autograd sparse product: the outputs must be the same bits
    as full BPTT's, the gradients equal up to the order of the sums."""
    graph = GRAPHS[name](0)
    net = sf.to_torch(graph, train_tau=True, train_threshold=True, dtype=dtype)
    net.sparse_limit = 1.0
    x = _inputs(name, graph, T=23).to(dtype)
    full, g_full = _grads(net, x, "full", 1)
    for chunk in (1, 5, 23):
        lean, g_lean = _grads(net, x, "bptt", chunk)
        assert torch.equal(lean.outputs, full.outputs)
        assert sorted(g_lean) == sorted(g_full)
        tol = 1e-11 if dtype == torch.float64 else 1e-4
        for k in g_full:
            torch.testing.assert_close(g_lean[k], g_full[k], rtol=tol, atol=tol * float(g_full[k].abs().max()), msg=k)

def test_sparse_input_is_chunked_not_densified():
    graph = _graphs.feed_forward(1)
    rng = np.random.default_rng(0)
    dense = torch.as_tensor(rng.uniform(0, 1, (23, 2, 6)) * (rng.uniform(size=(23, 2, 6)) < 0.3))
    sparse = dense.to_sparse()
    chunks = Chunks(sparse, 5)
    parts = [chunks[k] for k in range(len(chunks))]
    assert [p.shape[0] for p in parts] == [5, 5, 5, 5, 3] and not any(p.is_sparse for p in parts)
    assert torch.equal(torch.cat(parts), dense)
    net = sf.to_torch(graph, dtype=torch.float64)
    net.sparse_limit = 0
    for strategy in ("bptt", "tbptt", "ottt"):
        a, g_a = _grads(net, dense, strategy, 5)
        b, g_b = _grads(net, sparse, strategy, 5)
        assert a.loss == b.loss
        for k in g_a:
            torch.testing.assert_close(g_a[k], g_b[k], rtol=1e-12, atol=1e-14)


def _chunk_losses(y):  # a loss whose chunk sum is the full-sequence loss when weighted by length
    return (y * torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype)).sum() * 17 / y.shape[0]


@pytest.mark.parametrize("name", ["feed_forward", "recurrent", "egru_loop"])
def test_tbptt_equals_bptt_of_each_chunk_from_the_detached_state(name):
    graph = GRAPHS[name](0)
    net = sf.to_torch(graph, train_tau=True, dtype=torch.float64)
    net.sparse_limit = 0
    x = _inputs(name, graph)
    whole, g_whole = _grads(net, x, "tbptt", 17, _chunk_losses)
    _, g_full = _grads(net, x, "full", 1, _chunk_losses)
    for k in g_full:  # one chunk: plain BPTT
        torch.testing.assert_close(g_whole[k], g_full[k], rtol=1e-11, atol=1e-13)
    _, g_tbptt = _grads(net, x, "tbptt", 6, _chunk_losses)
    # By hand: each chunk from the detached end state of the one before.
    net.zero_grad(set_to_none=True)
    state = net.initial_state(x.shape[1])
    for start in range(0, 17, 6):
        part = x[start : start + 6]
        y, state = net.run_chunk(part, map_state(state, torch.Tensor.detach))
        (_chunk_losses(y) * part.shape[0] / 17).backward()
    for k, p in net.named_parameters():
        torch.testing.assert_close(g_tbptt[k], p.grad, rtol=1e-12, atol=1e-14)
    assert any(float((g_tbptt[k] - g_full[k]).abs().max()) > 1e-9 for k in g_full)  # the cut matters


def _mlp(seed):
    rng = np.random.default_rng(seed)
    return sf.Graph.sequential(
        n.Input(shape=(5,)),
        n.Affine(weight=rng.normal(size=(7, 5)), bias=rng.normal(size=7) * 0.1),
        n.LIF(tau=0.01, v_threshold=0.3, r=2.0, v_leak=0.05),
        n.Affine(weight=rng.normal(size=(3, 7)), bias=rng.normal(size=3) * 0.1),
        n.LIF(tau=0.02, v_threshold=0.2),
        dt=1e-3,
    )


@pytest.mark.parametrize("chunk", [1, 6, 40])
def test_ottt_matches_the_slow_reference(chunk):
    graph = _mlp(3)
    net = sf.to_torch(graph, dtype=torch.float64)
    net.sparse_limit = 0
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1.5, (19, 4, 5))
    G = torch.as_tensor(rng.normal(size=3))
    res, grads = _grads(net, torch.as_tensor(x), "ottt", chunk, lambda y: (y * G).sum())
    layers = []
    for name, neuron in (("affine1", "lif2"), ("affine3", "lif4")):
        lif = graph.nodes[neuron]
        a = 1 - 1e-3 / lif.tau  # Euler
        w = graph.nodes[name]
        layers.append(dict(W=w.weight, b=w.bias, a=a, c=(1 - a) * lif.r, b_leak=(1 - a) * lif.v_leak, th=lif.v_threshold))
    with torch.no_grad():
        spikes = net(torch.as_tensor(x))
    assert 0 < float(spikes.mean()) < 1
    weights = [min(chunk, 19 - s) / 19 for s in range(0, 19, chunk) for _ in range(min(chunk, 19 - s))]
    g_out = np.asarray(weights)[:, None, None] * np.broadcast_to(G.numpy(), (19, 4, 3))
    ref = ottt_grads(x, layers, g_out, lambda v: surrogate("atan").derivative(torch.as_tensor(v)).numpy())
    for (dw, db), name in zip(ref, ("affine1", "affine3")):
        np.testing.assert_allclose(grads[f"layers.{name}.weight"].numpy(), dw, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grads[f"layers.{name}.bias"].numpy(), db, rtol=1e-10, atol=1e-12)


def test_ottt_differs_from_bptt_and_runs_on_conv_and_cuba():
    for make in (_graphs.conv_stack, _graphs.conv1d_stack):
        graph = make(0)
        net = sf.to_torch(graph, dtype=torch.float64)
        x = torch.as_tensor(_graphs.random_inputs(graph, 0, T=15, B=2))
        _, g_ottt = _grads(net, x, "ottt", 4)
        _, g_bptt = _grads(net, x, "bptt", 4)
        assert sorted(g_ottt) == sorted(g_bptt)
        assert all(torch.isfinite(g).all() for g in g_ottt.values())
        assert any(float((g_ottt[k] - g_bptt[k]).abs().max()) > 1e-9 for k in g_bptt)


def test_errors_name_the_problem():
    graph = _mlp(0)
    net = sf.to_torch(graph, dtype=torch.float64)
    x = torch.rand(5, 2, 5, dtype=torch.float64)
    with pytest.raises(DataError, match="unknown strategy"):
        train_step(net, x, _loss, strategy="rtrl")
    with pytest.raises(DataError, match="chunk"):
        train_step(net, x, _loss, chunk=0)
    with pytest.raises(DataError, match="GraphModule"):
        train_step(torch.nn.Linear(5, 3), x, _loss)
    with pytest.raises(DataError, match="recurrent loop"):
        train_step(sf.to_torch(_graphs.recurrent(0)), torch.rand(5, 2, 5, dtype=torch.float64), _loss, strategy="ottt")
    with pytest.raises(DataError, match="EGRU"):
        g = egru_graphs.single(0)
        train_step(sf.to_torch(g), _inputs("egru", g), _loss, strategy="ottt")
    with pytest.raises(DataError, match="single Output"):
        train_step(sf.to_torch(_graphs.two_ports(0)), x, _loss)


def test_docstring_example_runs():
    import doctest

    from spikeflow.train import long_sequences

    assert doctest.testmod(long_sequences).failed == 0
