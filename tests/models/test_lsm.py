"""LSM reservoir builder and readouts: structure, statistics, learning on small data, zero-shot."""

import numpy as np
import pytest

import spikeflow as sf
from spikeflow.errors import DataError, GraphError
from spikeflow.models.lsm import binary_frames, reservoir
from spikeflow.models.readout import features, retrieval_accuracy, train_contrastive, train_readout


def test_reservoir_structure_dale_and_connection_probabilities():
    g = reservoir(100, 300, p_in=0.2, p_rec=0.1, excitatory=0.8, seed=3)
    w_in, w_rec = g.nodes["w_in"].weight, g.nodes["w_rec"].weight
    assert abs(np.mean(w_in != 0) - 0.2) < 0.01 and abs(np.mean(w_rec != 0) - 0.1 * 299 / 300) < 0.01
    signs = np.sign(w_rec).astype(int)
    column_signs = [set(signs[:, j][signs[:, j] != 0]) for j in range(300)]
    assert all(len(s) <= 1 for s in column_signs)  # Dale's law: one sign per presynaptic neuron
    excit = np.mean([s == {1} for s in column_signs if s])
    assert 0.7 < excit < 0.9 and np.all(np.diag(w_rec) == 0)
    assert ("lif", "w_rec") in g.edges and ("w_rec", "lif") in g.edges
    lif = g.nodes["lif"]
    assert np.allclose(1 - g.dt / lif.tau, 0.9) and np.allclose(lif.r * g.dt / lif.tau, 1.0)


def test_spectral_radius_and_device_weights():
    g = reservoir(10, 50, spectral_radius=0.9, seed=0)
    assert np.max(np.abs(np.linalg.eigvals(g.nodes["w_rec"].weight))) == pytest.approx(0.9)
    d = reservoir(10, 200, p_rec=0.3, weights="device", seed=0)
    w = np.abs(d.nodes["w_rec"].weight[~np.eye(200, dtype=bool)])
    conducting = w > 0.2  # broken-down cells (>= 50 µS of 2 x 80 µS), the rest pristine (~1e-3)
    assert abs(conducting.mean() - 0.3) < 0.02 and np.all(w[~conducting] < 1e-2)
    assert reservoir(10, 20, seed=1) == reservoir(10, 20, seed=1) and reservoir(10, 20, seed=1) != reservoir(10, 20, seed=2)
    with pytest.raises(GraphError, match="weights"):
        reservoir(10, 20, weights="magic")
    with pytest.raises(GraphError, match="decay"):
        reservoir(10, 20, decay=1.5)


def test_reservoir_runs_on_every_backend_alike():
    g = reservoir(30, 40, seed=0)
    x = (np.random.default_rng(0).random((20, 2, 30)) < 0.3).astype(float)
    a = sf.simulate(g, x, backend="numba-event", record=["lif"]).spikes["lif"]
    b = sf.simulate(g, x, backend="torch", record=["lif"]).spikes["lif"]
    assert a.sum() > 0 and np.array_equal(a, b)


def test_binary_frames_pools_and_binarises():
    frames = np.zeros((2, 3, 2, 4, 4))
    frames[1, 2, 1, 3, 2] = 5
    x = binary_frames(frames, pool=2)
    assert x.shape == (3, 2, 8) and x.sum() == 1 and x[2, 1, 4 + 2 + 1] == 1
    with pytest.raises(GraphError):
        binary_frames(np.zeros((2, 3, 4)))


def test_features_counts_windows_and_trace():
    z = np.zeros((4, 1, 2))
    z[0, 0, 0] = z[3, 0, 0] = z[2, 0, 1] = 1
    f = features(z, windows=2, trace_decay=0.5)
    np.testing.assert_allclose(f[0], [1, 0, 1, 1, 1 + 0.125, 0.5])
    with pytest.raises(DataError):
        features(z, windows=5)


def _clusters(n, classes, dim, seed, noise=0.6):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(0, 1, (10, dim))
    y = rng.integers(0, classes, n)
    return centres[y] + noise * rng.normal(0, 1, (n, dim)), y


def test_linear_probe_and_mlp_learn_separable_features():
    x, y = _clusters(400, 5, 12, 0)
    xt, yt = _clusters(200, 5, 12, 1)
    assert train_readout(x, y, epochs=40).accuracy(xt, yt) > 0.9
    mlp = train_readout(x, y, hidden=32, epochs=40)
    assert mlp.accuracy(xt, yt) > 0.9 and mlp.history[-1] < mlp.history[0] and mlp.train_seconds > 0
    with pytest.raises(DataError):
        train_readout(x, y[:-1])


def test_contrastive_heads_retrieve_unseen_classes_zero_shot():
    # two "modalities" see the same 10 class centres (in 5 dimensions, so the 7 seen classes span
    # them) through different random linear maps: what maps seen classes together maps unseen ones too
    rng = np.random.default_rng(5)
    ma, mb = rng.normal(0, 1, (5, 20)), rng.normal(0, 1, (5, 16))
    xa, ya = _clusters(1500, 10, 5, 2, noise=0.3)
    xb, yb = _clusters(1500, 10, 5, 3, noise=0.3)
    xa, xb = xa @ ma, xb @ mb
    seen = ya < 7
    pair = train_contrastive(xa[seen], ya[seen], xb[yb < 7], yb[yb < 7], dim=16, hidden=None, epochs=300, seed=0)
    unseen = [7, 8, 9]
    acc = retrieval_accuracy(pair, xa, ya, xb[yb >= 7], yb[yb >= 7], classes=unseen)
    assert acc > 0.8  # chance is 1/3
    with pytest.raises(DataError):
        train_contrastive(xa[ya == 0], ya[ya == 0], xb[yb == 0], yb[yb == 0])
