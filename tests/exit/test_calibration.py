"""Exit policy in the IR, calibration on validation outputs, curves, torch inference with compaction."""

import math

import numpy as np
import pytest
import torch

import spikeflow as sf
from spikeflow.errors import DataError, GraphError, SpikeflowError
from spikeflow.ir import nodes as n
from spikeflow.exit.policy import ExitPolicy, check_exit_policy, clear_exit_policy, get_exit_policy, set_exit_policy
from spikeflow.exit import calibration as ee
from spikeflow.exit.runners import TorchExitRunner

PNG = b"\x89PNG\r\n\x1a\n"


def _graph(seed=0, n_in=6, hidden=12, classes=4):
    rng = np.random.default_rng(seed)
    return sf.Graph.sequential(
        n.Input(shape=(n_in,)), n.Linear(weight=rng.normal(0.3, 1.0, (hidden, n_in))), n.LIF(tau=0.01, v_threshold=0.5),
        n.Affine(weight=rng.normal(0, 1.0, (classes, hidden)), bias=rng.normal(0, 0.1, classes)), dt=1e-3,
    )


def _synthetic(seed=0, steps=12, count=300, classes=4, signal=0.6):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, count)
    outputs = rng.normal(0, 1, (steps, count, classes))
    outputs[:, np.arange(count), labels] += signal * rng.uniform(0, 2, count)
    return outputs, labels


# ------------------------------------------------------------------------------ the policy


def test_policy_round_trips_through_metadata_and_hdf5(tmp_path):
    g = _graph()
    pol = set_exit_policy(g, threshold=0.75, min_steps=2, max_steps=9, decay=0.9, temperature=2.0)
    assert get_exit_policy(g) == pol and g.metadata["exit_policy"]["threshold"] == 0.75
    sf.save(g, tmp_path / "g.h5")
    back = sf.load(tmp_path / "g.h5")
    assert get_exit_policy(back) == pol
    assert check_exit_policy(back) == pol
    clear_exit_policy(back)
    assert get_exit_policy(back) is None and check_exit_policy(back) is None


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.0000001, 2, math.nan, math.inf, "0.5", True])
def test_threshold_outside_unit_interval_is_refused(threshold):
    with pytest.raises(GraphError, match="threshold"):
        set_exit_policy(_graph(), threshold=threshold)


def test_threshold_one_is_allowed():
    assert set_exit_policy(_graph(), threshold=1.0).threshold == 1.0


def test_exit_on_a_node_that_is_not_an_output_is_refused():
    g = _graph()
    with pytest.raises(GraphError, match="lif2.*not an Output"):
        set_exit_policy(g, output="lif2", threshold=0.9)
    with pytest.raises(GraphError, match="'nope' is not a node"):
        set_exit_policy(g, output="nope", threshold=0.9)
    g.metadata["exit_policy"] = {"output": "linear1", "threshold": 0.9}
    with pytest.raises(GraphError, match="not an Output"):
        check_exit_policy(g)


def test_exit_needs_class_scores():
    g = sf.Graph.sequential(n.Input(shape=(3,)), n.Linear(weight=np.ones((1, 3))))
    with pytest.raises(GraphError, match="classes >= 2"):
        set_exit_policy(g, threshold=0.9)


@pytest.mark.parametrize("fields, word", [
    ({"min_steps": 0}, "min_steps"), ({"min_steps": 5, "max_steps": 3}, "max_steps"), ({"max_steps": 0}, "max_steps"),
    ({"min_steps": 2.5}, "min_steps"), ({"decay": 0.0}, "decay"), ({"decay": 1.5}, "decay"), ({"temperature": 0}, "temperature"),
])
def test_inconsistent_fields_are_refused(fields, word):
    with pytest.raises(GraphError, match=word):
        set_exit_policy(_graph(), threshold=0.9, **fields)


def test_malformed_metadata_is_refused():
    g = _graph()
    for bad, word in [("{not json", "JSON"), ({"output": "output"}, "threshold"), ({"output": "output", "threshold": 0.5, "x": 1}, "unexpected"),
                      ([1, 2], "expected a dict")]:
        g.metadata["exit_policy"] = bad
        with pytest.raises(GraphError, match=word):
            check_exit_policy(g)


