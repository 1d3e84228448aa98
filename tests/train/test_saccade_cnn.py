"""The DigitSaccades CNN trainer (spikeflow.workflows): the graph, a quick run on a subset, and (slow) the accuracy."""

import numpy as np
import pytest
import torch

import spikeflow as sf
from spikeflow import workflows
from spikeflow.errors import DataError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_cnn_graph_shapes_time_step_and_unit_input_gain():
    graph = workflows.saccade_cnn(bins=10, channels=(3, 5), seed=1)
    shapes = graph.shapes()
    assert shapes["pool0"] == (2, 17, 17)
    assert shapes["lif1"] == (3, 17, 17) and shapes["pool1"] == (3, 8, 8)
    assert shapes["lif2"] == (5, 8, 8) and shapes["pool2"] == (5, 4, 4)
    assert shapes["flatten"] == (80,) and shapes["output"] == (10,)
    assert graph.order() == ["input", "pool0", "conv1", "lif1", "pool1", "conv2", "lif2", "pool2", "flatten", "fc", "readout", "output"]
    # one step per bin of the 315 ms recording; each input adds its full weight in one step
    assert graph.dt == pytest.approx(0.315 / 10)
    for name in ("lif1", "lif2", "readout"):
        node = graph.nodes[name]
        np.testing.assert_allclose(graph.dt / node.tau * node.r, 1.0)
    net = sf.to_torch(graph, dtype=torch.float64)
    assert net(torch.zeros(10, 3, 2, 34, 34)).shape == (10, 3, 10)
    # seeded: the same seed gives the same weights, another seed others
    assert workflows.saccade_cnn(bins=10, channels=(3, 5), seed=1) == graph
    assert not np.array_equal(workflows.saccade_cnn(bins=10, channels=(3, 5), seed=2).nodes["conv1"].weight, graph.nodes["conv1"].weight)


@pytest.mark.parametrize("kwargs", [{"bins": 0}, {"channels": (4,)}, {"channels": (0, 4)}])
def test_cnn_graph_refuses_bad_settings(kwargs):
    with pytest.raises(DataError, match="saccade_cnn"):
        workflows.saccade_cnn(**kwargs)


@pytest.fixture(scope="module")
def quick_cnn(tmp_path_factory):
    """One epoch on the first 40 digits of each split: fast, not accurate."""
    out = tmp_path_factory.mktemp("cnn")
    return workflows.train_saccade_cnn(out, epochs=1, progress=False, subset=40, bins=4, channels=(4, 4)), out


def test_quick_cnn_saves_reloads_and_draws(quick_cnn):
    result, out = quick_cnn
    assert result["sizes"] == {"train": 36, "val": 4, "test": 40}
    assert result["data_root"] == out / "data" and any((out / "data" / "DigitSaccades").glob("test_*.h5"))
    assert result["x_test"].shape == (4, 40, 2, 34, 34) and result["x_test"].sum() > 0
    assert len(result["trainer"].history["val_acc"]) == 1
    for kind in ("hdf5", "nir"):
        assert result["reload"][kind]["same_predictions"], kind
    assert sf.load(result["paths"]["cnn_hdf5"]) == result["graph"]
    for name in ("cnn_event_frame", "cnn_event_strip", "cnn_raster", "cnn_curves"):
        assert result["paths"][name].read_bytes()[:8] == PNG_MAGIC, name


def test_quick_cnn_numba_event_from_raw_events_agrees_with_torch(quick_cnn):
    result, _ = quick_cnn
    events = workflows.saccade_test_events(result, 5)
    report = workflows.compare_backends(result["graph"], result["x_test"], result["y_test"], events=events,
                                   sensor_size=workflows.SENSOR_SIZE, latency_samples=5)
    assert report["batch1_input"] == "events" and report["batch1_n"] == 5
    assert report["differing_predictions"] == 0 and report["max_abs_output_diff"] < 1e-12
    assert report["differing_spikes"] == 0 and report["spikes_compared"] == 4 * 40 * (4 * 17 * 17 + 4 * 8 * 8)
    assert report["batch1_same_predictions"]
    assert report["numba-event"]["acc"] == report["torch"]["acc"]
    assert 0 < report["numba-event"]["synaptic_events_per_sample"] < report["torch"]["synaptic_events_per_sample"]


@pytest.mark.slow
def test_cnn_reaches_85_percent_and_numba_event_agrees(tmp_path):
    result = workflows.train_saccade_cnn(tmp_path, epochs=4, progress=False)
    assert result["sizes"] == {"train": 1293, "val": 144, "test": 360}
    assert result["test_acc"] >= 0.85
    report = workflows.compare_backends(result["graph"], result["x_test"], result["y_test"],
                                   events=workflows.saccade_test_events(result, 8), sensor_size=workflows.SENSOR_SIZE, latency_samples=8)
    assert report["differing_predictions"] == 0 and report["batch1_same_predictions"]
    assert report["differing_spikes"] == 0
    assert report["numba-event"]["acc"] >= 0.85
