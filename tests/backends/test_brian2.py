"""Brian2 agrees with numba: same discretisation, same spikes (to rounding), clean global state."""

import numpy as np
import pytest

import spikeflow as sf
from spikeflow.backends import available_backends, simulate
from spikeflow.errors import BackendError
from spikeflow.ir import nodes as n

# The numpy code-generation target throughout: cython compiles for minutes on a busy machine.
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


def _first_spikes(z):
    """First spike step of every neuron (-1 if silent)."""
    fired = z.any(axis=0)
    return np.where(fired, z.argmax(axis=0), -1)


@pytest.mark.slow
def test_one_second_lif_network_agrees_with_numba():
    g = lif_network()
    x = poisson(20.0, 10_000, 100)
    ours = simulate(g, x, backend="numba-event")
    theirs = simulate(g, x, backend="brian2", target="numpy")  # cython compiles ~3 min here; numpy ~6 s
    total = ours.output.sum()
    assert total > 1000
    assert abs(theirs.output.sum() - total) <= 0.01 * total
    first_ours, first_theirs = _first_spikes(ours.output[:, 0]), _first_spikes(theirs.output[:, 0])
    assert np.array_equal(first_ours >= 0, first_theirs >= 0)
    assert np.abs(first_ours - first_theirs).max() <= 1
    assert abs(theirs.stats["synaptic_events"] - ours.stats["synaptic_events"]) <= 0.01 * ours.stats["synaptic_events"]


def test_short_multi_layer_network_matches_spike_for_spike():
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
    )
    x = (rng.random((40, 2, 20)) < 0.2).astype(float)
    names = ["lif", "cuba", "if", "li"]
    ours = simulate(g, x, backend="numba-event", record=names)
    theirs = simulate(g, x, backend="brian2", record=names, target="numpy")
    for k in ("lif", "cuba", "if"):
        assert ours.spikes[k].sum() > 0
        np.testing.assert_array_equal(theirs.spikes[k], ours.spikes[k], err_msg=k)
    np.testing.assert_allclose(theirs.output, ours.output, rtol=1e-9, atol=1e-12)


def test_brian2_leaves_no_global_state_behind():
    import brian2

    target, clock_dt = brian2.prefs.codegen.target, brian2.defaultclock.dt
    g = sf.Graph.sequential(n.Linear(weight=np.ones((2, 3))), n.LIF(tau=0.01, v_threshold=0.5), dt=2e-3)
    simulate(g, np.ones((5, 1, 3)), backend="brian2", target="numpy")
    assert brian2.prefs.codegen.target == target and brian2.defaultclock.dt == clock_dt
    assert type(brian2.get_device()).__name__ == "RuntimeDevice"


def test_unsupported_node_and_input_are_named():
    g = sf.Graph.sequential(n.Input(shape=(1, 4, 4)), n.Conv2d(weight=np.ones((1, 1, 2, 2)), bias=np.zeros(1)), n.LIF(tau=0.01, v_threshold=1.0))
    with pytest.raises(BackendError, match="node 'conv2d1' of type Conv2d is not supported by backend 'brian2'"):
        simulate(g, np.ones((2, 1, 1, 4, 4)), backend="brian2")
    g = sf.Graph.sequential(n.Linear(weight=np.ones((2, 3))), n.LIF(tau=0.01, v_threshold=0.5))
    with pytest.raises(BackendError, match="binary spike input"):
        simulate(g, np.full((2, 1, 3), 0.5), backend="brian2")
    with pytest.raises(BackendError, match="precision"):
        simulate(g, np.ones((2, 1, 3)), backend="brian2", precision="fixed")


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
