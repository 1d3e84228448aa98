"""numba-event EGRU: bit-identical to the torch forward in float64, streaming, pruned CSR weights."""


import numpy as np
import pytest
import torch

import spikeflow as sf
from spikeflow.ir.egru import EGRU as EGRUNode
from spikeflow.torch.egru import EGRU, egru_from_node
from spikeflow.train.pruning import MagnitudePruner, magnitude_mask

from spikeflow.backends.numba import egru as nb


def model(seed=0, layers=2, trace=0.0, input_size=12, hidden=24):
    torch.manual_seed(seed)
    return EGRU(input_size, hidden, layers, dtype=torch.float64, threshold_mean=0.15, trace_decay=trace).eval()


def sparse_input(shape, seed=0, density=0.3):
    rng = np.random.default_rng(seed)
    return np.where(rng.random(shape) < density, rng.normal(size=shape), 0.0)


@pytest.mark.parametrize("weights", ["dense", "csr", "auto"])
@pytest.mark.parametrize("trace", [0.0, 0.7])
def test_events_equal_torch_forward_bit_for_bit(weights, trace):
    m = model(trace=trace)
    x = sparse_input((40, 3, 12))
    with torch.no_grad():
        out, _ = m(torch.tensor(x))
        h, want = torch.tensor(x), []
        for nd in m.to_nodes():  # each layer's events, through single-layer modules without trace
            nd = EGRUNode(**{k: v for k, v in nd.to_dict().items() if k not in ("type", "trace_decay")})
            sub = egru_from_node(nd).eval()
            h, _ = sub(h)
            want.append(h.numpy())
    res = nb.run_egru_events(m.to_nodes(), x, weights=weights)
    np.testing.assert_array_equal(res.output, out.numpy())
    for got, exp in zip(res.events, want):
        np.testing.assert_array_equal(got, exp)
    assert 0.5 < (res.events[0] == 0).mean() < 0.99
    assert res.stats.events == [int((e != 0).sum()) for e in res.events]
    assert res.stats.steps == 40 and res.stats.neuron_updates == 40 * 3 * 48


def test_streaming_one_step_at_a_time_equals_whole_sequence():
    m = model(seed=1, trace=0.5)
    nodes = m.to_nodes()
    x = sparse_input((30, 12), seed=1)
    whole = nb.run_egru_events(nodes, x)
    stream = nb.EGRUStream(nodes)
    steps = np.stack([stream.step(x[t]) for t in range(30)])
    np.testing.assert_array_equal(steps, whole.output)
    assert stream.stats.events == whole.stats.events
    assert stream.stats.synaptic_ops == whole.stats.synaptic_ops
    stream.reset()
    np.testing.assert_array_equal(stream.step(x[0]), whole.output[0])


def test_synaptic_ops_count_only_rows_of_active_inputs():
    m = model(seed=2, layers=1)
    x = sparse_input((25, 12), seed=2)
    res = nb.run_egru_events(m.to_nodes(), x, weights="dense")
    y = res.events[0]
    y_prev = np.vstack([np.zeros((1, 24)), y[:-1]])
    want = (np.count_nonzero(x) + np.count_nonzero(y_prev)) * 72
    assert res.stats.synaptic_ops == want
    assert res.stats.synaptic_ops < 0.6 * 25 * (12 + 24) * 72  # far below the dense count


def test_pruning_reaches_target_and_csr_equals_dense():
    m = model(seed=3)
    names = [f"weight_{k}_l{i}" for k in ("ih", "hh") for i in range(2)]
    pruner = MagnitudePruner(m, sparsity=0.8, names=names)
    for name, s in pruner.sparsity().items():
        assert s == pytest.approx(0.8, abs=1 / m.get_parameter(name).numel()), name
    nodes = m.to_nodes()
    x = sparse_input((30, 2, 12), seed=3)
    dense = nb.run_egru_events(nodes, x, weights="dense")
    csr = nb.run_egru_events(nodes, x, weights="csr")
    auto = nb.EGRUStream(nodes)  # 80% zeros: auto picks CSR
    assert all(layer.hh.csr and layer.ih.csr for layer in auto.layers)
    np.testing.assert_array_equal(csr.output, dense.output)
    with torch.no_grad():
        np.testing.assert_array_equal(csr.output, m(torch.tensor(x))[0].numpy())
    assert csr.stats.synaptic_ops < 0.3 * dense.stats.synaptic_ops
    assert auto.layers[1].hh.nbytes < 0.5 * nodes[1].weight_hh.nbytes


def test_gradual_pruning_with_fine_tuning_keeps_masks():
    torch.manual_seed(0)
    m = EGRU(6, 16)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    pruner = MagnitudePruner(m, sparsity=0.7, steps=10)
    x, target = torch.randn(12, 4, 6), torch.randn(12, 4, 16)
    seen = []
    for _ in range(15):
        out, _ = m(x)
        loss = ((out - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen.append(pruner.step())
    assert seen == sorted(seen) and seen[-1] == pytest.approx(0.7)
    for name, s in pruner.sparsity().items():
        assert s == pytest.approx(0.7, abs=1 / m.get_parameter(name).numel()), name
    assert pruner.masks["weight_hh_l0"].sum() == round(0.3 * 48 * 16)


def test_magnitude_mask_keeps_largest_even_with_ties():
    w = torch.tensor([[0.1, -3.0, 0.1], [0.1, 2.0, 0.0]])
    mask = magnitude_mask(w, 0.5)
    assert mask.sum() == 3 and mask[0, 1] and mask[1, 1]


def test_float32_runner_is_close_to_float64():
    m = model(seed=4)
    x = sparse_input((20, 12), seed=4)
    r64 = nb.run_egru_events(m.to_nodes(), x)
    r32 = nb.run_egru_events(m.to_nodes(), x, dtype=np.float32)
    assert r32.output.dtype == np.float32
    assert np.abs(r32.output - r64.output).mean() < 1e-4


def test_bad_inputs_raise_spikeflow_errors():
    nodes = model().to_nodes()
    with pytest.raises(sf.DataError, match=r"expected input \(T, \[B,\] 12\)"):
        nb.run_egru_events(nodes, np.zeros((5, 11)))
    with pytest.raises(sf.DataError, match=r"\(12,\)"):
        nb.EGRUStream(nodes).step(np.zeros(3))
    with pytest.raises(sf.GraphError, match="weights"):
        nb.EGRUStream(nodes, weights="coo")
    with pytest.raises(sf.GraphError, match="layer 1 expects 5 inputs, layer 0 gives 24"):
        nb.EGRUStream([nodes[0], model(input_size=5).to_nodes()[0]])
