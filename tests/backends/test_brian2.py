"""Brian2 agrees with numba: same discretisation, same spikes (to rounding), clean global state."""

import subprocess
import sys

import numpy as np
import pytest

import spikeflow as sf
from spikeflow.backends import available_backends, simulate
from spikeflow.errors import BackendError
from spikeflow.ir import nodes as n

# The numpy code-generation target unless a test is about another: cython compiles for minutes on a busy machine.
pytestmark = pytest.mark.skipif(not available_backends()["brian2"], reason="brian2 not installed")


def lif_network(n_in=100, n_rec=300, seed=0):
    """Poisson-driven recurrent LIF network at dt = 0.1 ms (excitatory input, mixed recurrence)."""
    rng = np.random.default_rng(seed)
    w_rec = rng.normal(0, 0.15, (n_rec, n_rec)) * (rng.random((n_rec, n_rec)) < 0.1)
    return sf.Graph(
        {
            "input": n.Input(shape=(n_in,)),
            "w_in": n.Linear(weight=rng.uniform(0, 1.0, (n_rec, n_in)) * (rng.random((n_rec, n_in)) < 0.2)),
            "lif": n.LIF(tau=rng.uniform(0.01, 0.03, n_rec), v_threshold=1.0, r=rng.uniform(40, 60, n_rec), reset="zero"),
            "w_rec": n.Linear(weight=w_rec),
            "output": n.Output(shape=(n_rec,)),
        },
        [("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        dt=1e-4,
    )


def poisson(rate_hz, steps, n_in, dt=1e-4, seed=1):
    return (np.random.default_rng(seed).random((steps, 1, n_in)) < rate_hz * dt).astype(np.float64)


@pytest.mark.slow
def test_one_second_recurrent_lif_network_matches_spike_for_spike():
    """300 recurrent LIF neurons, 100 Poisson inputs, 10,000 steps: Brian2 integrates its own
    equations, yet every spike is the same (no membrane lands within rounding of a threshold)."""
    g = lif_network()
    x = poisson(20.0, 10_000, 100)
    ours = simulate(g, x, backend="numba-event")
    theirs = simulate(g, x, backend="brian2", target="numpy")
    assert ours.output.sum() > 5000
    np.testing.assert_array_equal(theirs.output, ours.output)
    assert theirs.stats["synaptic_events"] == ours.stats["synaptic_events"]


@pytest.mark.slow
def test_one_second_feed_forward_network_with_current_neurons_matches_spike_for_spike():
    """200 inputs -> 500 LIF (subtract reset) -> 100 CubaLIF, exact integration, 1 s at 0.1 ms."""
    rng = np.random.default_rng(0)
    g = sf.Graph(
        {
            "input": n.Input(shape=(200,)),
            "w1": n.Linear(weight=rng.uniform(0, 1.0, (500, 200)) * (rng.random((500, 200)) < 0.2)),
            "lif": n.LIF(tau=rng.uniform(0.01, 0.03, 500), v_threshold=1.0, r=rng.uniform(40, 60, 500), reset="subtract"),
            "w2": n.Linear(weight=rng.normal(0.3, 1.0, (100, 500)) * (rng.random((100, 500)) < 0.2)),
            "cuba": n.CubaLIF(tau_syn=0.005, tau_mem=0.02, v_threshold=1.0, r=rng.uniform(1, 4, 100)),
            "output": n.Output(shape=(100,)),
        },
        [("input", "w1"), ("w1", "lif"), ("lif", "w2"), ("w2", "cuba"), ("cuba", "output")],
        dt=1e-4,
        integration="exact",
    )
    x = poisson(20.0, 10_000, 200)
    ours = simulate(g, x, backend="numba-event", record=["lif"])
    theirs = simulate(g, x, backend="brian2", target="numpy", record=["lif"])
    assert ours.spikes["lif"].sum() > 20_000 and ours.output.sum() > 100
    np.testing.assert_array_equal(theirs.spikes["lif"], ours.spikes["lif"])
    np.testing.assert_array_equal(theirs.output, ours.output)


@pytest.mark.parametrize("integration", ["euler", "exact"])
@pytest.mark.parametrize("values", ["spikes", "analog"])
def test_short_multi_layer_network_matches_spike_for_spike(integration, values):
    rng = np.random.default_rng(0)
    g = sf.Graph(
        {
            "input": n.Input(shape=(20,)),
            "w1": n.Affine(weight=rng.normal(0, 1, (30, 20)), bias=rng.normal(0, 0.05, 30)),
            "lif": n.LIF(tau=0.02, v_threshold=1.0, r=20.0, reset="subtract"),
            "rec": n.Linear(weight=rng.normal(0, 0.3, (30, 30))),
            "w2": n.Linear(weight=rng.normal(0, 1, (5, 30))),
            "cuba": n.CubaLIF(tau_syn=0.005, tau_mem=0.01, v_threshold=0.5, r=10.0),
            "if": n.IF(v_threshold=0.5, r=200.0),
            "li": n.LI(tau=0.01),
            "output": n.Output(shape=(5,)),
        },
        [("input", "w1"), ("w1", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "w2"), ("w2", "cuba"), ("w2", "if"),
         ("cuba", "li"), ("if", "li"), ("li", "output")],
        dt=1e-3,
        integration=integration,
    )
    x = (rng.random((40, 2, 20)) < 0.2).astype(float)
    if values == "analog":  # frames or currents, not spikes: the values ride on Brian2's spikes
        x *= rng.uniform(-0.5, 2.0, x.shape)
    names = ["lif", "cuba", "if", "li"]
    ours = simulate(g, x, backend="numba-event", record=names)
    theirs = simulate(g, x, backend="brian2", record=names, target="numpy")
    for k in ("lif", "cuba", "if"):
        assert ours.spikes[k].sum() > 0
        np.testing.assert_array_equal(theirs.spikes[k], ours.spikes[k], err_msg=k)
    np.testing.assert_allclose(theirs.output, ours.output, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(theirs.traces["lif"], ours.traces["lif"], rtol=1e-9, atol=1e-12)


def test_flatten_scale_and_per_element_delays_match():
    rng = np.random.default_rng(1)
    g = sf.Graph.sequential(
        n.Input(shape=(2, 3)), n.Flatten(), n.Scale(scale=rng.uniform(0.5, 1.5, 6)), n.Linear(weight=rng.normal(0.5, 1, (8, 6))),
        n.Delay(delay=np.arange(8) * 1e-3), n.Scale(scale=rng.uniform(0.5, 1.5, 8)), n.LIF(tau=0.01, v_threshold=1.0, r=10.0),
        n.Flatten(), dt=1e-3,
    )
    x = (rng.random((30, 2, 2, 3)) < 0.3).astype(float)
    ours = simulate(g, x, backend="numba-event")
    theirs = simulate(g, x, backend="brian2", target="numpy")
    assert ours.output.sum() > 20
    np.testing.assert_array_equal(theirs.output, ours.output)


def test_a_default_snntorch_import_runs_as_in_snntorch():
    """Flatten, subtract reset one step late (the *_late_reset Scale, and the Delay tail of a
    Synaptic neuron) and non-binary frames: Brian2 spikes as snnTorch itself does."""
    import torch
    import snntorch as snn
    import snntorch.utils

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(12, 16), snn.Leaky(beta=0.9, init_hidden=True),
        torch.nn.Linear(16, 6), snn.Synaptic(alpha=0.6, beta=0.8, threshold=0.5, init_hidden=True),
    )
    frames = torch.rand(60, 2, 3, 4) * (torch.rand(60, 2, 3, 4) < 0.4)  # pixel intensities in [0, 1)
    g = sf.from_snntorch(net, frames[0])
    kinds = {type(v).__name__ for v in g.flatten().nodes.values()}
    assert {"Flatten", "Scale", "Delay"} <= kinds
    snntorch.utils.reset(net)
    with torch.no_grad():
        want = torch.stack([net(frames[t]) for t in range(len(frames))]).numpy()
    theirs = simulate(g, frames.double().numpy(), backend="brian2", target="numpy")
    assert want.any() and not want.all()
    np.testing.assert_array_equal(theirs.output, want)


def test_brian2_leaves_no_global_state_behind():
    import brian2

    target, clock_dt = brian2.prefs.codegen.target, brian2.defaultclock.dt
    g = sf.Graph.sequential(n.Linear(weight=np.ones((2, 3))), n.LIF(tau=0.01, v_threshold=0.5), dt=2e-3)
    simulate(g, np.ones((5, 1, 3)), backend="brian2", target="numpy")
    assert brian2.prefs.codegen.target == target and brian2.defaultclock.dt == clock_dt
    assert type(brian2.get_device()).__name__ == "RuntimeDevice"


def test_unsupported_graphs_are_refused_naming_node_and_fix():
    g = sf.Graph.sequential(n.Input(shape=(1, 4, 4)), n.Conv2d(weight=np.ones((1, 1, 2, 2)), bias=np.zeros(1)), n.LIF(tau=0.01, v_threshold=1.0))
    with pytest.raises(BackendError, match="node 'conv2d1' of type Conv2d is not supported by backend 'brian2'.*docs/brian2.md"):
        simulate(g, np.ones((2, 1, 1, 4, 4)), backend="brian2")
    g = sf.Graph.sequential(n.Linear(weight=np.ones((2, 3))), n.LI(tau=0.01), n.Linear(weight=np.ones((2, 2))), n.LIF(tau=0.01, v_threshold=1.0))
    with pytest.raises(BackendError, match="'li2' \\(LI\\) does not spike"):
        simulate(g, np.ones((2, 1, 3)), backend="brian2")
    g = sf.Graph.sequential(n.Linear(weight=np.ones((2, 3))), n.Linear(weight=np.ones((2, 2))), n.LIF(tau=0.01, v_threshold=1.0))
    with pytest.raises(BackendError, match="'linear1' and 'linear2'.*merge them"):
        simulate(g, np.ones((2, 1, 3)), backend="brian2")
    rec = sf.Graph(
        {"input": n.Input(shape=(3,)), "w": n.Linear(weight=np.ones((2, 3))), "lif": n.LIF(tau=0.01, v_threshold=1.0),
         "rec": n.Affine(weight=np.ones((2, 2)), bias=np.ones(2)), "output": n.Output(shape=(2,))},
        [("input", "w"), ("w", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")], dt=1e-3,
    )
    with pytest.raises(BackendError, match="node 'rec'.*cannot delay an Affine bias"):
        simulate(rec, np.ones((2, 1, 3)), backend="brian2")
    g = sf.Graph.sequential(n.Linear(weight=np.ones((2, 3))), n.LIF(tau=0.01, v_threshold=0.5))
    with pytest.raises(BackendError, match="precision"):
        simulate(g, np.ones((2, 1, 3)), backend="brian2", precision="fixed")
    with pytest.raises(sf.GraphError, match="dt=0.02 exceeds tau=0.01"):
        simulate(sf.Graph.sequential(n.Linear(weight=np.ones((2, 3))), n.LIF(tau=0.01, v_threshold=0.5), dt=0.02), np.ones((2, 1, 3)), backend="brian2")


def test_spikeflow_refusals_do_not_show_brians_bug_banner():
    """Brian2's exception hook asks users to report any uncaught error as a Brian2 bug."""
    code = (
        "import numpy as np, spikeflow as sf\n"
        "g = sf.Graph.sequential(sf.ir.Linear(weight=np.ones((2, 3))), sf.ir.LIF(tau=0.01, v_threshold=0.5))\n"
        "sf.simulate(g, np.ones((2, 1, 3)), backend='brian2', target='numpy')\n"
        "g = sf.Graph.sequential(sf.ir.Input(shape=(1, 4, 4)), sf.ir.Conv2d(weight=np.ones((1, 1, 2, 2)), bias=np.zeros(1)))\n"
        "sf.simulate(g, np.ones((2, 1, 1, 4, 4)), backend='brian2')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "BackendError: node 'conv2d1' of type Conv2d" in done.stderr
    assert "report this issue" not in done.stderr and "Brian 2" not in done.stderr


def test_long_runs_show_a_progress_bar_and_short_ones_do_not(capsys):
    from spikeflow.backends.brian2_backend import _Progress

    with _Progress(100, enabled=True) as bar:
        bar(0.0, 0.0, 0, 1)  # Brian2's call at the start
        bar(1.0, 1.0, 0, 1)  # and at the end of a run shorter than the report period
    assert bar.bar is None and capsys.readouterr().err == ""
    with _Progress(100, enabled=True) as bar:
        bar(0.0, 0.0, 0, 1)
        bar(2.0, 0.4, 0, 1)
        bar(4.0, 1.0, 0, 1)
        assert bar.bar.n == 100
    assert "brian2: simulating" in capsys.readouterr().err
    g = sf.Graph.sequential(n.Linear(weight=np.ones((2, 3))), n.LIF(tau=0.01, v_threshold=0.5), dt=1e-3)
    simulate(g, np.ones((5, 1, 3)), backend="brian2", target="numpy", progress=True)
    assert "brian2: simulating" not in capsys.readouterr().err


@pytest.mark.slow
def test_cython_target_matches_spike_for_spike():
    """Brian2's compiled runtime target (cached per user after the first compile)."""
    rng = np.random.default_rng(2)
    g = sf.Graph(
        {"input": n.Input(shape=(6,)), "w": n.Affine(weight=rng.normal(0.5, 1, (8, 6)), bias=np.full(8, 0.01)),
         "lif": n.LIF(tau=0.01, v_threshold=1.0, r=10.0, reset="subtract"), "rec": n.Linear(weight=rng.normal(0, 0.5, (8, 8))),
         "cuba": n.CubaLIF(tau_syn=0.005, tau_mem=0.01, v_threshold=0.5, r=5.0), "output": n.Output(shape=(8,))},
        [("input", "w"), ("w", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "cuba"), ("cuba", "output")],
        dt=1e-3, integration="exact",
    )
    x = (rng.random((200, 2, 6)) < 0.3) * rng.uniform(0.5, 1.5, (200, 2, 6))
    ours = simulate(g, x, backend="numba-event", record=["lif"])
    theirs = simulate(g, x, backend="brian2", target="cython", record=["lif"])
    assert ours.spikes["lif"].sum() > 50 and ours.output.sum() > 10
    np.testing.assert_array_equal(theirs.spikes["lif"], ours.spikes["lif"])
    np.testing.assert_array_equal(theirs.output, ours.output)


@pytest.mark.slow
def test_cpp_standalone_matches_and_restores_the_runtime_device():
    import brian2

    g = sf.Graph.sequential(n.Linear(weight=np.random.default_rng(0).normal(0, 1, (4, 3))), n.LIF(tau=0.01, v_threshold=0.5, r=5.0), dt=1e-3)
    x = (np.random.default_rng(1).random((50, 2, 3)) < 0.3).astype(float)
    ours = simulate(g, x, backend="numba-event")
    theirs = simulate(g, x, backend="brian2", target="cpp_standalone")  # compiles C++: ~30 s here
    assert ours.output.sum() > 10
    np.testing.assert_array_equal(theirs.output, ours.output)
    assert type(brian2.get_device()).__name__ == "RuntimeDevice"