def test_errors_are_spikeflow_errors():
    with pytest.raises(SpikeflowError):
        ExitPolicy(output="output", threshold=3.0)


# ------------------------------------------------------------------------------ decoding


def test_decode_matches_a_numpy_softmax():
    outputs, _ = _synthetic(steps=7, count=20)
    pol = ExitPolicy(output="output", threshold=0.5, decay=0.8, temperature=1.7)
    conf, pred = ee.decode(outputs, pol)
    acc = np.zeros(outputs.shape[1:])
    for t in range(outputs.shape[0]):
        acc = 0.8 * acc + outputs[t]
        z = acc / 1.7
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        np.testing.assert_allclose(conf[t], p.max(1), rtol=1e-12)
        np.testing.assert_array_equal(pred[t], acc.argmax(1))


def test_exit_steps_match_a_loop_reference():
    rng = np.random.default_rng(3)
    conf = rng.uniform(0, 1, (10, 50))
    pol = ExitPolicy(output="output", threshold=0.5, min_steps=3, max_steps=8)
    thetas = [0.2, 0.5, 0.9, 0.999]
    got = ee.exit_steps_for(conf, thetas, pol)
    for k, theta in enumerate(thetas):
        for b in range(50):
            expected = 8
            for t in range(3 - 1, 8):
                if conf[t, b] >= theta:
                    expected = t + 1
                    break
            assert got[k, b] == expected


# ------------------------------------------------------------------------------ calibration


def test_calibration_picks_the_fastest_threshold_within_the_drop():
    outputs, labels = _synthetic()
    res = ee.calibrate_outputs(outputs, labels, max_accuracy_drop=0.01)
    assert 0 < res.threshold <= 1 and res.policy.threshold == res.threshold
    assert res.accuracy >= res.reference_accuracy - 0.01 - 1e-12
    assert res.mean_steps < outputs.shape[0]  # it does stop early
    # brute force over a dense grid finds nothing faster that still meets the bound
    pol = res.policy
    conf, pred = ee.decode(outputs, pol)
    grid = np.unique(np.concatenate([np.linspace(0.01, 1, 400), conf.ravel()]))
    steps = ee.exit_steps_for(conf, grid, pol)
    acc = np.array([(pred[s - 1, np.arange(len(labels))] == labels).mean() for s in steps])
    feasible = acc >= res.reference_accuracy - 0.01 - 1e-12
    assert steps.mean(1)[feasible].min() >= res.mean_steps - 1e-12
    # the reported point is what evaluation gives
    check = ee.evaluate_outputs(outputs, labels, pol)
    assert check["accuracy"] == res.accuracy and check["mean_steps"] == res.mean_steps
    assert res.policy.calibration["max_accuracy_drop"] == 0.01


def test_zero_drop_keeps_validation_accuracy():
    outputs, labels = _synthetic(seed=4)
    res = ee.calibrate_outputs(outputs, labels, max_accuracy_drop=0.0)
    assert res.accuracy >= res.reference_accuracy


def test_pareto_front_fixed_and_oracle_curves():
    outputs, labels = _synthetic(seed=1, steps=10)
    res = ee.calibrate_outputs(outputs, labels, 0.005)
    front = res.pareto
    assert np.all(np.diff(front["mean_steps"]) >= 0) and np.all(np.diff(front["accuracy"]) > 0)
    for s, a in zip(res.sweep["mean_steps"], res.sweep["accuracy"]):  # nothing beats the front
        dominated_by = (front["mean_steps"] <= s) & (front["accuracy"] >= a)
        assert dominated_by.any()
    _, pred = ee.decode(outputs, res.policy)
    np.testing.assert_array_equal(res.fixed["accuracy"], (pred == labels).mean(1))
    # oracle at the full budget: loop reference
    correct = pred == labels
    steps = []
    for b in range(len(labels)):
        if not correct[-1, b]:
            steps.append(1)
            continue
        t = 10
        while t > 1 and correct[t - 2, b]:
            t -= 1
        steps.append(t)
    assert res.oracle["mean_steps"][-1] == pytest.approx(np.mean(steps))
    assert res.oracle["accuracy"][-1] == res.fixed["accuracy"][-1]
    assert np.all(res.oracle["mean_steps"] <= res.fixed["steps"] + 1e-12)


