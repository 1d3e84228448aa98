"""A neuron whose output comes back through a gain one step later (``neuron -> Scale -> neuron``,
snnTorch's late reset as imported) runs inside the fused scan: checked against the NumPy
references (hand-derived backward, node-by-node graph simulation) and the step-by-step lowering."""

import numpy as np
import pytest
import torch

import spikeflow as sf
from spikeflow.ir import nodes as n
from spikeflow.ir.discretise import coefficients
from spikeflow.torch import functional as F
from spikeflow.torch.surrogate import surrogate
from tests.reference import neurons as ref
from tests.reference.graph_sim import simulate
from tests.torch._cases import CASES, DT, N, TAUS, inputs, params_for, reduce_to, torch_derivative

LOOP_CASES = ["lif_zero", "lif_subtract", "li", "if_zero", "if_subtract", "i"]
GAIN = np.linspace(-0.6, 0.3, N)  # negative: a late subtraction; positive: self-excitation
LOOP_SCALE = {n.LIF: 4.0, n.IF: 300.0}  # spiking neurons: a gain that changes the spikes (IF's input gain is dt*r)


def gain_of(node) -> np.ndarray:
    return GAIN * LOOP_SCALE.get(type(node), 1.0)


def _reference(node, x, first, detach, sg, g_out):
    """Forward and hand-derived gradients of the loop (tau gradient from those of a, b, c)."""
    gain = gain_of(node)
    coef = coefficients(node, DT, "euler")
    th, vr, reset = coef.get("v_threshold"), coef.get("v_reset", 0.0), getattr(node, "reset", "zero")
    a, b = coef.get("a"), coef.get("b")
    trace = ref.leaky_loop_forward(x, gain, coef["c"], a, b, th, vr, reset, first=first)
    grads = ref.leaky_loop_backward(g_out, trace, gain, coef["c"], a, th, vr, reset, torch_derivative(sg), detach)
    if a is not None:
        grads["tau"] = ref.tau_gradient(node.tau, DT, "euler", grads["a"], grads["b"] * node.v_leak + grads["c"] * node.r)
    return trace, grads


def _run(node, x, first, detach, sg, g_out, fused):
    """The functional scan with a loop: output and gradients of sum(g_out * y)."""
    xt = torch.tensor(x, requires_grad=True)
    gain = torch.tensor(gain_of(node), requires_grad=True)
    first_t = torch.tensor(first, requires_grad=True)
    trainable = {k: torch.tensor(getattr(node, k), requires_grad=True) for k in TAUS.get(type(node), ())}
    if node.spiking:
        trainable["v_threshold"] = torch.tensor(node.v_threshold, requires_grad=True)
    extra = {"surrogate": sg, "detach_reset": detach} if node.spiking else {}
    params = params_for(node, **extra)._replace(**trainable)
    y, _ = F.neuron_chunk(xt, *F.discretise_params(params, xt), fused=fused, loop=F.Loop(gain, first_t))
    (y * torch.tensor(g_out)).sum().backward()
    return y.detach().numpy(), {"x": xt.grad, "gain": gain.grad, "first": first_t.grad, **{k: v.grad for k, v in trainable.items()}}


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize("case", LOOP_CASES)
def test_loop_scan_equals_reference_forward_and_gradients(case, detach, fused):
    node = CASES[case]()
    rng = np.random.default_rng(11)
    x = inputs(node, rng, T=16, B=3)
    first = rng.normal(size=x.shape[1:]) * 0.2
    g_out = rng.normal(size=x.shape)
    sg = surrogate("atan", slope=2.0)
    trace, expected = _reference(node, x, first, detach, sg, g_out)
    y, grads = _run(node, x, first, detach, sg, g_out, fused)
    assert np.array_equal(y, trace["out"]), "forward must be bit-identical to the reference"
    if node.spiking:
        assert 0 < trace["out"].mean() < 1, "the case should spike sometimes, not always"
        assert not np.array_equal(trace["out"], ref.leaky_forward(x, *_plain(node))["out"]), "the loop must change the spikes"
    for name, grad in grads.items():
        want = expected[name] if name in ("x", "first") else reduce_to(expected[name], np.shape(getattr(node, name, GAIN)))
        np.testing.assert_allclose(grad.numpy(), want, rtol=1e-9, atol=1e-11, err_msg=name)
    assert np.abs(grads["gain"].numpy()).max() > 0


