"""A neuron whose output comes back one step later (``neuron -> Scale -> neuron``) and two steps
later (``neuron -> Scale -> Delay(1 step) -> neuron``, or Delay then Scale), as snnTorch
``Synaptic``'s late reset is imported on a CubaLIF, runs inside the neuron's fused scan: checked
against the NumPy references (hand-derived backward, node-by-node graph simulation), gradcheck and
the step-by-step lowering, in one call, in chunks and switching paths mid-sequence."""

import numpy as np
import pytest
import torch

import spikeflow as sf
from spikeflow.errors import DataError
from spikeflow.ir import nodes as n
from spikeflow.ir.discretise import coefficients
from spikeflow.torch import functional as F
from spikeflow.torch.surrogate import surrogate
from tests.reference import neurons as ref
from tests.reference.graph_sim import simulate
from tests.torch._cases import CASES, DT, N, TAUS, inputs, params_for, reduce_to, torch_derivative

CUBA_CASES = ["cuba_lif_zero", "cuba_lif_subtract", "cuba_li"]
LEAKY_CASES = ["lif_zero", "lif_subtract", "li", "if_zero", "if_subtract", "i"]
GAIN = np.linspace(-0.6, 0.3, N) * 0.05  # one step later (a late subtraction, or self-excitation)
DELAYED_GAIN = np.linspace(0.4, -0.2, N) * 0.05  # two steps later
# which loops: (one-step, two-step), and the order of the terms
LOOPS = [(True, True, order) for order in F.LOOP_ORDERS] + [(True, False, F.LOOP_ORDERS[0]), (False, True, F.LOOP_ORDERS[0])]


def _scale(node):
    """Gains that change the spikes / the values noticeably for each neuron's input scale."""
    return {n.CubaLIF: 600.0, n.LIF: 80.0, n.IF: 6000.0}.get(type(node), 20.0)


def _reference(node, x, loops, firsts, detach, sg, g_out):
    near, far, order = loops
    gain = GAIN * _scale(node) if near else None
    dgain = DELAYED_GAIN * _scale(node) if far else None
    coef = coefficients(node, DT, "euler")
    th, vr, reset = coef.get("v_threshold"), coef.get("v_reset", 0.0), getattr(node, "reset", "zero")
    loops = dict(first=firsts[0] if near else None, delayed_gain=dgain, delayed_first=firsts[1] if far else None, order=order)
    if isinstance(node, (n.CubaLIF, n.CubaLI)):
        args = (coef["a_syn"], coef["c_syn"], coef["a_mem"], coef["b_mem"], coef["c_mem"], th, vr, reset)
        trace = ref.cuba_loop_forward(x, *args, gain=gain, **loops)
        grads = ref.cuba_loop_backward(g_out, trace, coef["a_syn"], coef["c_syn"], coef["a_mem"], coef["c_mem"], th, vr, reset,
                                       torch_derivative(sg), detach, gain=gain, delayed_gain=dgain)
        grads["tau_mem"] = ref.tau_gradient(node.tau_mem, DT, "euler", grads["a"], grads["b"] * node.v_leak + grads["c"] * node.r)
        grads["tau_syn"] = ref.tau_gradient(node.tau_syn, DT, "euler", grads["a_syn"], grads["c_syn"] * node.w_in)
        return trace, grads
    a, b = coef.get("a"), coef.get("b")
    trace = ref.leaky_loop_forward(x, gain, coef["c"], a, b, th, vr, reset, **loops)
    grads = ref.leaky_loop_backward(g_out, trace, gain, coef["c"], a, th, vr, reset, torch_derivative(sg), detach, delayed_gain=dgain)
    if a is not None:
        grads["tau"] = ref.tau_gradient(node.tau, DT, "euler", grads["a"], grads["b"] * node.v_leak + grads["c"] * node.r)
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
    trainable = {k: torch.tensor(getattr(node, k), requires_grad=True) for k in TAUS.get(type(node), ())}
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
@pytest.mark.parametrize("case", CUBA_CASES + LEAKY_CASES)
def test_loop_scan_equals_reference_forward_and_gradients(case, loops, detach, fused):
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
        plain = _reference(node, x, (False, False, loops[2]), firsts, detach, sg, g_out)[0]["out"]
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


