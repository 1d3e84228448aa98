"""Interoperability with snnTorch and Norse, spike train for spike train on random inputs.

Both directions: peer model -> (peer's exporter) -> NIR -> spikeflow must spike like the peer, and
spikeflow graph -> NIR -> (peer's importer) must spike like spikeflow. spikeflow's side runs in the
float64 reference simulator (and in ``sf.to_torch`` in float64 when that lowering exists); the
peers run in float32. Spike trains are compared exactly: float32 and float64 could round a membrane
that lands within ~1e-7 of the threshold to different sides, but inputs here are binary spikes
and the weights generic, so no such tie occurs and no tolerance is needed.
Each exporter quirk is reproduced: the naive import differs, the corrected one matches.
"""

import importlib.util
import warnings

import nir
import norse.torch as norse
import numpy as np
import pytest
import snntorch as snn
import torch

import spikeflow as sf
from spikeflow.ir import nodes as n
from tests.reference.graph_sim import simulate


T, B = 40, 3
HAS_LOWERING = importlib.util.find_spec("spikeflow.torch.lowering") is not None


@pytest.fixture(autouse=True)
def _quiet():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def spikes_in(shape, rate=0.3, seed=0) -> torch.Tensor:
    return (torch.rand((T, B) + tuple(shape), generator=torch.Generator().manual_seed(seed)) < rate).float()


def assert_same_spikes(got, want, what=""):
    """Spike trains identical, entry for entry (float32 peer vs float64 spikeflow: see module doc)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert want.any() and not want.all(), f"{what}: degenerate test, the layer is silent or saturated"
    differ = np.argwhere(got != want)
    assert not len(differ), f"{what}: {len(differ)} of {got.size} spikes differ, first at [t, b, ...] = {differ[0].tolist()}"


def spikeflow_run(g: sf.Graph, x: torch.Tensor) -> np.ndarray:
    """The graph's output in the float64 reference simulator, cross-checked with sf.to_torch."""
    out = simulate(flat_named(g), x.double().numpy())["output"]
    if HAS_LOWERING:
        net = sf.to_torch(g).double()
        with torch.no_grad():
            np.testing.assert_array_equal(net(x.double()).numpy(), out)
    return out


def flat_named(g: sf.Graph) -> sf.Graph:
    """The reference simulator validates names, so nested graphs run flattened with '_' for '.'."""
    flat = g.flatten()
    rename = {k: k.replace(".", "_") for k in flat.nodes}
    nodes = {rename[k]: v for k, v in flat.nodes.items()}
    return sf.Graph(nodes, [(rename[a], rename[b]) for a, b in flat.edges], dt=flat.dt, integration=flat.integration)


def snntorch_run(net, x) -> np.ndarray:
    """Step an snnTorch model built with init_hidden=True."""
    import snntorch.utils

    snntorch.utils.reset(net)
    with torch.no_grad():
        return torch.stack([net(x[t]) for t in range(len(x))]).numpy()


def stateful_run(net, x) -> np.ndarray:
    """Step a module with the (out, state) = net(x, state) convention (nirtorch graphs, Norse)."""
    state, outs = None, []
    with torch.no_grad():
        for t in range(len(x)):
            out, state = net(x[t], state)
            outs.append(out)
    return torch.stack(outs).numpy()


# ------------------------------------------------------------------------- snnTorch -> spikeflow


def leaky(**kw):
    return snn.Leaky(beta=kw.pop("beta", 0.85), threshold=kw.pop("threshold", 0.7), init_hidden=True, **kw)


def synaptic(**kw):
    return snn.Synaptic(alpha=0.6, beta=0.8, threshold=0.8, init_hidden=True, **kw)


