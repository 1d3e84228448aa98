"""The API a PyTorch/snnTorch user expects: public dir(), explicit layouts, helpful errors."""

import numpy as np
import pytest
import snntorch as snn
import tonic
import torch
from torch import nn

import spikeflow as sf
from spikeflow.datasets import DigitSaccades


def test_dir_shows_only_public_names():
    names = dir(sf)
    assert {"simulate", "to_torch", "Trainer", "models", "exit", "__version__"} <= set(names)
    assert not [n for n in names if n.startswith("_") and n != "__version__"]
    assert "import_module" not in names and "Any" not in names


def test_batch_first_inputs_run_time_major():
    g = sf.Graph.sequential(sf.ir.Input(shape=(3,)), sf.ir.Linear(weight=np.eye(3)), sf.ir.IF(v_threshold=0.5, r=1e3), dt=1e-3)
    x = np.random.default_rng(0).uniform(0, 1, (4, 7, 3))  # [B, T, N]
    want = sf.simulate(g, np.swapaxes(x, 0, 1), backend="numba-event")
    got = sf.simulate(g, x, backend="numba-event", batch_first=True)
    assert got.output.shape == (7, 4, 3) and np.array_equal(got.output, want.output)
    torch_got = sf.simulate(g, torch.as_tensor(x), backend="torch", batch_first=True)
    assert np.array_equal(torch_got.output, want.output)
    with pytest.raises(sf.DataError, match="batch_first"):
        sf.simulate(g, 3.0, backend="numba-event", batch_first=True)


def test_download_true_says_where_the_files_go(tmp_path):
    with pytest.raises(sf.DataError, match=r"never downloads.*place them under .*NMNIST"):
        sf.datasets.NMNIST(root=tmp_path, download=True)


def test_unsupported_modules_come_with_a_fix():
    with pytest.raises(sf.BackendError, match="MaxPool2d.*fix: replace it by nn.AvgPool2d"):
        sf.to_graph(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2)), torch.zeros(2, 1, 1, 8, 8))
    with pytest.raises(sf.BackendError, match="Dropout.*identity at inference"):
        sf.to_graph(nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.1)), torch.zeros(2, 1, 3))


def test_from_snntorch_takes_dt_and_keeps_the_spikes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), snn.Leaky(beta=0.9, init_hidden=True, output=True))
    sample = torch.zeros(2, 5)
    a, b = sf.from_snntorch(model, sample), sf.from_snntorch(model, sample, dt=1e-3)
    assert a.dt == 1e-4 and b.dt == 1e-3
    x = (torch.rand(30, 2, 5, generator=torch.Generator().manual_seed(1)) < 0.5).double().numpy()
    ya, yb = sf.simulate(a, x).output, sf.simulate(b, x).output
    assert ya.any() and np.array_equal(ya, yb)
    with pytest.raises(sf.GraphError, match="dt"):
        sf.from_snntorch(model, sample, dt=-1.0)


def test_trainer_fits_spikeflow_datasets(tmp_path):
    frames = tonic.transforms.ToFrame(sensor_size=DigitSaccades.sensor_size, n_time_bins=4)
    data = DigitSaccades(tmp_path, subset=12, progress=False, transform=frames)
    graph = sf.models.build("saccade-cnn", bins=4, channels=(2, 2))
    trainer = sf.Trainer(graph, loss="membrane_max_ce", epochs=1, batch_size=4, progress=False)
    history = trainer.fit(data)
    assert len(history["loss"]) == 1 and np.isfinite(history["loss"][0])
    raw = DigitSaccades(tmp_path, subset=12, progress=False)
    with pytest.raises(sf.DataError, match="raw event arrays.*ToFrame"):
        sf.Trainer(graph, epochs=1, batch_size=4, progress=False).fit(raw)