@pytest.mark.parametrize("case", ["cuba_li", "li"])
def test_the_orders_differ_in_float_rounding_and_each_matches_its_reference(case):
    """The three orders give different float64 sums somewhere (so each order is really tested)."""
    node = CASES[case]()
    rng = np.random.default_rng(22)
    x = inputs(node, rng, T=30, B=4) * 1.37
    firsts = (rng.normal(size=x.shape[1:]), rng.normal(size=(2,) + x.shape[1:]))
    outs = []
    for order in F.LOOP_ORDERS:
        xt = torch.tensor(x)
        gains = torch.tensor(GAIN * _scale(node)), torch.tensor(DELAYED_GAIN * _scale(node))
        loop = F.Loop(gains[0], torch.tensor(firsts[0]), gains[1], torch.tensor(firsts[1]), order)
        y, _ = F.neuron_chunk(xt, *F.discretise_params(params_for(node), xt), fused=True, loop=loop)
        want, _ = _reference(node, x, (True, True, order), firsts, True, surrogate("atan"), np.zeros_like(x))
        assert np.array_equal(y.numpy(), want["out"]), order
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
@pytest.mark.parametrize("case", ["cuba_li", "li"])
def test_non_spiking_loops_pass_gradcheck(case, T):
    """A CubaLI or LI with both loops is smooth: its gradients are the true derivatives (short
    chunks included, where the delayed loop's second first term is not used yet)."""
    node = CASES[case]()
    rng = np.random.default_rng(24)
    x = torch.tensor(inputs(node, rng, T=T, B=2) * 0.1, requires_grad=True)
    cuba = case == "cuba_li"
    leaves = [torch.tensor(a, requires_grad=True) for a in (
        GAIN * 10, rng.normal(size=(2, N)), DELAYED_GAIN * 10, rng.normal(size=(2, 2, N)), rng.normal(size=(2, N)), rng.normal(size=(2, N)),
    )]
    tau = torch.tensor(node.tau_syn if cuba else node.tau, requires_grad=True)

    def run(x, gain, first, dgain, dfirst, v0, i0, tau):
        params = params_for(node)._replace(**{"tau_syn" if cuba else "tau": tau})
        loop = F.Loop(gain, first, dgain, dfirst, F.LOOP_ORDERS[2])
        y, state = F.neuron_chunk(x, *F.discretise_params(params, x), F.State(v0, i0 if cuba else None), fused=True, loop=loop)
        return (y, state.v, state.i) if cuba else (y, state.v, i0 * 1)

    assert torch.autograd.gradcheck(run, (x, *leaves, tau))


def test_bad_loops_are_refused():
    x = torch.zeros(3, 2, N, dtype=torch.float64)
    cuba = F.discretise_params(params_for(CASES["cuba_lif_zero"]()), x)
    gain = torch.zeros(N, dtype=torch.float64)
    with pytest.raises(DataError, match="a gain, a delayed_gain or both"):
        F.neuron_chunk(x, *cuba, loop=F.Loop(None))
    with pytest.raises(DataError, match="order must be one of"):
        F.neuron_chunk(x, *cuba, loop=F.Loop(gain, order="x+y"))
    with pytest.raises(DataError, match=r"'delayed_first': expected a tensor of shape \(2, 2, 5\), got \(2, 5\)"):
        F.neuron_chunk(x, *cuba, loop=F.Loop(gain, None, gain, torch.zeros(2, N, dtype=torch.float64)))
    with pytest.raises(DataError, match=r"'first': expected a tensor of shape \(2, 5\), got \(3, 5\)"):
        F.neuron_chunk(x, *cuba, loop=F.Loop(gain, torch.zeros(3, N, dtype=torch.float64)))
    with pytest.raises(DataError, match="expected a Loop"):
        F.neuron_chunk(x, *cuba, loop=(gain,))


# ------------------------------------------------------------------------------- in a graph

# names of the one-step loop's Scale and of the delayed loop's last node: their sort order against
# the neuron's input "fc1" decides the order of the terms in the neuron's sum
NAMES = {F.LOOP_ORDERS[0]: ("x_gain", "y_tail"), F.LOOP_ORDERS[1]: ("y_gain", "x_tail"), F.LOOP_ORDERS[2]: ("a_gain", "b_tail")}