SNNTORCH_MODELS = {
    "Leaky subtract (snnTorch default, late reset)": lambda: torch.nn.Sequential(torch.nn.Linear(6, 8), leaky(), torch.nn.Linear(8, 4), leaky(beta=0.9)),
    "Leaky zero, late reset": lambda: torch.nn.Sequential(torch.nn.Linear(6, 8), leaky(reset_mechanism="zero")),
    "Leaky zero, immediate reset": lambda: torch.nn.Sequential(torch.nn.Linear(6, 8), leaky(reset_mechanism="zero", reset_delay=False)),
    # snnTorch's exporter needs threshold and beta of the same shape (NIR asserts it)
    "Leaky per-neuron beta": lambda: torch.nn.Sequential(torch.nn.Linear(6, 8), leaky(beta=torch.linspace(0.5, 0.95, 8), threshold=torch.full((8,), 0.7))),
    "Synaptic subtract (snnTorch default, late reset)": lambda: torch.nn.Sequential(torch.nn.Linear(6, 8), synaptic(), torch.nn.Linear(8, 4), synaptic()),
    "Synaptic zero, immediate reset": lambda: torch.nn.Sequential(torch.nn.Linear(6, 8), synaptic(reset_mechanism="zero", reset_delay=False)),
    "RLeaky subtract (default)": lambda: torch.nn.Sequential(torch.nn.Linear(6, 8), snn.RLeaky(beta=0.85, threshold=0.7, linear_features=8, init_hidden=True)),
    "RLeaky zero, immediate reset": lambda: torch.nn.Sequential(
        torch.nn.Linear(6, 8), snn.RLeaky(beta=0.85, threshold=0.7, linear_features=8, init_hidden=True, reset_mechanism="zero", reset_delay=False)
    ),
    "RLeaky one-to-one": lambda: torch.nn.Sequential(
        torch.nn.Linear(6, 8), snn.RLeaky(beta=0.85, threshold=0.7, all_to_all=False, V=torch.linspace(-0.5, 0.5, 8), init_hidden=True)
    ),
    # snnTorch 1.0's RSynaptic crashes with reset_delay=False (it reads an undefined 'spk'): default only
    "RSynaptic subtract (default)": lambda: torch.nn.Sequential(
        torch.nn.Linear(6, 8),
        snn.RSynaptic(alpha=0.6, beta=0.8, threshold=0.8, linear_features=8, init_hidden=True),
        torch.nn.Linear(8, 4, bias=False),
        leaky(),
    ),
}


@pytest.mark.parametrize("case", sorted(SNNTORCH_MODELS))
def test_snntorch_to_spikeflow_spikes_match(case):
    net = SNNTORCH_MODELS[case]()
    x = spikes_in((6,), seed=1)
    g = sf.from_snntorch(net, x[0])
    assert g.dt == 1e-4 and g.integration == "euler"
    assert_same_spikes(spikeflow_run(g, x), snntorch_run(net, x), case)


LATE_RESET = ["Leaky subtract (snnTorch default, late reset)", "Leaky per-neuron beta", "Synaptic subtract (snnTorch default, late reset)"]


@pytest.mark.parametrize("case", LATE_RESET)
def test_snntorch_late_reset_lowers_to_the_fused_scan_with_pytorch_defaults(case):
    """snnTorch's default Leaky (late subtraction) imports as a neuron -> Scale -> neuron loop, its
    Synaptic as that loop plus a neuron -> Scale -> Delay -> neuron loop; sf.to_torch runs them
    inside the fused scan, in float32 with nothing else called; it spikes like snnTorch, and its
    gradients equal those of the step-by-step lowering of the same graph."""
    net = SNNTORCH_MODELS[case]()
    x = spikes_in((6,), seed=6)
    g = sf.from_snntorch(net, x[0])
    neurons = sorted(k for k, v in g.nodes.items() if isinstance(v, (n.LIF, n.CubaLIF)))
    synaptic = sorted(k for k in neurons if isinstance(g.nodes[k], n.CubaLIF))
    model = sf.to_torch(g)
    assert model.self_loops == {k: f"{k}_late_reset" for k in neurons}
    assert model.delayed_loops == {k: (f"{k}_late_reset_tail", f"{k}_late_reset_delay") for k in synaptic}
    assert bool(synaptic) == ("Synaptic" in case)
    assert all(model.uses_fused_loop(k, x) for k in neurons)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    with torch.no_grad():
        y = model(x)
    assert y.dtype == torch.float32
    assert_same_spikes(y.numpy(), snntorch_run(net, x), case)

    grads = []
    for fused in (None, False):
        lowered = sf.to_torch(g, dtype=torch.float64, fused=fused)
        out = lowered(x)
        out.sum(0).pow(2).sum().backward()
        grads.append({k: p.grad for k, p in lowered.named_parameters()})
    assert any(float(v.abs().max()) > 0 for v in grads[0].values())
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-9, atol=1e-11, msg=name)