def _plain(node):
    """The arguments of ref.leaky_forward for the same neuron without the loop."""
    coef = coefficients(node, DT, "euler")
    return coef["c"], coef.get("a"), coef.get("b"), coef.get("v_threshold"), coef.get("v_reset", 0.0), getattr(node, "reset", "zero")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_loop_equals_step_loop_in_both_dtypes(dtype):
    node = CASES["lif_subtract"]()
    rng = np.random.default_rng(12)
    x = torch.tensor(inputs(node, rng, T=30, B=4), dtype=dtype)
    gain = torch.tensor(GAIN, dtype=dtype)
    dyn, coef = F.discretise_params(params_for(node), x)
    y1, s1 = F.neuron_chunk(x, dyn, coef, fused=True, loop=F.Loop(gain))
    y2, s2 = F.neuron_chunk(x, dyn, coef, fused=False, loop=F.Loop(gain))
    assert torch.equal(y1, y2) and torch.equal(s1.v, s2.v)


@pytest.mark.parametrize("case", ["li", "i"])
def test_non_spiking_loop_passes_gradcheck(case):
    """A non-spiking neuron with a loop is smooth: its gradients are the true derivatives."""
    node = CASES[case]()
    rng = np.random.default_rng(13)
    x = torch.tensor(inputs(node, rng, T=6, B=2) * 0.1, requires_grad=True)
    gain = torch.tensor(GAIN * 0.5, requires_grad=True)
    first = torch.tensor(rng.normal(size=(2, N)), requires_grad=True)
    v0 = torch.tensor(rng.normal(size=(2, N)), requires_grad=True)

    def run(x, gain, first, v0):
        y, state = F.neuron_chunk(x, *F.discretise_params(params_for(node), x), F.State(v0), fused=True, loop=F.Loop(gain, first))
        return y, state.v

    assert torch.autograd.gradcheck(run, (x, gain, first, v0))


# ------------------------------------------------------------------------------- in a graph


def _neuron(kind, rng, size):
    if kind == "LIF":
        return n.LIF(tau=rng.uniform(0.01, 0.03, size), v_threshold=0.5, r=rng.uniform(8, 12, size), reset=rng.choice(["zero", "subtract"]))
    if kind == "IF":
        return n.IF(v_threshold=0.5, r=rng.uniform(150, 250, size), reset=rng.choice(["zero", "subtract"]))
    if kind == "LI":
        return n.LI(tau=rng.uniform(0.01, 0.03, size), r=2.0)
    return n.I(r=rng.uniform(1, 2, size))


def loop_graph(seed: int, gain_first: bool, second_input: bool) -> tuple[sf.Graph, bool]:
    """Input -> Affine -> X (with X -> Scale -> X) -> Linear -> LIF (with its own loop) -> Output.

    ``gain_first`` names the Scale so that it sorts before the neuron (the DFS then cuts the
    neuron -> Scale edge instead of Scale -> neuron); ``second_input`` adds a third source to X.
    Returns the graph and whether X's loop can be fused (the loop's term last in X's sum, or
    one of two terms)."""
    rng = np.random.default_rng(seed)
    kind = ["LIF", "IF", "LI", "I"][seed % 4]
    gain_x = "a_gain" if gain_first else "x_gain"
    nodes = {
        "input": n.Input(shape=(6,)),
        "fc1": n.Affine(weight=rng.normal(size=(5, 6)), bias=rng.normal(size=5) * 0.1),
        "m_neuron": _neuron(kind, rng, 5),
        gain_x: n.Scale(scale=rng.uniform(-0.5, 0.3, 5)),
        "fc2": n.Linear(weight=rng.normal(size=(4, 5)) * (3.0 if kind in ("LIF", "IF") else 0.3)),
        "p_lif": n.LIF(tau=0.02, v_threshold=0.4, r=10.0, reset="subtract"),
        "p_lif_late_reset": n.Scale(scale=-0.05 * 0.4),
        "output": n.Output(shape=(4,)),
    }
    edges = [("input", "fc1"), ("fc1", "m_neuron"), ("m_neuron", gain_x), (gain_x, "m_neuron"), ("m_neuron", "fc2"),
             ("fc2", "p_lif"), ("p_lif", "p_lif_late_reset"), ("p_lif_late_reset", "p_lif"), ("p_lif", "output")]
    if second_input:
        nodes["b_side"] = n.Linear(weight=rng.normal(size=(5, 6)) * 0.5)
        edges += [("input", "b_side"), ("b_side", "m_neuron")]
    fusable = not second_input or not gain_first  # sources sorted: b_side, fc1, x_gain (last) or a_gain (first)
    return sf.Graph(nodes, edges, dt=DT), fusable