def _neuron(kind, rng, size, th, reset):
    if kind == "CubaLIF":
        return n.CubaLIF(tau_syn=rng.uniform(0.002, 0.006, size), tau_mem=rng.uniform(0.01, 0.03, size), v_threshold=th,
                         r=rng.uniform(1, 2, size), w_in=2.0, reset=reset)
    if kind == "CubaLI":
        return n.CubaLI(tau_syn=0.004, tau_mem=0.02, r=1.5, w_in=2.0)
    if kind == "LIF":
        return n.LIF(tau=rng.uniform(0.01, 0.03, size), v_threshold=th, r=rng.uniform(8, 12, size), reset=reset)
    if kind == "IF":
        return n.IF(v_threshold=th, r=rng.uniform(150, 250, size), reset=reset)
    return n.LI(tau=0.02, r=2.0)


def cuba_graph(seed: int, order: str, gain: bool = True, chain: str | None = "scale_delay", second_input: bool = False,
               steps: int = 1, kind: str = "CubaLIF") -> tuple[sf.Graph, bool]:
    """Input -> Affine -> neuron (CubaLIF unless ``kind`` says otherwise) with its loops -> Linear
    -> LIF (with a Scale loop) -> Output.

    The neuron ``m_cuba`` gets ``gain`` (``m_cuba -> gain -> m_cuba``) and ``chain`` (``m_cuba ->
    Scale -> Delay -> m_cuba``, "scale_delay", or Delay first, "delay_scale"; ``steps``: the
    Delay's length). Returns the graph and whether the neuron's loops can be fused."""
    rng = np.random.default_rng(seed)
    gain_name, tail = NAMES[order]
    size = 5
    th = 0.3
    spiking = kind in ("CubaLIF", "LIF", "IF")
    cuba = _neuron(kind, rng, size, th, ["zero", "subtract"][seed % 2])
    nodes = {
        "input": n.Input(shape=(6,)),
        "fc1": n.Affine(weight=rng.normal(size=(size, 6)) * 2, bias=rng.normal(size=size) * 0.2),
        "m_cuba": cuba,
        "fc2": n.Linear(weight=rng.normal(size=(4, size)) * (3.0 if spiking else 0.5)),
        "p_lif": n.LIF(tau=0.02, v_threshold=0.4, r=10.0, reset="subtract"),
        "p_lif_late_reset": n.Scale(scale=-0.05 * 0.4),
        "output": n.Output(shape=(4,)),
    }
    edges = [("input", "fc1"), ("fc1", "m_cuba"), ("m_cuba", "fc2"), ("fc2", "p_lif"), ("p_lif", "p_lif_late_reset"),
             ("p_lif_late_reset", "p_lif"), ("p_lif", "output")]
    if gain:
        nodes[gain_name] = n.Scale(scale=-rng.uniform(0.5, 1.5, size) * th)
        edges += [("m_cuba", gain_name), (gain_name, "m_cuba")]
    if chain:
        scale = n.Scale(scale=rng.uniform(0.3, 1.0, size) * th)
        delay = n.Delay(delay=np.full(size, steps * DT))
        first, second = (scale, delay) if chain == "scale_delay" else (delay, scale)
        nodes[tail + "_in"], nodes[tail] = first, second
        edges += [("m_cuba", tail + "_in"), (tail + "_in", tail), (tail, "m_cuba")]
    if second_input:
        nodes["b_side"] = n.Linear(weight=rng.normal(size=(size, 6)) * 0.5)
        edges += [("input", "b_side"), ("b_side", "m_cuba")]
    # the fused scan sums the other inputs first: with two of them, the loops' terms must come last
    fusable = steps == 1 and not (second_input and order == F.LOOP_ORDERS[2] and gain and chain)
    if second_input and order == F.LOOP_ORDERS[2] and bool(gain) != bool(chain):  # one loop term, sorted first
        fusable = False
    return sf.Graph(nodes, edges, dt=DT), fusable