def test_snntorch_conv_stack_spikes_match():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1), leaky(threshold=0.4),
        torch.nn.AvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(3 * 3 * 3, 5), leaky(reset_mechanism="zero", threshold=0.2),
    )
    with torch.no_grad():
        net[4].weight.mul_(3)
    x = spikes_in((2, 6, 6), rate=0.5, seed=2)
    g = sf.from_snntorch(net, x[0])
    kinds = [type(v).__name__ for v in g.nodes.values()]
    assert kinds[:2] == ["Input", "Conv2d"] and "AvgPool2d" in kinds and "Flatten" in kinds
    assert_same_spikes(spikeflow_run(g, x), snntorch_run(net, x), "conv")
    model = sf.to_torch(g)  # the late reset of the [3, 6, 6] Leaky runs in the fused scan, in float32
    assert model.self_loops == {"1": "1_late_reset"} and model.uses_fused_loop("1", x)
    with torch.no_grad():
        assert_same_spikes(model(x).numpy(), snntorch_run(net, x), "conv, float32")


def test_snntorch_quirk_reset_is_exported_as_zero():
    """snnTorch's exporter writes reset-to-zero for a subtracting Leaky: the naive import differs."""
    full = dict(beta=torch.full((8,), 0.85), threshold=torch.full((8,), 0.7))  # plain export_to_nir needs full shapes
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), leaky(**full, reset_delay=False), torch.nn.Linear(8, 8), leaky(**full))
    x = spikes_in((6,), seed=3)
    from snntorch.export_nir import export_to_nir

    naive = sf.from_nir(export_to_nir(net, x[0], ignore_dims=[0]), dt=1e-4)
    assert all(getattr(v, "reset", "zero") == "zero" for v in naive.nodes.values())
    want = snntorch_run(net, x)
    assert np.mean(spikeflow_run(naive, x) != want) > 0.01
    with pytest.raises(sf.GraphError, match="reset_delay=False.*reset_delay=True"):
        sf.from_snntorch(net, x[0])  # immediate subtraction is the inexact case (see conventions)
    net[1].reset_delay = True
    fixed = sf.from_snntorch(net, x[0])
    assert {v.reset for v in fixed.nodes.values() if isinstance(v, n.LIF)} == {"subtract"}
    assert_same_spikes(spikeflow_run(fixed, x), snntorch_run(net, x), "corrected")


def test_snntorch_quirk_gain_and_time_step():
    """tau = dt/(1-beta), r = 1/(1-beta) only mean beta and gain 1 with dt = 1e-4 and Euler."""
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), leaky(reset_mechanism="zero"))
    x = spikes_in((6,), seed=4)
    g = sf.from_snntorch(net, x[0])
    lif = next(v for v in g.nodes.values() if isinstance(v, n.LIF))
    coef = sf.ir.coefficients(lif, g.dt, g.integration)
    np.testing.assert_allclose(coef["a"], np.float32(0.85), rtol=1e-15)
    np.testing.assert_allclose(coef["c"], 1.0, rtol=1e-15)
    want = snntorch_run(net, x)
    for dt, integration in ((1e-3, "exact"), (1e-4, "exact")):
        wrong = sf.from_nir(sf.to_nir(g), dt=dt, integration=integration)
        assert np.mean(spikeflow_run(wrong, x) != want) > 0.01


def test_snntorch_quirk_recurrent_bias_at_first_step():
    """RLeaky's nn.Linear adds its bias at t=0 already; spikeflow's recurrent edge carries zero then."""
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), snn.RLeaky(beta=0.85, threshold=0.7, linear_features=8, init_hidden=True, reset_mechanism="zero", reset_delay=False))
    with torch.no_grad():
        net[1].recurrent.bias.fill_(0.6)
    x = spikes_in((6,), seed=5)
    g = sf.from_snntorch(net, x[0])
    assert not any(isinstance(v, n.Affine) and v.weight.shape == (8, 8) for v in g.nodes.values())
    assert_same_spikes(spikeflow_run(g, x), snntorch_run(net, x), "bias hoisted")


