"""Early exit on numba-event, numba-clock and torch: identical exits, real savings, clear errors."""

import numpy as np
import pytest
from spikeflow.backends import available_backends, backend_names, simulate
from spikeflow.exit.runners import ExitSimulator, simulate_exit

import spikeflow as sf
from spikeflow.errors import BackendError, DataError, GraphError
from spikeflow.ir import nodes as n
from spikeflow.exit.policy import ExitPolicy, set_exit_policy

BACKENDS = [b for b in backend_names(early_exit=True) if available_backends()[b]]


def _spiking_graph(seed=0):
    """LIF output: accumulated spike counts, exact in every backend."""
    rng = np.random.default_rng(seed)
    return sf.Graph.sequential(
        n.Input(shape=(2, 4, 4)), n.Flatten(), n.Linear(weight=rng.normal(0.2, 1.0, (16, 32))), n.LIF(tau=0.01, v_threshold=0.4),
        n.Linear(weight=rng.normal(0.0, 1.0, (5, 16))), n.LIF(tau=0.02, v_threshold=0.3), dt=1e-3,
    )


def _analog_graph(seed=1):
    """Conv + IF + real-valued Affine readout (decoded confidences are not integers)."""
    rng = np.random.default_rng(seed)
    return sf.Graph.sequential(
        n.Input(shape=(2, 4, 4)), n.Conv2d(weight=rng.normal(0.1, 0.5, (3, 2, 3, 3)), bias=rng.normal(0, 0.1, 3), padding=1),
        n.IF(v_threshold=0.8, r=1e3, reset="subtract"), n.Flatten(),
        n.Affine(weight=rng.normal(0, 0.5, (4, 48)), bias=rng.normal(0, 0.1, 4)), dt=1e-3,
    )


def _inputs(seed=0, steps=20, batch=12):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 1, (steps, batch, 2, 4, 4)) < 0.3).astype(np.float64)


def _offline(graph, x, pol):
    """Reference: full-length outputs, then the rule applied step by step in plain NumPy."""
    y = simulate(graph, x, backend="numba-clock").output
    last = pol.steps_for(len(y))
    steps, preds, scores = [], [], []
    for b in range(y.shape[1]):
        acc = np.zeros(y.shape[2])
        for t in range(last):
            acc = pol.decay * acc + y[t, b]
            z = (acc - acc.max()) / pol.temperature
            conf = 1.0 / np.exp(z).sum()
            if (t + 1 >= pol.min_steps and conf >= pol.threshold) or t + 1 == last:
                break
        steps.append(t + 1)
        preds.append(int(np.argmax(acc)))
        scores.append(acc)
    return np.array(steps), np.array(preds), np.array(scores), y


@pytest.mark.parametrize("make, pol", [
    (_spiking_graph, {"threshold": 0.9, "min_steps": 2}),
    (_spiking_graph, {"threshold": 0.6, "min_steps": 1, "max_steps": 15, "decay": 0.9}),
    (_analog_graph, {"threshold": 0.8, "min_steps": 3, "temperature": 0.5}),
])
def test_exits_are_identical_across_backends_and_match_the_reference(make, pol):
    graph = make()
    policy = set_exit_policy(graph, **pol)
    x = _inputs()
    steps, preds, scores, _ = _offline(graph, x, policy)
    assert 1 < len(set(steps.tolist()))  # samples really stop at different steps
    results = {b: simulate_exit(graph, x, backend=b) for b in BACKENDS}
    for b, res in results.items():
        np.testing.assert_array_equal(res.exit_steps, steps, err_msg=b)
        np.testing.assert_array_equal(res.predictions, preds, err_msg=b)
        np.testing.assert_allclose(res.scores, scores, rtol=1e-12, atol=1e-12, err_msg=b)
        assert res.stats["steps"] == steps.sum() and res.stats["mean_steps"] == pytest.approx(steps.mean())
        assert res.stats["max_steps"] == policy.steps_for(len(x))
    np.testing.assert_array_equal(results["numba-event"].scores, results["numba-clock"].scores)
    np.testing.assert_array_equal(results["numba-event"].confidence, results["numba-clock"].confidence)