GRAPH_CASES = [(seed, gain_first, second) for seed in range(4) for gain_first in (False, True) for second in (False, True)]


def _grads(net, x, g_out):
    net.zero_grad(set_to_none=True)
    y, rec = net.run(x, record=tuple(net.self_loops.values()))
    ((y * g_out).sum() + sum((r * r).sum() for r in rec.values())).backward()
    return y.detach(), {k: p.grad.clone() for k, p in net.named_parameters()}


@pytest.mark.parametrize("seed,gain_first,second_input", GRAPH_CASES)
def test_graph_loop_lowers_to_fused_scan_and_equals_node_by_node(seed, gain_first, second_input):
    g, fusable = loop_graph(seed, gain_first, second_input)
    gain_x = "a_gain" if gain_first else "x_gain"
    rng = np.random.default_rng(100 + seed)
    x = (rng.random((25, 3, 6)) < 0.4).astype(np.float64) * 2.0
    fused = sf.to_torch(g, dtype=torch.float64)
    stepped = sf.to_torch(g, dtype=torch.float64, fused=False)
    want = {"p_lif": "p_lif_late_reset", **({"m_neuron": gain_x} if fusable else {})}
    assert fused.self_loops == want
    assert fused.uses_fused_loop("p_lif") and not stepped.uses_fused_loop("p_lif")
    assert fused.uses_fused_loop("m_neuron") == fusable

    expected = simulate(g, x)  # node by node, element by element
    xt = torch.from_numpy(x)
    names = ("m_neuron", gain_x, "p_lif_late_reset")
    with torch.no_grad():
        y, rec = fused.run(xt, record=names)
        _, rec_stepped = stepped.run(xt, record=names)
    np.testing.assert_array_equal(y.numpy(), expected["output"])  # spikes: exactly
    assert 0 < expected["p_lif"].mean() < 1
    for name in names:
        assert torch.equal(rec[name], rec_stepped[name]), name  # the same float64 operations in the same order
        # the NumPy reference sums the Affine's products in another order than the GEMM: ulps apart
        np.testing.assert_allclose(rec[name].numpy(), expected[name], rtol=0, atol=1e-12, err_msg=name)

    g_out = torch.from_numpy(rng.normal(size=y.shape))
    y1, g1 = _grads(fused, xt, g_out)
    y2, g2 = _grads(stepped, xt, g_out)
    assert torch.equal(y1, y2)
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], rtol=1e-9, atol=1e-11, msg=name)
    assert g1["layers.p_lif_late_reset.scale"].abs().max() > 0


@pytest.mark.parametrize("gain_first", [False, True])
def test_chunks_carry_the_loop_like_the_step_path(gain_first):
    """Chunks of any size equal one call, and a state from the fused path continues in the
    step-by-step path (and back): the loop's carried value is the same in both."""
    g, _ = loop_graph(0, gain_first, False)
    x = torch.from_numpy((np.random.default_rng(5).random((23, 2, 6)) < 0.4) * 2.0)
    fused = sf.to_torch(g, dtype=torch.float64)
    stepped = sf.to_torch(g, dtype=torch.float64, fused=False)
    with torch.no_grad():
        whole = fused(x)
        state, parts = fused.initial_state(2), []
        for k, (a, b) in enumerate([(0, 7), (7, 8), (8, 8), (8, 16), (16, 23)]):
            y, state = (fused if k % 2 == 0 else stepped).run_chunk(x[a:b], state)
            parts.append(y)
    assert torch.equal(torch.cat(parts), whole)


def test_imported_snntorch_graph_round_trips_nir_and_hdf5_with_its_fused_loop(tmp_path):
    import snntorch as snn

    net = torch.nn.Sequential(torch.nn.Linear(6, 8), snn.Leaky(beta=0.9, threshold=0.5, init_hidden=True))
    g = sf.from_snntorch(net, torch.zeros(2, 6))
    sf.save(g, tmp_path / "g.h5")
    for again in (sf.from_nir(sf.to_nir(g), dt=g.dt, integration=g.integration), sf.load(tmp_path / "g.h5")):
        assert sf.to_torch(again).self_loops == sf.to_torch(g).self_loops == {"1": "1_late_reset"}