@pytest.mark.parametrize(
    "module, words",
    [
        (lambda: synaptic(reset_delay=False), ["Synaptic", "avoid double reset", "reset_delay=True"]),
        (lambda: synaptic(reset_mechanism="zero"), ["zeroes the whole next membrane update", "reset_delay=False"]),
        (lambda: leaky(reset_mechanism="none"), ["reset_mechanism='none'"]),
        (lambda: snn.RLeaky(beta=0.8, linear_features=8, init_hidden=True, reset_mechanism="zero"), ["RLeaky", "reset_delay=False"]),
    ],
)
def test_snntorch_inexact_settings_are_refused(module, words):
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), module())
    with pytest.raises(sf.GraphError) as err:
        sf.from_snntorch(net, torch.zeros(1, 6))
    for word in words:
        assert word in str(err.value)


def test_snntorch_reset_delay_semantics_by_hand():
    """The late subtraction really is one step late: check snnTorch against a hand-written loop."""
    beta, thr = 0.9, 1.0
    neuron = snn.Leaky(beta=beta, threshold=thr, init_hidden=True)
    x = torch.tensor([1.5, 0.0, 0.0, 0.8, 0.8, 0.0])
    got = snntorch_run(torch.nn.Sequential(neuron), x[:, None, None])[:, 0, 0]
    m, s, want = 0.0, 0.0, []
    for xt in x.tolist():
        m = beta * m + xt - s * thr  # the previous spike's subtraction lands now
        s = float(m > thr)
        want.append(s)
    np.testing.assert_array_equal(got, want)


def test_snntorch_immediate_subtraction_is_not_canonical():
    """Why reset_delay=False with subtraction is refused: after a large input the membrane stays
    above threshold after the subtraction, and snnTorch suppresses the next spikes."""
    neuron = snn.Leaky(beta=0.9, threshold=1.0, init_hidden=True, reset_delay=False)
    x = torch.tensor([2.5, 0.0, 0.0, 0.0, 0.0])[:, None, None]
    got = snntorch_run(torch.nn.Sequential(neuron), x)[:, 0, 0]
    g = sf.Graph.sequential(n.Input(shape=(1,)), n.LIF(tau=1e-3, r=10.0, v_threshold=1.0, reset="subtract"), dt=1e-4)
    canonical = simulate(g, x.double().numpy())["output"][:, 0, 0]
    np.testing.assert_array_equal(canonical, [1, 1, 0, 0, 0])  # v: 2.5 -> 1.5 -> 1.35 -> 0.315 ...
    np.testing.assert_array_equal(got, [1, 0, 0, 0, 0])


# ------------------------------------------------------------------------- spikeflow -> snnTorch