GRAPH_CASES = [
    dict(seed=0, order=F.LOOP_ORDERS[0]),
    dict(seed=1, order=F.LOOP_ORDERS[1]),
    dict(seed=2, order=F.LOOP_ORDERS[2]),
    dict(seed=3, order=F.LOOP_ORDERS[0], chain="delay_scale"),
    dict(seed=4, order=F.LOOP_ORDERS[2], chain="delay_scale"),
    dict(seed=5, order=F.LOOP_ORDERS[0], gain=False),
    dict(seed=6, order=F.LOOP_ORDERS[1], chain=None),
    dict(seed=7, order=F.LOOP_ORDERS[0], second_input=True),
    dict(seed=8, order=F.LOOP_ORDERS[1], second_input=True, chain="delay_scale"),
    dict(seed=9, order=F.LOOP_ORDERS[2], second_input=True),  # loops first among four terms: steps
    dict(seed=10, order=F.LOOP_ORDERS[0], steps=2),  # a two-step Delay: a three-step loop, steps
    # a CubaLI outputs its membrane: a sum in another order than the graph's would show in the values
    dict(seed=11, order=F.LOOP_ORDERS[0], kind="CubaLI"),
    dict(seed=12, order=F.LOOP_ORDERS[1], kind="CubaLI"),
    dict(seed=13, order=F.LOOP_ORDERS[2], kind="CubaLI"),
    dict(seed=14, order=F.LOOP_ORDERS[1], kind="CubaLI", second_input=True, chain="delay_scale"),
    # the same loops on the other neurons
    dict(seed=15, order=F.LOOP_ORDERS[0], kind="LIF"),
    dict(seed=16, order=F.LOOP_ORDERS[2], kind="LIF", chain="delay_scale", gain=False),
    dict(seed=17, order=F.LOOP_ORDERS[1], kind="IF"),
    dict(seed=18, order=F.LOOP_ORDERS[0], kind="LI"),
    dict(seed=19, order=F.LOOP_ORDERS[1], kind="LI", chain="delay_scale"),
    dict(seed=20, order=F.LOOP_ORDERS[2], kind="LI", second_input=True),
]


def _grads(net, x, g_out, record):
    net.zero_grad(set_to_none=True)
    y, rec = net.run(x, record=record)
    ((y * g_out).sum() + sum((r * r).sum() for r in rec.values())).backward()
    return y.detach(), {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("case", GRAPH_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_graph_cuba_loops_lower_to_fused_scan_and_equal_node_by_node(case):
    g, fusable = cuba_graph(**case)
    gain_name, tail = NAMES[case["order"]]
    rng = np.random.default_rng(200 + case["seed"])
    x = (rng.random((30, 3, 6)) < 0.4).astype(np.float64) * 2.0
    fused = sf.to_torch(g, dtype=torch.float64)
    stepped = sf.to_torch(g, dtype=torch.float64, fused=False)
    gain, chain = case.get("gain", True), case.get("chain", "scale_delay")
    assert fused.uses_fused_loop("m_cuba") == fusable and not stepped.uses_fused_loop("m_cuba")
    assert fused.self_loops == {"p_lif": "p_lif_late_reset", **({"m_cuba": gain_name} if fusable and gain else {})}
    assert fused.delayed_loops == ({"m_cuba": (tail + "_in", tail)} if fusable and chain else {})

    expected = simulate(g, x)  # node by node, element by element
    names = ["m_cuba", *([gain_name] if gain else []), *([tail + "_in", tail] if chain else [])]
    xt = torch.from_numpy(x)
    with torch.no_grad():
        y, rec = fused.run(xt, record=names)
        _, rec_stepped = stepped.run(xt, record=names)
    np.testing.assert_array_equal(y.numpy(), expected["output"])  # spikes: exactly
    if case.get("kind", "CubaLIF") in ("CubaLIF", "LIF", "IF"):
        assert 0 < expected["m_cuba"].mean() < 1
    for name in names:
        assert torch.equal(rec[name], rec_stepped[name]), name  # the same float64 operations in the same order
        # the NumPy reference sums the Affine's products in another order than the GEMM: ulps apart
        np.testing.assert_allclose(rec[name].numpy(), expected[name], rtol=0, atol=1e-12, err_msg=name)

    g_out = torch.from_numpy(rng.normal(size=y.shape))
    y1, g1 = _grads(fused, xt, g_out, names)
    y2, g2 = _grads(stepped, xt, g_out, names)
    assert torch.equal(y1, y2) and sorted(g1) == sorted(g2)
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], rtol=1e-9, atol=1e-11, msg=name)
    loop_scales = [k for k in (gain_name if gain else None, tail if chain == "delay_scale" else tail + "_in" if chain else None) if k]
    for k in loop_scales:
        assert g1[f"layers.{k}.scale"].abs().max() > 0, k