def test_exited_samples_stop_simulating():
    graph = _spiking_graph()
    set_exit_policy(graph, threshold=0.9, min_steps=2)
    x = _inputs(steps=30)
    full = simulate(graph, x, backend="numba-event")
    early = simulate_exit(graph, x, backend="numba-event")
    assert early.stats["saved"] > 0.2
    assert early.stats["synaptic_events"] < full.stats["synaptic_events"]
    assert early.stats["neuron_updates"] == 21 * early.stats["steps"]  # 16 + 5 LIF neurons per sample-step
    clock = simulate_exit(graph, x, backend="numba-clock")
    assert clock.stats["synaptic_events"] == (16 * 32 + 5 * 16) * clock.stats["steps"]  # dense: every synapse, every step run
    if "torch" in BACKENDS:
        from spikeflow.exit.runners import TorchExitRunner

        stepped = TorchExitRunner(graph, chunk=1).run(x)
        assert stepped.stats["neuron_updates"] == early.stats["neuron_updates"]  # compaction: no wasted step
        chunked = simulate_exit(graph, x, backend="torch")  # 4 steps per pass: at most 3 wasted per sample
        assert early.stats["neuron_updates"] <= chunked.stats["neuron_updates"] <= early.stats["neuron_updates"] + 21 * 3 * x.shape[1]
        np.testing.assert_array_equal(chunked.exit_steps, stepped.exit_steps)


def test_simulator_is_reusable_and_policy_can_be_overridden():
    graph = _analog_graph()
    set_exit_policy(graph, threshold=0.8)
    x = _inputs(seed=3)
    sim = ExitSimulator(graph, "numba-event")
    a, b = sim.run(x), sim.run(x)
    np.testing.assert_array_equal(a.exit_steps, b.exit_steps)
    strict = ExitSimulator(graph, "numba-event", policy=ExitPolicy(output="output", threshold=1.0, max_steps=7)).run(x)
    assert strict.stats["max_steps"] == 7 and strict.exit_steps.max() <= 7
    lax = simulate_exit(graph, x, policy=ExitPolicy(output="output", threshold=1e-9, min_steps=4))
    np.testing.assert_array_equal(lax.exit_steps, np.full(x.shape[1], 4))
    single = simulate_exit(graph, x[:, :1], backend="numba-event")
    assert single.exit_steps[0] == a.exit_steps[0] and single.predictions[0] == a.predictions[0]


def test_float32_runs():
    graph = _spiking_graph()
    set_exit_policy(graph, threshold=0.9)
    res = simulate_exit(graph, _inputs(), backend="numba-clock", precision="float32")
    assert res.exit_steps.min() >= 1


def test_bad_input_errors():
    graph = _spiking_graph()
    with pytest.raises(GraphError, match="no exit policy"):
        simulate_exit(graph, _inputs())
    set_exit_policy(graph, threshold=0.9)
    with pytest.raises(BackendError, match="early exit runs on"):
        simulate_exit(graph, _inputs(), backend="brian2")
    with pytest.raises(BackendError, match="precision"):
        simulate_exit(graph, _inputs(), backend="numba-event", precision="fixed")
    with pytest.raises(DataError, match="expected shape"):
        simulate_exit(graph, np.zeros((4, 2, 3)))
    with pytest.raises(DataError, match="NaN"):
        simulate_exit(graph, np.full((4, 2, 2, 4, 4), np.nan))
    with pytest.raises(DataError, match="at least one step"):
        simulate_exit(graph, np.zeros((0, 2, 2, 4, 4)))
    with pytest.raises(GraphError, match="not an Output"):
        simulate_exit(graph, _inputs(), policy=ExitPolicy(output="lif3", threshold=0.5))
    with pytest.raises(GraphError, match="expected an ExitPolicy"):
        simulate_exit(graph, _inputs(), policy={"threshold": 0.5})
    graph.metadata["exit_policy"]["threshold"] = 7
    with pytest.raises(GraphError, match="threshold"):
        simulate_exit(graph, _inputs())
    with pytest.raises(GraphError, match="spikeflow.Graph"):
        simulate_exit("graph", _inputs())