def dense_graph(neuron: n.Node, dt: float, recurrent: bool = False, seed: int = 0, nested: bool = True) -> sf.Graph:
    """Input -> Linear -> neuron -> Output; with ``recurrent`` the neuron gets a recurrent Linear,
    in a nested graph (the peers' importers run nested NIR graphs with nirtorch) unless not ``nested``."""
    rng = np.random.default_rng(seed)
    nodes = {"input": n.Input(shape=(6,)), "fc": n.Linear(weight=rng.normal(0, 0.6, (8, 6))), "neuron": neuron, "output": n.Output(shape=(8,))}
    edges = [("input", "fc"), ("fc", "neuron"), ("neuron", "output")]
    if recurrent and not nested:
        nodes["w_rec"] = n.Linear(weight=rng.normal(0, 0.4, (8, 8)))
        edges += [("neuron", "w_rec"), ("w_rec", "neuron")]
    elif recurrent:
        nodes["neuron"] = sf.Graph(
            {"input": n.Input(shape=(8,)), "lif": neuron, "w_rec": n.Linear(weight=rng.normal(0, 0.4, (8, 8))), "output": n.Output(shape=(8,))},
            [("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
            dt=dt,
        )
    return sf.Graph(nodes, edges, dt=dt).validate()


def snntorch_lif(dt=1e-4):
    beta = np.linspace(0.8, 0.95, 8)
    return n.LIF(tau=dt / (1 - beta), r=1 / (1 - beta), v_threshold=0.6)


def snntorch_cubalif(dt=1e-4):
    return n.CubaLIF(tau_syn=dt / (1 - 0.6), tau_mem=dt / (1 - 0.8), r=1 / (1 - 0.8), w_in=1 / (1 - 0.6), v_threshold=0.8)


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("neuron", [snntorch_lif, snntorch_cubalif])
def test_spikeflow_to_snntorch_spikes_match(neuron, recurrent):
    from snntorch.import_nir import import_from_nir

    g = dense_graph(neuron(), 1e-4, recurrent)
    x = spikes_in((6,), seed=6)
    net = import_from_nir(sf.to_nir(g))
    assert_same_spikes(stateful_run(net, x), spikeflow_run(g, x), f"{neuron.__name__} recurrent={recurrent}")


def test_snntorch_quirk_importer_rewires_flat_recurrence():
    """snnTorch's importer wraps a flat neuron <-> weight cycle into a subgraph whose input feeds
    the recurrent weight (neuron(W (x + s[t-1]))): spikeflow exports recurrent layers as nested
    graphs, which snnTorch runs correctly (test above); the flat form really differs."""
    from snntorch.import_nir import import_from_nir

    g = dense_graph(snntorch_lif(), 1e-4, recurrent=True, nested=False)
    x = spikes_in((6,), seed=6)
    want = spikeflow_run(g, x)
    assert np.mean(stateful_run(import_from_nir(sf.to_nir(g)), x) != want) > 0.01
    rewired = sf.Graph(
        dict(g.nodes), [("input", "fc"), ("fc", "w_rec"), ("neuron", "w_rec"), ("w_rec", "neuron"), ("neuron", "output")], dt=g.dt
    )
    assert_same_spikes(stateful_run(import_from_nir(sf.to_nir(g)), x), spikeflow_run(rewired, x), "snnTorch's rewiring")


def test_spikeflow_conv_to_snntorch_spikes_match():
    from snntorch.import_nir import import_from_nir

    rng = np.random.default_rng(8)
    g = sf.Graph.sequential(
        n.Input(shape=(2, 6, 6)),
        n.Conv2d(weight=rng.normal(0, 0.5, (3, 2, 3, 3)), bias=rng.normal(0, 0.1, 3), padding=1),
        snntorch_lif_like((3, 6, 6)),
        dt=1e-4,
    )
    x = spikes_in((2, 6, 6), seed=7)
    assert_same_spikes(stateful_run(import_from_nir(sf.to_nir(g)), x), spikeflow_run(g, x), "conv")


def snntorch_lif_like(shape):
    return n.LIF(tau=1e-4 / (1 - 0.85), r=1 / (1 - 0.85), v_threshold=0.5)


# ---------------------------------------------------------------------------- Norse -> spikeflow


def norse_lif_params():
    return norse.LIFParameters(tau_syn_inv=torch.tensor(200.0), tau_mem_inv=torch.tensor(100.0), v_th=torch.tensor(0.3), v_reset=torch.tensor(-0.1))


NORSE_MODELS = {
    "LIFCell (CubaLIF)": lambda: norse.SequentialState(torch.nn.Linear(6, 8), norse.LIFCell(norse_lif_params())),
    "LIFBoxCell (LIF) and LIFCell": lambda: norse.SequentialState(
        torch.nn.Linear(6, 8), norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.tensor(50.0), v_th=torch.tensor(0.1))),
        torch.nn.Linear(8, 4), norse.LIFCell(norse_lif_params()),
    ),
    "LIFBoxCell subtract reset": lambda: norse.SequentialState(
        torch.nn.Linear(6, 8), norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.tensor(50.0), v_th=torch.tensor(0.1), reset_method=norse.functional.reset.reset_subtract)),
    ),
    "IAFCell": lambda: norse.SequentialState(torch.nn.Linear(6, 8), norse.IAFCell(norse.IAFParameters(v_th=torch.tensor(1.0)))),
    "Conv2d + LIFCell": lambda: norse.SequentialState(torch.nn.Conv2d(2, 3, 3), norse.LIFCell(norse_lif_params())),
}


