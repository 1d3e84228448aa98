"""A current-based neuron whose output comes back one step later (``neuron -> Scale -> neuron``)
and two steps later (``neuron -> Scale -> Delay(1 step) -> neuron``, or Delay then Scale), as
snnTorch ``Synaptic``'s late reset is imported, runs inside the fused CubaLIF scan: checked against
the NumPy references (hand-derived backward, node-by-node graph simulation), gradcheck and the
step-by-step lowering, in one call, in chunks and switching paths mid-sequence."""

import numpy as np
import pytest
import torch

import spikeflow as sf
from spikeflow.errors import DataError, GraphError
from spikeflow.ir import nodes as n
from spikeflow.ir.discretise import coefficients
from spikeflow.torch import functional as F
from spikeflow.torch.surrogate import surrogate
from tests.reference import neurons as ref
from tests.reference.graph_sim import simulate
from tests.torch._cases import CASES, DT, N, TAUS, inputs, params_for, reduce_to, torch_derivative

CUBA_CASES = ["cuba_lif_zero", "cuba_lif_subtract", "cuba_li"]
GAIN = np.linspace(-0.6, 0.3, N) * 0.05  # one step later (a late subtraction, or self-excitation)
DELAYED_GAIN = np.linspace(0.4, -0.2, N) * 0.05  # two steps later
# which loops: (one-step, two-step), and the order of the terms
LOOPS = [(True, True, order) for order in F.LOOP_ORDERS] + [(True, False, F.LOOP_ORDERS[0]), (False, True, F.LOOP_ORDERS[0])]


def _scale(node):
    return 600.0 if node.spiking else 20.0  # gains that change the spikes / the values noticeably


def _reference(node, x, loops, firsts, detach, sg, g_out):
    near, far, order = loops
    gain = GAIN * _scale(node) if near else None
    dgain = DELAYED_GAIN * _scale(node) if far else None
    coef = coefficients(node, DT, "euler")
    th, vr, reset = coef.get("v_threshold"), coef.get("v_reset", 0.0), getattr(node, "reset", "zero")
    args = (coef["a_syn"], coef["c_syn"], coef["a_mem"], coef["b_mem"], coef["c_mem"], th, vr, reset)
    trace = ref.cuba_loop_forward(x, *args, gain=gain, first=firsts[0] if near else None, delayed_gain=dgain,
                                  delayed_first=firsts[1] if far else None, order=order)
    grads = ref.cuba_loop_backward(g_out, trace, coef["a_syn"], coef["c_syn"], coef["a_mem"], coef["c_mem"], th, vr, reset,
                                   torch_derivative(sg), detach, gain=gain, delayed_gain=dgain)
    grads["tau_mem"] = ref.tau_gradient(node.tau_mem, DT, "euler", grads["a"], grads["b"] * node.v_leak + grads["c"] * node.r)
    grads["tau_syn"] = ref.tau_gradient(node.tau_syn, DT, "euler", grads["a_syn"], grads["c_syn"] * node.w_in)
    return trace, grads


def _run(node, x, loops, firsts, detach, sg, g_out, fused):
    near, far, order = loops
    xt = torch.tensor(x, requires_grad=True)
    leaves = {"x": xt}
    loop = {"order": order}
    if near:
        leaves["gain"] = loop["gain"] = torch.tensor(GAIN * _scale(node), requires_grad=True)
        leaves["first"] = loop["first"] = torch.tensor(firsts[0], requires_grad=True)
    if far:
        leaves["delayed_gain"] = loop["delayed_gain"] = torch.tensor(DELAYED_GAIN * _scale(node), requires_grad=True)
        leaves["delayed_first"] = loop["delayed_first"] = torch.tensor(firsts[1], requires_grad=True)
    trainable = {k: torch.tensor(getattr(node, k), requires_grad=True) for k in TAUS[type(node)]}
    if node.spiking:
        trainable["v_threshold"] = torch.tensor(node.v_threshold, requires_grad=True)
    extra = {"surrogate": sg, "detach_reset": detach} if node.spiking else {}
    params = params_for(node, **extra)._replace(**trainable)
    y, _ = F.neuron_chunk(xt, *F.discretise_params(params, xt), fused=fused, loop=F.Loop(loop.pop("gain", None), **loop))
    (y * torch.tensor(g_out)).sum().backward()
    return y.detach().numpy(), {**{k: v.grad for k, v in leaves.items()}, **{k: v.grad for k, v in trainable.items()}}


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("loops", LOOPS, ids=lambda lp: f"{int(lp[0])}{int(lp[1])}:{lp[2]}")
@pytest.mark.parametrize("case", CUBA_CASES)
def test_cuba_loop_scan_equals_reference_forward_and_gradients(case, loops, detach, fused):
    node = CASES[case]()
    rng = np.random.default_rng(21)
    x = inputs(node, rng, T=18, B=3)
    firsts = (rng.normal(size=x.shape[1:]) * 2, rng.normal(size=(2,) + x.shape[1:]) * 2)
    g_out = rng.normal(size=x.shape)
    sg = surrogate("atan", slope=2.0)
    trace, expected = _reference(node, x, loops, firsts, detach, sg, g_out)
    y, grads = _run(node, x, loops, firsts, detach, sg, g_out, fused)
    assert np.array_equal(y, trace["out"]), "forward must be bit-identical to the reference"
    if node.spiking:
        assert 0 < trace["out"].mean() < 1, "the case should spike sometimes, not always"
        plain = ref.cuba_loop_forward(x, *_coefs(node))["out"]
        assert not np.array_equal(trace["out"], plain), "the loops must change the spikes"
    for name, grad in grads.items():
        if name in ("x", "first", "delayed_first"):
            want = expected[name]
        else:
            want = reduce_to(expected[name], np.shape(getattr(node, name, GAIN)))
        np.testing.assert_allclose(grad.numpy(), want, rtol=1e-9, atol=1e-11, err_msg=name)
    for name in ("gain", "delayed_gain"):
        if name in grads:
            assert np.abs(grads[name].numpy()).max() > 0, name


