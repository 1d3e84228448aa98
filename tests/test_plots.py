import numpy as np
import pytest
import torch

from spikeflow import plots
from spikeflow.errors import DataError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_png(path):
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return matplotlib.image.imread(path)


def test_spike_raster_single_and_layers(tmp_path):
    rng = np.random.default_rng(0)
    z = (rng.random((30, 20)) < 0.2).astype(float)
    out = plots.spike_raster(z, tmp_path / "raster.png", dt=1e-3, title="one")
    img = read_png(out)
    assert out == tmp_path / "raster.png" and img.shape[0] > 100
    # spikes must show up as dark pixels on the white background
    assert img[..., :3].min() < 0.2
    layered = plots.spike_raster({"input": z, "hidden": torch.tensor(z[:, :10])}, tmp_path / "layers.png")
    assert read_png(layered).shape[0] > img.shape[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layers.png", "raster.png"]  # no temporaries


def test_membrane_traces_and_curves(tmp_path):
    v = np.cumsum(np.random.default_rng(1).normal(size=(40, 3)), axis=0)
    read_png(plots.membrane_traces(v, tmp_path / "v.png", threshold=1.0, labels=["a", "b", "c"]))
    hist = {"loss": [1.0, 0.6, 0.4], "train_acc": [0.5, 0.7, 0.8], "val_acc": [float("nan")] * 3}
    read_png(plots.training_curves(hist, tmp_path / "curve.png"))
    curves = {"fixed T": ([5, 10, 20], [0.7, 0.85, 0.9]), "early exit": ([8, 4, 12], [0.85, 0.8, 0.9])}
    read_png(plots.accuracy_latency(curves, tmp_path / "lat.png"))


def test_bad_inputs_raise_data_error(tmp_path):
    with pytest.raises(DataError, match=r"expected 2 dims, got shape \(5,\)"):
        plots.spike_raster(np.zeros(5), tmp_path / "x.png")
    with pytest.raises(DataError, match="labels"):
        plots.membrane_traces(np.zeros((5, 2)), tmp_path / "x.png", labels=["a"])
    with pytest.raises(DataError, match="'loss'"):
        plots.training_curves({"acc": [1]}, tmp_path / "x.png")
    with pytest.raises(DataError, match="'val_acc' has 1 entries"):
        plots.training_curves({"loss": [1, 2], "val_acc": [0.5]}, tmp_path / "x.png")
    with pytest.raises(DataError, match="2 latencies but 3 accuracies"):
        plots.accuracy_latency({"m": ([1, 2], [0.1, 0.2, 0.3])}, tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


def test_metric_bars_labels_every_bar_and_marks_missing_values(tmp_path):
    out = plots.metric_bars(["numba-event", "torch"], {"accuracy (%)": [91.5, 90.0], "events": [26660.0, float("nan")]},
                            tmp_path / "bars.png", formats={"accuracy (%)": ".1f"}, hatched=[False, True])
    img = read_png(out)
    assert img.shape[1] > 300 and img[..., :3].min() < 0.3  # bars drawn
    assert plots.readable(26660.0) == "26,660" and plots.readable(0.01234) == "0.0123"
    with pytest.raises(DataError, match="panel 'events' has 1 values for 2 categories"):
        plots.metric_bars(["a", "b"], {"events": [1.0]}, tmp_path / "bad.png")
    with pytest.raises(DataError, match="hatched"):
        plots.metric_bars(["a", "b"], {"x": [1.0, 2.0]}, tmp_path / "bad.png", hatched=[True])
    with pytest.raises(DataError, match="need categories"):
        plots.metric_bars([], {}, tmp_path / "bad.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.png"]


def test_membrane_traces_mark_spikes_at_the_threshold(tmp_path):
    v = np.array([[0.2, 0.0], [0.6, 0.5], [0.0, 0.9], [0.3, 0.0]])
    z = np.array([[0, 0], [0, 0], [1, 0], [0, 1]])
    read_png(plots.membrane_traces(v, tmp_path / "v.png", threshold=1.0, spikes=z))
    with pytest.raises(DataError, match="spikes have shape"):
        plots.membrane_traces(v, tmp_path / "bad.png", spikes=z[:2])