def test_calibration_input_errors():
    outputs, labels = _synthetic(count=10)
    with pytest.raises(DataError, match="empty"):
        ee.calibrate_outputs(outputs[:, :0], labels[:0])
    with pytest.raises(DataError, match="max_accuracy_drop"):
        ee.calibrate_outputs(outputs, labels, max_accuracy_drop=1.5)
    with pytest.raises(DataError, match="labels"):
        ee.calibrate_outputs(outputs, labels[:5])
    with pytest.raises(DataError, match="integer"):
        ee.calibrate_outputs(outputs, labels.astype(float))
    bad = outputs.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        ee.calibrate_outputs(bad, labels)


def test_calibrate_a_graph_on_validation_data_and_reject_empty_sets():
    import spikeflow.exit as sfexit

    g = _graph()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (40, 12, 6))
    y = rng.integers(0, 4, 40)
    res = sfexit.calibrate(g, (x, y), max_accuracy_drop=0.05, progress=False)
    res.apply(g)
    assert get_exit_policy(g).threshold == res.threshold
    direct = ee.calibrate_outputs(sf.to_torch(g, dtype=torch.float64)(torch.as_tensor(x).transpose(0, 1)).detach().numpy(), y, 0.05)
    assert direct.threshold == res.threshold
    with pytest.raises(DataError, match="empty"):
        sfexit.calibrate(g, (x[:0], y[:0]), progress=False)
    with pytest.raises(DataError, match="expected"):
        sfexit.calibrate(g, x, progress=False)


# ------------------------------------------------------------------------------ torch inference


def test_torch_runner_compacts_the_batch_and_matches_offline_exits():
    """With every sample in one batch, and with at most 7 in flight (continuous batching)."""
    g = _graph(seed=2)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (14, 30, 6))
    y = sf.to_torch(g, dtype=torch.float64)(torch.as_tensor(x)).detach().numpy()
    pol = set_exit_policy(g, threshold=float(np.median(ee.decode(y, ExitPolicy("output", 1.0))[0])), min_steps=2)
    offline = ee.evaluate_outputs(y, np.zeros(30, dtype=np.int64), pol)
    for batch_size, chunk in ((None, 1), (7, 1), (None, 4), (7, 5)):
        res = TorchExitRunner(g, chunk=chunk).run(x, batch_size=batch_size)
        np.testing.assert_array_equal(res.exit_steps, offline["exit_steps"])
        np.testing.assert_array_equal(res.predictions, offline["predictions"])
        assert res.stats["steps"] == offline["exit_steps"].sum() < 14 * 30
    assert 1 < res.stats["mean_steps"] < 14 and res.stats["saved"] > 0
    with pytest.raises(DataError, match="batch_size"):
        TorchExitRunner(g).run(x, batch_size=0)


def test_pictures_are_png(tmp_path):
    outputs, labels = _synthetic(steps=8, count=60)
    res = ee.calibrate_outputs(outputs, labels)
    p1 = ee.plot_latency_accuracy(res.curves(), tmp_path / "curve.png", chosen=(res.mean_steps, res.accuracy), t_max=8)
    p2 = ee.plot_exit_histogram(res.exit_steps, tmp_path / "hist.png", t_max=8)
    curves = ee.tradeoff_curves(outputs, labels, res.policy)
    p3 = ee.plot_latency_accuracy(curves, tmp_path / "test_curve.png")
    for p in (p1, p2, p3):
        assert p.read_bytes()[:8] == PNG
    with pytest.raises(DataError):
        ee.plot_exit_histogram([], tmp_path / "empty.png")