def _coefs(node):
    coef = coefficients(node, DT, "euler")
    return (coef["a_syn"], coef["c_syn"], coef["a_mem"], coef["b_mem"], coef["c_mem"], coef.get("v_threshold"),
            coef.get("v_reset", 0.0), getattr(node, "reset", "zero"))


def test_the_orders_differ_in_float_rounding_and_each_matches_its_reference():
    """The three orders give different float64 sums somewhere (so each order is really tested)."""
    node = CASES["cuba_li"]()
    rng = np.random.default_rng(22)
    x = inputs(node, rng, T=30, B=4) * 1.37
    firsts = (rng.normal(size=x.shape[1:]), rng.normal(size=(2,) + x.shape[1:]))
    outs = []
    for order in F.LOOP_ORDERS:
        xt = torch.tensor(x)
        loop = F.Loop(torch.tensor(GAIN), torch.tensor(firsts[0]), torch.tensor(DELAYED_GAIN), torch.tensor(firsts[1]), order)
        y, _ = F.neuron_chunk(xt, *F.discretise_params(params_for(node), xt), fused=True, loop=loop)
        want = ref.cuba_loop_forward(x, *_coefs(node), gain=GAIN, first=firsts[0], delayed_gain=DELAYED_GAIN,
                                     delayed_first=firsts[1], order=order)["out"]
        assert np.array_equal(y.numpy(), want), order
        outs.append(y.numpy())
    assert not np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_cuba_loop_equals_step_loop_in_both_dtypes(dtype):
    node = CASES["cuba_lif_subtract"]()
    rng = np.random.default_rng(23)
    x = torch.tensor(inputs(node, rng, T=30, B=4), dtype=dtype)
    loop = F.Loop(torch.tensor(GAIN, dtype=dtype), None, torch.tensor(DELAYED_GAIN, dtype=dtype))
    dyn, coef = F.discretise_params(params_for(node), x)
    y1, s1 = F.neuron_chunk(x, dyn, coef, fused=True, loop=loop)
    y2, s2 = F.neuron_chunk(x, dyn, coef, fused=False, loop=loop)
    assert torch.equal(y1, y2) and torch.equal(s1.v, s2.v) and torch.equal(s1.i, s2.i)


@pytest.mark.parametrize("T", [1, 2, 6])
def test_non_spiking_cuba_loop_passes_gradcheck(T):
    """A CubaLI with both loops is smooth: its gradients are the true derivatives (short chunks
    included, where the delayed loop's second first term is not used yet)."""
    node = CASES["cuba_li"]()
    rng = np.random.default_rng(24)
    x = torch.tensor(inputs(node, rng, T=T, B=2) * 0.1, requires_grad=True)
    leaves = [torch.tensor(a, requires_grad=True) for a in (
        GAIN * 10, rng.normal(size=(2, N)), DELAYED_GAIN * 10, rng.normal(size=(2, 2, N)), rng.normal(size=(2, N)), rng.normal(size=(2, N)),
    )]
    tau_syn = torch.tensor(node.tau_syn, requires_grad=True)

    def run(x, gain, first, dgain, dfirst, v0, i0, tau_syn):
        params = params_for(node)._replace(tau_syn=tau_syn)
        loop = F.Loop(gain, first, dgain, dfirst, F.LOOP_ORDERS[2])
        y, state = F.neuron_chunk(x, *F.discretise_params(params, x), F.State(v0, i0), fused=True, loop=loop)
        return y, state.v, state.i

    assert torch.autograd.gradcheck(run, (x, *leaves, tau_syn))


def test_delayed_loop_on_a_leaky_neuron_and_bad_loops_are_refused():
    x = torch.zeros(3, 2, N, dtype=torch.float64)
    lif = F.discretise_params(params_for(CASES["lif_zero"]()), x)
    cuba = F.discretise_params(params_for(CASES["cuba_lif_zero"]()), x)
    gain = torch.zeros(N, dtype=torch.float64)
    with pytest.raises(GraphError, match="current-based neurons only"):
        F.neuron_chunk(x, *lif, loop=F.Loop(gain, None, gain))
    with pytest.raises(DataError, match="a gain, a delayed_gain or both"):
        F.neuron_chunk(x, *cuba, loop=F.Loop(None))
    with pytest.raises(DataError, match="order must be one of"):
        F.neuron_chunk(x, *cuba, loop=F.Loop(gain, order="x+y"))