def test_recurrent_graph_exits_identically():
    rng = np.random.default_rng(5)
    graph = sf.Graph(
        {"input": n.Input(shape=(6,)), "w": n.Linear(weight=rng.normal(0.3, 1.0, (8, 6))), "lif": n.LIF(tau=0.01, v_threshold=0.4),
         "rec": n.Linear(weight=rng.normal(0, 0.5, (8, 8))), "out": n.Affine(weight=rng.normal(0, 1, (3, 8)), bias=np.zeros(3)),
         "output": n.Output(shape=(3,))},
        [("input", "w"), ("w", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "out"), ("out", "output")], dt=1e-3,
    )
    policy = set_exit_policy(graph, threshold=0.9, min_steps=2)
    x = (rng.uniform(0, 1, (16, 10, 6)) < 0.4).astype(np.float64)
    steps, preds, _, _ = _offline(graph, x, policy)
    for b in BACKENDS:
        res = simulate_exit(graph, x, backend=b)
        np.testing.assert_array_equal(res.exit_steps, steps, err_msg=b)
        np.testing.assert_array_equal(res.predictions, preds, err_msg=b)


def test_batch1_fast_path_matches_checked_inputs():
    """A float64 array (even a strided view) skips prepare_inputs; other inputs take it: same exits."""
    graph = _spiking_graph()
    set_exit_policy(graph, threshold=0.9, min_steps=2)
    x = _inputs(seed=4, batch=6)
    sim = ExitSimulator(graph, "numba-event")
    whole = sim.run(x)
    for b in range(x.shape[1]):  # x[:, b:b+1] is not contiguous; the reused scratch starts from rest
        one = sim.run(x[:, b : b + 1])
        assert (one.exit_steps[0], one.predictions[0]) == (whole.exit_steps[b], whole.predictions[b])
        np.testing.assert_array_equal(one.scores[0], whole.scores[b])
    for other in (x.astype(bool), x.astype(np.float32), {"input": x}, x.tolist()):  # the prepare_inputs path
        res = sim.run(other)
        np.testing.assert_array_equal(res.exit_steps, whole.exit_steps)
        np.testing.assert_array_equal(res.scores, whole.scores)


def test_nan_in_a_step_that_runs_raises_and_after_the_exit_is_never_read():
    graph = _spiking_graph()
    set_exit_policy(graph, threshold=1e-9, min_steps=3)  # every sample stops after exactly 3 steps
    sim = ExitSimulator(graph, "numba-clock")
    x = _inputs(batch=3)
    clean = sim.run(x)
    late = x.copy()
    late[3:, 1] = np.nan  # steps 4.. are past every exit: never simulated
    res = sim.run(late)
    np.testing.assert_array_equal(res.scores, clean.scores)
    early = x.copy()
    early[2, 1, 0, 1, 2] = np.inf
    with pytest.raises(DataError, match=r"NaN or inf, first at index \(2, 1, 0, 1, 2\)"):
        sim.run(early)
    np.testing.assert_array_equal(sim.run(x).scores, clean.scores)  # the scratch recovers
    huge = x.copy()
    huge[0, 2, 0, 0, 0] = 1e300  # finite in float64, inf once cast for a float32 program
    with pytest.raises(DataError, match="sample 2 has a value that is not finite in float32"):
        ExitSimulator(graph, "numba-clock", precision="float32").run(huge)
