import numpy as np
import pytest
import torch

from spikeflow.errors import DataError, GraphError
from spikeflow.ir import nodes as n
from spikeflow.torch import functional as F
from spikeflow.torch.surrogate import SURROGATES, Surrogate, surrogate
from tests.torch._cases import CASES, TAUS, inputs, params_for, reduce_to, reference_backward, reference_forward, torch_derivative

STEPS = {
    n.LIF: F.lif_step, n.LI: F.li_step, n.IF: F.if_step, n.I: F.i_step, n.CubaLIF: F.cuba_lif_step, n.CubaLI: F.cuba_li_step,
}
SCANS = {
    n.LIF: F.lif_scan, n.LI: F.li_scan, n.IF: F.if_scan, n.I: F.i_scan, n.CubaLIF: F.cuba_lif_scan, n.CubaLI: F.cuba_li_scan,
}


@pytest.mark.parametrize("integration", ["euler", "exact"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_step_function_equals_reference_bit_for_bit(case, integration):
    node = CASES[case]()
    x = inputs(node, np.random.default_rng(1))
    expected = reference_forward(node, x, integration)
    params = params_for(node, integration)
    state, outs = None, []
    for t in range(x.shape[0]):
        y, state = STEPS[type(node)](torch.from_numpy(x[t]), state, params)
        outs.append(y.numpy())
    assert np.array_equal(np.stack(outs), expected["out"])
    assert np.array_equal(state.v.numpy(), expected["v"][-1])
    if node.spiking:
        assert 0 < expected["out"].mean() < 1, "the case should spike sometimes, not always"


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("integration", ["euler", "exact"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_scan_equals_reference_bit_for_bit(case, integration, fused):
    node = CASES[case]()
    x = inputs(node, np.random.default_rng(2))
    expected = reference_forward(node, x, integration)
    y = SCANS[type(node)](torch.from_numpy(x), params_for(node, integration), fused=fused)
    assert np.array_equal(y.numpy(), expected["out"])


def _torch_gradients(node, x, g_out, sg, detach, fused, integration="euler", dtype=torch.float64):
    """Gradients of sum(g_out * scan(x)) for x, v_threshold and every time constant."""
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    trainable = {}
    for name in TAUS.get(type(node), ()) + (("v_threshold",) if node.spiking else ()):
        trainable[name] = torch.tensor(getattr(node, name), dtype=dtype, requires_grad=True)
    extra = {"surrogate": sg, "detach_reset": detach} if node.spiking else {}
    params = params_for(node, integration, **extra)._replace(**trainable)
    y = SCANS[type(node)](xt, params, fused=fused)
    (y * torch.tensor(g_out, dtype=dtype)).sum().backward()
    return y, {"x": xt.grad, **{k: v.grad for k, v in trainable.items()}}


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_equal_hand_derived_backward(case, detach, fused):
    node = CASES[case]()
    rng = np.random.default_rng(3)
    x = inputs(node, rng)
    g_out = rng.normal(size=x.shape)
    sg = surrogate("atan", slope=2.0)
    trace = reference_forward(node, x)
    expected = reference_backward(node, x, trace, g_out, torch_derivative(sg), detach)
    y, grads = _torch_gradients(node, x, g_out, sg, detach, fused)
    assert np.array_equal(y.detach().numpy(), trace["out"])
    np.testing.assert_allclose(grads["x"].numpy(), expected["x"], rtol=1e-10, atol=1e-12)
    for name, grad in grads.items():
        if name != "x":
            want = reduce_to(expected[name], getattr(node, name).shape)
            np.testing.assert_allclose(grad.numpy(), want, rtol=1e-9, atol=1e-12, err_msg=name)
    assert np.abs(grads["x"].numpy()).max() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sg_name", sorted(SURROGATES))
@pytest.mark.parametrize("case", ["lif_zero", "cuba_lif_subtract", "if_zero"])
def test_fused_scan_equals_step_loop(case, sg_name, dtype):
    node = CASES[case]()
    rng = np.random.default_rng(4)
    x = inputs(node, rng)
    g_out = rng.normal(size=x.shape)
    sg = surrogate(sg_name)
    y1, g1 = _torch_gradients(node, x, g_out, sg, True, fused=True, dtype=dtype)
    y2, g2 = _torch_gradients(node, x, g_out, sg, True, fused=False, dtype=dtype)
    assert torch.equal(y1, y2)
    for name in g1:
        # float32 sums over time and batch cancel: compare relative to the gradient's size
        atol = 1e-12 if dtype == torch.float64 else 1e-4 * float(g2[name].abs().max())
        torch.testing.assert_close(g1[name], g2[name], rtol=1e-10 if dtype == torch.float64 else 1e-3, atol=atol, msg=name)


def test_custom_surrogate_without_kernel_uses_torch_derivative():
    class Cubic(Surrogate):  # unnamed: stays out of the registry
        def derivative(self, x):
            return 1 / (1 + x.abs() ** 3)

    node = CASES["lif_zero"]()
    rng = np.random.default_rng(5)
    x = inputs(node, rng)
    g_out = rng.normal(size=x.shape)
    _, g1 = _torch_gradients(node, x, g_out, Cubic(), True, fused=True)
    _, g2 = _torch_gradients(node, x, g_out, Cubic(), True, fused=False)
    torch.testing.assert_close(g1["x"], g2["x"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("integration", ["euler", "exact"])
def test_trainable_tau_gradient_in_exact_integration(integration):
    node = CASES["cuba_lif_zero"]()
    rng = np.random.default_rng(6)
    x = inputs(node, rng)
    g_out = rng.normal(size=x.shape)
    sg = surrogate("fast_sigmoid", slope=5.0)
    trace = reference_forward(node, x, integration)
    expected = reference_backward(node, x, trace, g_out, torch_derivative(sg), True, integration)
    _, grads = _torch_gradients(node, x, g_out, sg, True, fused=True, integration=integration)
    np.testing.assert_allclose(grads["tau_mem"].numpy(), expected["tau_mem"], rtol=1e-8)
    np.testing.assert_allclose(grads["tau_syn"].numpy(), expected["tau_syn"].sum(), rtol=1e-8)


@pytest.mark.parametrize("case", ["li", "cuba_li", "i"])
def test_non_spiking_scan_passes_gradcheck(case):
    node = CASES[case]()
    x = torch.tensor(inputs(node, np.random.default_rng(7), T=6, B=2), requires_grad=True)
    taus = {k: torch.tensor(getattr(node, k), requires_grad=True) for k in TAUS.get(type(node), ())}

    def run(x, *tau_values):
        params = params_for(node)._replace(**dict(zip(taus, tau_values)))
        return SCANS[type(node)](x, params, fused=True)

    assert torch.autograd.gradcheck(run, (x, *taus.values()))


def test_no_grad_forward_skips_saving_but_matches():
    node = CASES["lif_zero"]()
    x = torch.from_numpy(inputs(node, np.random.default_rng(8)))
    with torch.no_grad():
        y = F.lif_scan(x, params_for(node))
    assert torch.equal(y, F.lif_scan(x, params_for(node), fused=False))


def test_multidimensional_neurons_broadcast_parameters():
    x = torch.rand(6, 2, 3, 4, dtype=torch.float64) * 40
    tau = np.linspace(0.01, 0.03, 4)  # broadcasts over the last dimension
    p = F.LIFParams(tau=tau, v_threshold=0.5)
    fused, loop = F.lif_scan(x, p, fused=True), F.lif_scan(x, p, fused=False)
    assert fused.shape == x.shape and torch.equal(fused, loop)


def test_delay_shifts_each_element():
    x = torch.arange(1.0, 7.0).reshape(6, 1, 1).repeat(1, 2, 3)
    y = F.delay(x, np.array([0, 1, 3]))
    assert torch.equal(y[:, 0, 0], x[:, 0, 0])
    assert y[:, 1, 1].tolist() == [0, 1, 2, 3, 4, 5]
    assert y[:, 0, 2].tolist() == [0, 0, 0, 1, 2, 3]


def test_bad_inputs_raise_spikeflow_errors():
    with pytest.raises(DataError, match="time-major"):
        F.lif_scan(torch.ones(5), F.LIFParams(tau=0.01))
    with pytest.raises(GraphError, match="reset"):
        F.lif_step(torch.ones(2, 3), None, F.LIFParams(tau=0.01, reset="soft"))
    with pytest.raises(GraphError, match="exceeds tau"):
        F.lif_scan(torch.ones(2, 2, 3), F.LIFParams(tau=1e-4))
    with pytest.raises(GraphError, match="exceeds tau"):
        F.lif_scan(torch.ones(2, 2, 3), F.LIFParams(tau=torch.tensor(1e-4, requires_grad=True)))