@pytest.mark.parametrize("case", sorted(NORSE_MODELS))
def test_norse_to_spikeflow_spikes_match(case):
    net = NORSE_MODELS[case]()
    shape = (2, 6, 6) if "Conv" in case else (6,)
    x = spikes_in(shape, seed=9)
    g = sf.from_norse(net, x[0])
    assert g.dt == 1e-3
    assert not any(isinstance(v, n.Delay) for v in g.nodes.values())  # Norse 1.1 needs no delay
    assert_same_spikes(spikeflow_run(g, x), stateful_run(net, x), case)


def test_norse_quirk_time_constants_and_input_weight():
    """Norse 1.1 writes tau = dt/tau_inv (= dt*tau) and w_in = 1: the naive import differs."""
    net = NORSE_MODELS["LIFCell (CubaLIF)"]()
    x = spikes_in((6,), seed=10)
    exported = norse.to_nir(net, x[0])
    assert np.allclose(exported.nodes["1"].tau_mem, 1e-3 / 100.0)  # dt * tau, not tau = 0.01
    assert np.allclose(exported.nodes["1"].w_in, 1.0)
    g = sf.from_norse(net, x[0])
    cuba = g.nodes["1"]
    np.testing.assert_allclose(cuba.tau_mem, 0.01)
    np.testing.assert_allclose(cuba.w_in, 0.005 / 1e-3)
    np.testing.assert_allclose(cuba.v_reset, -0.1, rtol=1e-6)
    # Norse keeps the batch dimension in Input and Output: drop it to get this far
    exported.nodes["input"] = nir.Input(input_type={"input": np.array([6])})
    exported.nodes["output"] = nir.Output(output_type={"output": np.array([8])})
    with pytest.raises(sf.GraphError, match="exceeds tau"):  # dt*tau < dt: Euler would oscillate
        sf.from_nir(exported, dt=1e-3)
    naive = sf.from_nir(exported, dt=1e-3, integration="exact")
    assert np.mean(spikeflow_run(naive, x) != stateful_run(net, x)) > 0.01
    assert_same_spikes(spikeflow_run(g, x), stateful_run(net, x), "corrected")


def test_norse_recurrent_cells_are_not_exported_by_norse():
    net = norse.SequentialState(torch.nn.Linear(6, 8), norse.LIFRecurrentCell(8, 8))
    with pytest.raises(sf.GraphError, match="does not convert LIFRecurrentCell"):
        sf.from_norse(net, torch.zeros(1, 6))


# ---------------------------------------------------------------------------- spikeflow -> Norse


@pytest.mark.parametrize(
    "neuron",
    [
        lambda: n.CubaLIF(tau_syn=0.005, tau_mem=np.linspace(0.01, 0.03, 8), w_in=5.0, v_threshold=0.3),
        lambda: n.LIF(tau=np.linspace(0.005, 0.02, 8), v_threshold=0.1),
    ],
    ids=["CubaLIF", "LIF"],
)
def test_spikeflow_to_norse_spikes_match(neuron):
    g = dense_graph(neuron(), 1e-3)
    x = spikes_in((6,), seed=11)
    net = norse.from_nir(sf.to_nir(g), dt=1e-3)
    assert_same_spikes(stateful_run(net, x), spikeflow_run(g, x), "spikeflow -> Norse")


def test_spikeflow_conv_to_norse_spikes_match():
    rng = np.random.default_rng(12)
    g = sf.Graph.sequential(
        n.Input(shape=(2, 6, 6)),
        n.Conv2d(weight=rng.normal(0, 0.5, (3, 2, 3, 3)), bias=rng.normal(0, 0.1, 3)),
        n.CubaLIF(tau_syn=0.005, tau_mem=0.01, w_in=5.0, v_threshold=0.3),
        dt=1e-3,
    )
    x = spikes_in((2, 6, 6), seed=13)
    assert_same_spikes(stateful_run(norse.from_nir(sf.to_nir(g), dt=1e-3), x), spikeflow_run(g, x), "conv")
