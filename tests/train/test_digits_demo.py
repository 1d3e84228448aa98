"""The digits MLP of ``spikeflow train`` and the examples (spikeflow.workflows's trainers), its HDF5/NIR
reload and the torch / numba-event comparison it prints."""

import math

import numpy as np
import pytest

from spikeflow import workflows
from spikeflow.cli import main
from tests.reference.graph_sim import simulate as reference_simulate


@pytest.mark.slow
def test_demo_reaches_90_percent_reloads_and_simulates_identically(tmp_path):
    """The digits MLP (examples/train_digits_mlp.py's steps): >= 90% after 3 epochs, its HDF5 and
    NIR files reload to identical predictions, torch and numba-event agree spike for spike."""
    result = workflows.train_digits(tmp_path, epochs=3, progress=False)
    assert result["test_acc"] >= 0.90
    result["reload"] = workflows.reload_check(result, result["paths"]["hdf5"], tmp_path / "digits_mlp.nir")
    for kind in ("hdf5", "nir"):
        check = result["reload"][kind]
        assert check["same_predictions"], kind
        assert check["acc"] == result["test_acc"]
    assert len(result["trainer"].history["val_acc"]) == 3
    # numba-event and torch, both float64, predict identically and match the trained float32 net
    sim = result["simulate"] = workflows.compare_backends(result["graph"], result["x_test"], result["y_test"])
    assert sim["n"] == len(result["y_test"]) == 360
    assert sim["differing_predictions"] == 0 and sim["batch1_same_predictions"]
    assert sim["differing_spikes"] == 0 and sim["spikes_compared"] == 20 * 360 * 128
    assert sim["numba-event"]["acc"] == sim["torch"]["acc"]
    assert abs(sim["torch"]["acc"] - result["test_acc"]) <= 2 / 360
    # event-driven: far fewer synaptic operations than the dense count of every synapse every step
    assert 0 < sim["numba-event"]["synaptic_events_per_sample"] < sim["torch"]["synaptic_events_per_sample"]
    assert sim["torch"]["synaptic_events_per_sample"] == 20 * (64 * 128 + 128 * 10)
    text = workflows.summary(result)
    assert "MLP test accuracy" in text and "numba-event" in text and "identical predictions on all 360" in text
    assert "identical predictions, max |score diff|" in text  # the reload rows
    # the saved graph is what `spikeflow info` reads back
    assert main(["info", str(result["paths"]["hdf5"])]) == 0


def test_compare_backends_scores_against_the_reference_simulator():
    graph = workflows.digits_mlp(hidden=12, seed=3)
    rng = np.random.default_rng(0)
    x = (rng.random((6, 8, 64)) < 0.5).astype(np.float64)
    want = reference_simulate(graph, x)["output"].max(0).argmax(-1)
    labels = want.copy()
    labels[:3] = (want[:3] + 1) % 10  # three wrong on purpose: accuracy 5/8
    report = workflows.compare_backends(graph, x, labels, latency_samples=4)
    assert report["n"] == 8 and report["batch1_n"] == 4 and report["batch1_input"] == "dense"
    for backend in workflows.compared_backends():
        r = report[backend]
        assert r["acc"] == 5 / 8, backend
        assert r["neuron_updates_per_sample"] == 6 * (12 + 10)
        assert r["seconds_per_sample"] > 0 and r["batch1_seconds_per_sample"] > 0
    assert report["torch"]["synaptic_events_per_sample"] == 6 * (64 * 12 + 12 * 10)
    # numba-event counts one multiply-add per nonzero input per outgoing synapse
    hidden = reference_simulate(graph, x)["lif2"]
    events = (np.count_nonzero(x, axis=(0, 2)) * 12 + np.count_nonzero(hidden, axis=(0, 2)) * 10).mean()
    assert math.isclose(report["numba-event"]["synaptic_events_per_sample"], events)
    # float64: identical spike trains; the readout's membrane may differ in the last bit only,
    # since torch and numba add the same products in another order
    assert report["differing_predictions"] == 0 and report["max_abs_output_diff"] < 1e-12
    assert report["differing_spikes"] == 0 and report["spikes_compared"] == 6 * 8 * 12
    assert report["batch1_same_predictions"]


def test_compare_backends_reports_a_failing_backend(monkeypatch):
    import spikeflow as sf
    from spikeflow.errors import BackendError

    real = sf.simulate

    def broken(graph, x, backend="numba-event", **kw):
        if backend == "numba-event":
            raise BackendError("node 'x' of type Foo is not supported by backend 'numba-event'")
        return real(graph, x, backend=backend, **kw)

    monkeypatch.setattr(sf, "simulate", broken)
    graph = workflows.digits_mlp(hidden=4)
    report = workflows.compare_backends(graph, np.zeros((2, 3, 64)), np.zeros(3, dtype=int), latency_samples=1)
    assert set(report["torch"]) >= {"acc", "synaptic_events_per_sample", "seconds_per_sample"}
    assert report["numba-event"] == {"error": "BackendError: node 'x' of type Foo is not supported by backend 'numba-event'"}
    assert "differing_predictions" not in report
    table = workflows.backend_table({"MLP": report})
    assert "failed" in table and "MLP on numba-event: BackendError: node 'x'" in table


def test_backend_table_says_how_many_predictions_differ():
    row = {"acc": 0.9, "synaptic_events_per_sample": 1000.0, "neuron_updates_per_sample": 50.0,
           "seconds_per_sample": 2e-3, "batch1_seconds_per_sample": 3e-3}
    report = {"n": 360, "batch1_n": 32, "batch1_input": "events", "torch": row, "numba-event": dict(row, acc=0.89),
              "differing_predictions": 3, "max_abs_output_diff": 1e-12, "batch1_same_predictions": False,
              "differing_spikes": 7, "spikes_compared": 1000}
    text = workflows.backend_table({"CNN": report})
    assert "3 of 360 predictions DIFFER" in text and "DIFFERENT classes" in text and "7 DIFFER (1,000 values)" in text
    assert "90.00%" in text and "89.00%" in text and "1,000 (dense)" in text and "2.000 ms" in text and "3.000 ms" in text
    report.update(differing_predictions=0, batch1_same_predictions=True, differing_spikes=0)
    text = workflows.backend_table({"CNN": report})
    assert "identical predictions on all 360 test samples" in text and "spike trains identical" in text


def test_unknown_training_options_are_refused(tmp_path):
    from spikeflow.errors import DataError

    with pytest.raises(DataError, match="unknown option 'hiden'"):
        workflows.train_digits(tmp_path, hiden=3)
    with pytest.raises(DataError, match="unknown option 'chanels'"):
        workflows.train_saccade_cnn(tmp_path, chanels=(1, 2))