def test_the_loops_change_the_cuba_spikes():
    """Without its loops the CubaLIF of the test graph spikes differently (the loops are tested)."""
    with_loops, _ = cuba_graph(0, F.LOOP_ORDERS[0])
    without, _ = cuba_graph(0, F.LOOP_ORDERS[0], gain=False, chain=None)
    x = (np.random.default_rng(200).random((30, 3, 6)) < 0.4).astype(np.float64) * 2.0
    assert not np.array_equal(simulate(with_loops, x)["m_cuba"], simulate(without, x)["m_cuba"])


@pytest.mark.parametrize("chain", ["scale_delay", "delay_scale"])
@pytest.mark.parametrize("order", F.LOOP_ORDERS)
def test_chunks_carry_the_cuba_loops_like_the_step_path(order, chain):
    """Chunks of any size (1 and 0 included) equal one call, and a state from the fused path
    continues in the step-by-step path (and back): the loops' carried values and the Delay's
    history (the spike of two steps before) are the same in both."""
    g, fusable = cuba_graph(1, order, chain=chain)
    assert fusable
    x = torch.from_numpy((np.random.default_rng(5).random((23, 2, 6)) < 0.4) * 2.0)
    fused = sf.to_torch(g, dtype=torch.float64)
    stepped = sf.to_torch(g, dtype=torch.float64, fused=False)
    bounds = [(0, 7), (7, 8), (8, 8), (8, 9), (9, 16), (16, 23)]
    with torch.no_grad():
        whole = fused(x)
        for first in (fused, stepped):
            state, parts = first.initial_state(2), []
            for k, (a, b) in enumerate(bounds):
                y, state = (first if k % 2 == 0 else (stepped if first is fused else fused)).run_chunk(x[a:b], state)
                parts.append(y)
            assert torch.equal(torch.cat(parts), whole)
        state, parts = fused.initial_state(2), []
        for a, b in bounds:
            y, state = fused.run_chunk(x[a:b], state)
            parts.append(y)
        assert torch.equal(torch.cat(parts), whole)


def test_gradients_flow_through_the_chunk_state_of_the_cuba_loops():
    """Two chunks with gradients through the carried state equal one call's gradients."""
    g, _ = cuba_graph(2, F.LOOP_ORDERS[0])
    x = torch.from_numpy((np.random.default_rng(6).random((20, 2, 6)) < 0.4) * 2.0)
    net = sf.to_torch(g, dtype=torch.float64)
    g_out = torch.from_numpy(np.random.default_rng(7).normal(size=(20, 2, 4)))
    grads = []
    for split in (None, 9):
        net.zero_grad(set_to_none=True)
        if split is None:
            y = net(x)
        else:
            y1, state = net.run_chunk(x[:split], net.initial_state(2))
            y2, _ = net.run_chunk(x[split:], state)
            y = torch.cat([y1, y2])
        (y * g_out).sum().backward()
        grads.append({k: p.grad.clone() for k, p in net.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-9, atol=1e-12, msg=name)


def test_imported_snntorch_synaptic_round_trips_nir_and_hdf5_with_its_fused_loops(tmp_path):
    import snntorch as snn

    net = torch.nn.Sequential(torch.nn.Linear(6, 8), snn.Synaptic(alpha=0.7, beta=0.9, threshold=0.5, init_hidden=True))
    g = sf.from_snntorch(net, torch.zeros(2, 6))
    model = sf.to_torch(g)
    assert model.self_loops == {"1": "1_late_reset"}
    assert model.delayed_loops == {"1": ("1_late_reset_tail", "1_late_reset_delay")} and model.uses_fused_loop("1")
    sf.save(g, tmp_path / "g.h5")
    for again in (sf.from_nir(sf.to_nir(g), dt=g.dt, integration=g.integration), sf.load(tmp_path / "g.h5")):
        lowered = sf.to_torch(again)
        assert (lowered.self_loops, lowered.delayed_loops) == (model.self_loops, model.delayed_loops)
