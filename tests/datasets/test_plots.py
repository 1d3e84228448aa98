"""Pictures: PNG files written atomically; colours follow polarity."""

import numpy as np
import pytest

from spikeflow.datasets.events import make_events
from spikeflow.datasets.plots import event_image, plot_event_frame, plot_frame_strip, plot_raster
from spikeflow.errors import DataError

PNG = b"\x89PNG\r\n\x1a\n"


def test_event_image_colours():
    ev = make_events([1, 1, 2], [0, 0, 3], [0, 5, 9], [1, 1, 0])
    rgb = event_image(ev, (4, 4, 2))
    assert rgb[0, 1].tolist() == [1.0, 0.0, 0.0] and rgb[3, 2].tolist() == [0.0, 0.0, 1.0]
    assert rgb.sum() == 2.0


def test_pngs_are_written(tmp_path):
    rng = np.random.default_rng(0)
    ev = make_events(rng.integers(0, 34, 300), rng.integers(0, 34, 300), np.sort(rng.integers(0, 300_000, 300)), rng.integers(0, 2, 300))
    paths = [
        plot_event_frame(ev, (34, 34, 2), tmp_path / "frame.png", title="x"),
        plot_frame_strip(ev, (34, 34, 2), tmp_path / "strip.png", n_frames=4, duration=300_000),
        plot_raster(ev, tmp_path / "raster.png"),
        plot_raster(rng.random((50, 20)) < 0.1, tmp_path / "raster2.png", dt_ms=0.5),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == PNG
    assert sorted(f.name for f in tmp_path.iterdir()) == ["frame.png", "raster.png", "raster2.png", "strip.png"]


def test_plot_errors(tmp_path):
    with pytest.raises(DataError):
        plot_raster(np.zeros(5), tmp_path / "r.png")
    with pytest.raises(DataError):
        plot_frame_strip(make_events([0], [0], [0], [0]), (2, 2, 2), tmp_path / "s.png", n_frames=0)
    with pytest.raises(DataError):
        plot_event_frame(make_events([9], [0], [0], [0]), (2, 2, 2), tmp_path / "f.png")
    assert list(tmp_path.iterdir()) == []


def test_frame_grid_one_row_per_sample(tmp_path):
    from spikeflow.datasets.plots import plot_frame_grid

    a = make_events([1, 2, 3], [1, 2, 3], [0, 50_000, 100_000], [1, 0, 1])
    b = make_events([5, 6], [5, 6], [10_000, 200_000], [0, 1])
    one = plot_frame_strip(a, (8, 8, 2), tmp_path / "one.png", n_frames=3, duration=300_000)
    two = plot_frame_grid([a, b], (8, 8, 2), tmp_path / "two.png", n_frames=3, duration=300_000, row_labels=["label 1", "label 2"])
    import matplotlib.image

    assert matplotlib.image.imread(two).shape[0] > 1.6 * matplotlib.image.imread(one).shape[0]
    with pytest.raises(DataError, match="row labels"):
        plot_frame_grid([a, b], (8, 8, 2), tmp_path / "bad.png", row_labels=["x"])
    with pytest.raises(DataError, match="no samples"):
        plot_frame_grid([], (8, 8, 2), tmp_path / "bad.png")
    with pytest.raises(DataError):  # an event outside the sensor, in the second sample: nothing written
        plot_frame_grid([a, make_events([9], [0], [0], [0])], (8, 8, 2), tmp_path / "bad.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.png", "two.png"]