def test_torch_runner_adaptive_chunks_on_a_recurrent_module_with_delays():
    rng = np.random.default_rng(4)
    g = sf.Graph(
        {"input": n.Input(shape=(5,)), "w": n.Linear(weight=rng.normal(0.4, 1.0, (8, 5))), "lif": n.LIF(tau=0.01, v_threshold=0.4),
         "rec": n.Linear(weight=rng.normal(0, 0.5, (8, 8))), "delay": n.Delay(delay=rng.integers(0, 3, 8) * 1e-3),
         "out": n.Affine(weight=rng.normal(0, 1, (3, 8)), bias=np.zeros(3)), "output": n.Output(shape=(3,))},
        [("input", "w"), ("w", "lif"), ("lif", "rec"), ("rec", "delay"), ("delay", "lif"), ("lif", "out"), ("out", "output")], dt=1e-3,
    )
    x = rng.uniform(0, 1, (15, 23, 5))
    net = sf.to_torch(g, dtype=torch.float64)
    y = net(torch.as_tensor(x)).detach().numpy()
    pol = set_exit_policy(g, threshold=float(np.quantile(ee.decode(y, ExitPolicy("output", 1.0))[0], 0.6)), min_steps=3)
    offline = ee.evaluate_outputs(y, np.zeros(23, dtype=np.int64), pol)
    assert len(set(offline["exit_steps"].tolist())) > 2
    for kw in ({}, {"max_chunk": 6, "chunk_cost": 1000.0}, {"chunk_cost": 0.0}, {"chunk": 3}, {"max_chunk": 2}):
        runner = TorchExitRunner(net, policy=pol, **kw)
        res = runner.run(x, batch_size=10)
        np.testing.assert_array_equal(res.exit_steps, offline["exit_steps"])
        np.testing.assert_array_equal(res.predictions, offline["predictions"])
        assert runner.net._coef_cache is None  # the per-run coefficient cache does not outlive the run
        # waste: at most max_chunk - 1 steps a sample beyond its exit
        neurons = 8  # LIF neurons updated per sample-step (a Delay is no neuron update)
        limit = (runner.chunk or runner.max_chunk) - 1
        assert offline["exit_steps"].sum() * neurons <= res.stats["neuron_updates"] <= (offline["exit_steps"].sum() + limit * 23) * neurons
    for bad in ({"chunk": 0}, {"max_chunk": 2.5}, {"chunk_cost": -1}):
        with pytest.raises(DataError, match=next(iter(bad))):
            TorchExitRunner(net, policy=pol, **bad)


def test_torch_runner_chunked_decode_matches_stepwise_with_decay():
    """The per-chunk decode (one compiled call, exits found per step) gives the exits, predictions,
    confidences and accumulated scores of the offline step-by-step decoder, with a leaky (decay < 1)
    accumulator and exits inside chunks."""
    rng = np.random.default_rng(7)
    g = sf.Graph.sequential(n.Input(shape=(6,)), n.Linear(weight=rng.normal(0.3, 1.0, (12, 6))), n.LIF(tau=0.01, v_threshold=0.5),
                            n.Affine(weight=rng.normal(0, 1, (4, 12)), bias=rng.normal(0, 0.1, 4)), dt=1e-3)
    x = rng.uniform(0, 1, (14, 31, 6))
    net = sf.to_torch(g, dtype=torch.float64)
    net.sparse_limit = 1.0  # one product for every chunk, as exactness needs (docs/early_exit.md)
    y = net(torch.as_tensor(x)).detach().numpy()
    base = ExitPolicy(g.outputs[0], 1.0, decay=0.8, temperature=0.7, min_steps=2)
    pol = base.with_threshold(float(np.quantile(ee.decode(y, base)[0], 0.5)))
    offline = ee.evaluate_outputs(y, np.zeros(31, dtype=np.int64), pol)
    acc = np.zeros((31, 4))
    scores = np.zeros((31, 4))
    for t in range(14):
        acc = 0.8 * acc + y[t]
        hit = offline["exit_steps"] == t + 1
        scores[hit] = acc[hit]
    assert 2 < len(set(offline["exit_steps"].tolist()))
    for kw in ({}, {"chunk": 5}, {"chunk": 1}):
        res = TorchExitRunner(net, policy=pol, **kw).run(x)
        np.testing.assert_array_equal(res.exit_steps, offline["exit_steps"])
        np.testing.assert_array_equal(res.predictions, offline["predictions"])
        np.testing.assert_array_equal(res.scores, scores)
