"""The torch EGRU against the loop-by-loop NumPy reference (tests/reference/egru.py), and the IR node."""

import numpy as np
import pytest
import torch

import spikeflow as sf
from spikeflow.ir import nodes as n
from spikeflow.ir.egru import EGRU as EGRUNode
from spikeflow.torch.egru import EGRU, EGRUState, egru_from_node, nodes_from_module
from tests.reference import egru as ref

F64 = torch.float64
NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold")


def make(seed=0, input_size=5, hidden=7, **kwargs):
    torch.manual_seed(seed)
    kwargs.setdefault("threshold_mean", 0.15)
    return EGRU(input_size, hidden, dtype=F64, **kwargs)


def params(m, layer=0):
    return {k: v.detach().numpy().copy() for k, v in m.layer(layer).items()}


@pytest.mark.parametrize("gamma, eps, with_state", [(0.3, 1.0, False), (1.0, 3.0, True)])
def test_forward_state_and_gradients_match_reference(gamma, eps, with_state):
    m = make(pseudo_derivative_dampening=gamma, pseudo_derivative_width=eps)
    rng = np.random.default_rng(1)
    T, B = 9, 3
    x = torch.tensor(rng.normal(size=(T, B, 5)), requires_grad=True)
    c0 = rng.uniform(-0.2, 0.4, size=(B, 7)) if with_state else None
    y0 = np.where(rng.random((B, 7)) < 0.3, rng.uniform(0.2, 0.6, (B, 7)), 0.0) if with_state else None
    state = None
    if with_state:
        c0t, y0t = torch.tensor(c0[None], requires_grad=True), torch.tensor(y0[None], requires_grad=True)
        state = EGRUState(c0t, y0t, torch.zeros(B, 7, dtype=F64))
    out, st = m(x, state)
    p = params(m)
    fw = ref.forward(p, x.detach().numpy(), c0, y0)
    np.testing.assert_allclose(out.detach().numpy(), fw["y"], rtol=0, atol=1e-13)
    np.testing.assert_allclose(st.c[0].detach().numpy(), fw["c"][-1], rtol=0, atol=1e-13)
    np.testing.assert_array_equal(st.y[0].detach().numpy(), out[-1].detach().numpy())
    assert 0.2 < (fw["e"] == 0).mean() < 0.95  # events happen, resets are exercised

    dy, dc = rng.normal(size=(T, B, 7)), rng.normal(size=(B, 7))
    ((out * torch.tensor(dy)).sum() + (st.c[0] * torch.tensor(dc)).sum()).backward()
    want = ref.backward(p, x.detach().numpy(), fw, dy, dc, gamma, eps, c0, y0)
    for name in NAMES:
        got = getattr(m, f"{name}_l0").grad.numpy()
        np.testing.assert_allclose(got, want[name], rtol=1e-10, atol=1e-12, err_msg=name)
    assert np.abs(want["threshold"]).max() > 1e-3
    np.testing.assert_allclose(x.grad.numpy(), want["x"], rtol=1e-10, atol=1e-12)
    if with_state:
        np.testing.assert_allclose(c0t.grad.numpy()[0], want["c0"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(y0t.grad.numpy()[0], want["y0"], rtol=1e-10, atol=1e-12)


def test_reference_bptt_matches_finite_differences_through_reset():
    """With gamma = 0 the surrogate vanishes and BPTT is the exact derivative of the piecewise-smooth map."""
    m = make(seed=3)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 2, 5))
    p = params(m)
    dy, dc = rng.normal(size=(8, 2, 7)), rng.normal(size=(2, 7))

    def loss(q):
        fw = ref.forward(q, x)
        return (fw["y"] * dy).sum() + (fw["c"][-1] * dc).sum()

    fw = ref.forward(p, x)
    assert fw["e"].sum() > 5
    grads = ref.backward(p, x, fw, dy, dc, gamma=0.0, eps=1.0)
    h = 1e-6
    for name in NAMES:
        for idx in list(np.ndindex(p[name].shape))[:: max(1, p[name].size // 12)]:
            up, down = {k: v.copy() for k, v in p.items()}, {k: v.copy() for k, v in p.items()}
            up[name][idx] += h
            down[name][idx] -= h
            assert (ref.forward(up, x)["e"] == fw["e"]).all()  # no event flips under the nudge
            fd = (loss(up) - loss(down)) / (2 * h)
            assert fd == pytest.approx(grads[name][idx], abs=1e-6), (name, idx)


def test_gradients_match_finite_differences_with_zoneout_and_dropconnect():
    m = make(seed=4, pseudo_derivative_dampening=0.0, zoneout=0.3, dropconnect=0.2).train()
    x = torch.randn(7, 2, 5, dtype=F64)
    w = torch.randn(7, 2, 7, dtype=F64)

    def loss():
        torch.manual_seed(11)  # the same zoneout and DropConnect masks every call
        out, st = m(x)
        return (out * w).sum() + st.c.sum()

    loss().backward()
    assert m.last_stats[0]["activity_sparsity"] < 0.95
    h = 1e-6
    for name in ("weight_hh", "threshold", "bias_ih"):
        prm = getattr(m, f"{name}_l0")
        for idx in [(0,), (3,), (5,)] if prm.ndim == 1 else [(0, 1), (8, 3), (20, 6)]:
            with torch.no_grad():
                prm[idx] += h
                up = loss().item()
                prm[idx] -= 2 * h
                down = loss().item()
                prm[idx] += h
            assert prm.grad[idx].item() == pytest.approx((up - down) / (2 * h), abs=1e-6), (name, idx)


def test_stacked_batch_first_float32_and_split_sequence():
    torch.manual_seed(5)
    m = EGRU(4, 6, num_layers=3, dtype=F64, threshold_mean=0.1, trace_decay=0.6).eval()
    x = torch.randn(10, 3, 4, dtype=F64)
    out, st = m(x)
    # layer by layer through the reference: layer l's input is layer l-1's events
    h = x.numpy()
    for layer in range(3):
        fw = ref.forward(params(m, layer), h)
        h = fw["y"]
        np.testing.assert_allclose(st.c[layer].detach().numpy(), fw["c"][-1], atol=1e-13)
    trace, want = np.zeros((3, 6)), []
    for t in range(10):
        trace = 0.6 * trace + 0.4 * h[t]
        want.append(trace)
    np.testing.assert_allclose(out.detach().numpy(), np.stack(want), atol=1e-13)
    # splitting the sequence and carrying the state gives the same result
    a, sa = m(x[:4])
    b, _ = m(x[4:], sa)
    np.testing.assert_array_equal(torch.cat([a, b]).detach().numpy(), out.detach().numpy())
    # batch_first is a transpose
    mb = egru_from_node(m.to_nodes(), batch_first=True)
    outb, _ = mb(x.transpose(0, 1).contiguous())
    np.testing.assert_array_equal(outb.transpose(0, 1).detach().numpy(), out.detach().numpy())
    # float32 training path (BLAS input projection) stays close
    m32 = egru_from_node(m.to_nodes(), dtype=torch.float32)
    out32, _ = m32(x.float())
    assert (out32.detach().double() - out).abs().mean() < 1e-3


def test_thresholds_beta_init_clamp_and_freeze():
    torch.manual_seed(0)
    m = EGRU(3, 2000, threshold_mean=0.3, threshold_concentration=50, threshold_range=(0.2, 0.4))
    th = m.threshold_l0.detach()
    assert th.min() >= 0.2 and th.max() <= 0.4
    assert abs(th.mean().item() - 0.3) < 0.01 and th.std() > 0.03  # per-unit, spread around the mean
    with torch.no_grad():
        m.threshold_l0[0] = 5.0
    assert m.layer(0)["threshold"][0].item() == pytest.approx(0.4)
    frozen = EGRU(3, 8, train_threshold=False)
    assert "threshold_l0" not in dict(frozen.named_parameters())
    assert "threshold_l0" in dict(frozen.named_buffers())
    out, _ = frozen(torch.randn(5, 2, 3))
    out.sum().backward()  # no error, thresholds untouched


def test_stats_and_activity_loss():
    m = make(seed=6, hidden=16, pseudo_derivative_width=4.0)
    x = torch.randn(20, 4, 5, dtype=F64)
    out, _ = m(x)
    fw = ref.forward(params(m), x.numpy())
    stats = m.last_stats[0]
    assert stats["activity_sparsity"] == pytest.approx((out == 0).double().mean().item())
    outside = np.abs(fw["ct"] - params(m)["threshold"]) >= 0.25
    assert stats["backward_sparsity"] == pytest.approx(outside.mean())
    assert 0 < stats["backward_sparsity"] < 1
    rate = m.activity_loss(rate=1.0, target_rate=0.0)
    assert rate.item() == pytest.approx(((1 - stats["activity_sparsity"])) ** 2)
    rate.backward()
    assert m.threshold_l0.grad.sum() < 0  # raising thresholds lowers the rate
    m.zero_grad()
    m(x)
    m.activity_loss(l1=1.0).backward()
    assert m.weight_hh_l0.grad.abs().sum() > 0


def test_bad_input_raises_data_error():
    m = make()
    with pytest.raises(sf.DataError, match=r"expected input \(T, B, 5\)"):
        m(torch.zeros(3, 2, 4, dtype=F64))
    with pytest.raises(sf.DataError, match="dtype"):
        m(torch.zeros(3, 2, 5))


# ------------------------------------------------------------------------------------ IR node


def node(seed=0, **kwargs):
    return make(seed, **kwargs).to_nodes()[0]


def test_node_round_trips_dict_and_module():
    nd = node(pseudo_derivative_width=2.0, trace_decay=0.5)
    assert n.NODE_TYPES["EGRU"] is EGRUNode
    back = n.Node.from_dict(nd.to_dict())
    assert back == nd and back.trace_decay == 0.5
    assert nodes_from_module(egru_from_node(back))[0] == nd
    assert nd.input_size == 5 and nd.hidden_size == 7
    assert nd.output_shape((5,)) == (7,)
    g = sf.Graph.sequential(n.Input(shape=(5,)), nd).validate()
    assert g.shapes()["output"] == (7,)


@pytest.mark.parametrize(
    "change, words",
    [
        (dict(weight_hh=np.zeros((21, 6))), ["weight_hh", "(3*hidden, hidden)"]),
        (dict(weight_ih=np.zeros((20, 5))), ["weight_ih", "(21, input)"]),
        (dict(bias_hh=np.zeros(20)), ["bias_hh", "(21,)"]),
        (dict(threshold=np.zeros(6)), ["threshold", "(7,)"]),
        (dict(pseudo_derivative_width=0.0), ["pseudo_derivative_width", "> 0"]),
        (dict(trace_decay=1.0), ["trace_decay", "0 <= a < 1"]),
        (dict(threshold=np.full(7, np.nan)), ["threshold", "NaN"]),
    ],
)
def test_node_validation_names_the_field(change, words):
    data = node().to_dict() | change
    with pytest.raises(sf.GraphError) as err:
        n.Node.from_dict(data)
    for w in words:
        assert w in str(err.value)
    with pytest.raises(sf.GraphError, match="expects input shape"):
        node().output_shape((4,))


def test_egru_from_node_rejects_mismatched_stack():
    a, b = node(), node(seed=1, input_size=6)
    with pytest.raises(sf.GraphError, match="layer 1"):
        egru_from_node([a, b])


def test_to_nir_refuses_egru_naming_the_node():
    pytest.importorskip("spikeflow.io.nir_bridge")
    g = sf.Graph({"x": n.Input(shape=(5,)), "rnn": node(), "y": n.Output(shape=(7,))}, [("x", "rnn"), ("rnn", "y")])
    with pytest.raises(sf.SpikeflowError, match="'rnn'"):
        sf.to_nir(g)


def test_egru_from_node_clamp_range_holds_stored_thresholds_and_leaves_room():
    import dataclasses

    nd = node()
    module = egru_from_node(nd)
    low, high = module.threshold_range
    assert (low, high) == (0.01, 0.99)  # trained thresholds may move anywhere in the default range
    np.testing.assert_array_equal(module.to_nodes()[0].threshold, nd.threshold)
    wide = dataclasses.replace(nd, threshold=np.linspace(0.001, 1.5, nd.hidden_size))
    assert egru_from_node(wide).threshold_range == (0.001, 1.5)  # widened to hold the stored values
    np.testing.assert_array_equal(egru_from_node(wide).to_nodes()[0].threshold, wide.threshold)
    with pytest.raises(sf.GraphError, match="threshold_range"):
        egru_from_node(nd, threshold_range=(0.5, 0.6))
