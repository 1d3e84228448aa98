"""LSM reservoir builder and readouts: structure, statistics, learning on small data, zero-shot."""

import numpy as np
import pytest

import spikeflow as sf
from spikeflow.errors import DataError, GraphError
from spikeflow.models.lsm import binary_frames, reservoir
from spikeflow.models.readout import features, retrieval_accuracy, train_contrastive, train_profiles, train_readout


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


def test_similarity_profiles_match_the_reference_and_retrieve_unseen_classes():
    from tests.reference import profiles as ref

    # two modalities share the geometry of 10 class centres up to a rotation and a scale (and
    # their own noise and offset): each unseen class has the same similarities to the seen ones
    rng = np.random.default_rng(3)
    q = np.linalg.qr(rng.normal(0, 1, (12, 12)))[0]
    xa, ya = _clusters(1200, 10, 12, 4, noise=0.3)
    xb, yb = _clusters(1200, 10, 12, 5, noise=0.3)
    xb = 3.0 * xb @ q + 5.0
    pair = train_profiles(xa[ya < 7], ya[ya < 7], xb[yb < 7], yb[yb < 7])
    assert retrieval_accuracy(pair, xa, ya, xb[yb >= 7], yb[yb >= 7], classes=[7, 8, 9]) > 0.9  # chance 1/3
    for standardise in (False, True):
        pair = train_profiles(xa[:60], ya[:60], xb[:60], yb[:60], standardise=standardise)
        shared = np.intersect1d(ya[:60], yb[:60])
        np.testing.assert_allclose(pair.embed_a(xa[60:70]), ref.profiles(xa[:60], ya[:60], shared, xa[60:70], standardise), atol=1e-6)  # float32 features
        np.testing.assert_allclose(pair.embed_b(xb[60:70]), ref.profiles(xb[:60], yb[:60], shared, xb[60:70], standardise), atol=1e-6)  # float32 features
    with pytest.raises(DataError):
        train_profiles(xa[ya == 0], ya[ya == 0], xb[yb == 0], yb[yb == 0])


def test_ridge_probe_matches_the_hat_matrix_reference():
    from spikeflow.models.readout import RIDGE_GRID, ridge_fit
    from tests.reference import ridge as ref

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (60, 8)) * rng.uniform(0.1, 5, 8) + rng.normal(0, 3, 8)
    y = rng.integers(0, 3, 60)
    x[:, 3] += 2.0 * y  # one informative feature, so GCV picks a moderate penalty
    targets = np.eye(3)[y]
    w, b, alpha = ridge_fit(x, targets)
    w_ref, b_ref, alpha_ref = ref.ridge_gcv(x, targets, RIDGE_GRID)
    scale = np.sum((x - x.mean(0)) ** 2) / x.shape[1]
    assert alpha == pytest.approx(alpha_ref) and RIDGE_GRID[0] < alpha / scale < RIDGE_GRID[-1]  # an interior choice
    np.testing.assert_allclose(w, w_ref, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(b, b_ref, rtol=1e-8, atol=1e-10)
    w2, _, _ = ridge_fit(x, targets, alpha=alpha_ref)  # a given penalty: one Cholesky solve, same weights
    np.testing.assert_allclose(w2, w_ref, rtol=1e-8, atol=1e-10)
    # the readout standardises as the reference does and carries the fit into its linear module
    readout = train_readout(x, y)
    mean, std = ref.standardise(x)
    np.testing.assert_allclose(readout.mean[0], mean, rtol=1e-5)
    np.testing.assert_allclose(readout.std[0], std, rtol=1e-4)
    w3, b3, _ = ref.ridge_gcv((x - mean) / std, targets, RIDGE_GRID)
    np.testing.assert_allclose(readout.logits(x), ((x - mean) / std) @ w3 + b3, rtol=1e-4, atol=1e-4)
    with pytest.raises(DataError, match="alpha"):
        ridge_fit(x, targets, alpha=0.0)
    with pytest.raises(DataError, match="ridge"):
        train_readout(x, y, hidden=8, method="ridge")
    with pytest.raises(DataError, match="method"):
        train_readout(x, y, method="magic")


def test_ridge_readout_of_a_small_lsm_learns_and_reservoir_features_match_the_simulator():
    from spikeflow.models.lsm import reservoir_features

    # three classes of input patterns: each class drives its own third of the inputs more often
    rng = np.random.default_rng(1)
    n_in, steps = 30, 30

    def data(n, seed):
        r = np.random.default_rng(seed)
        y = r.integers(0, 3, n)
        rate = np.full((n, n_in), 0.05)
        for i, c in enumerate(y):
            rate[i, c * 10 : (c + 1) * 10] = 0.4
        return (r.random((steps, n, n_in)) < rate[None]).astype(np.float32), y

    (xtr, ytr), (xte, yte) = data(300, 2), data(150, 3)
    g = reservoir(n_in, 60, p_in=0.3, input_scale=3.0, seed=int(rng.integers(100)))
    spikes = sf.simulate(g, xtr, record=["lif"]).spikes["lif"]
    slow = features(spikes, windows=3, trace_decay=0.8)
    fast64 = reservoir_features(g, xtr, windows=3, trace_decay=0.8, dtype="float64")
    np.testing.assert_allclose(fast64, slow, rtol=1e-5, atol=1e-5)  # counts equal, traces to float32
    assert spikes.sum() > 0
    fast32 = reservoir_features(g, xtr, windows=3, trace_decay=0.8)
    assert np.mean(np.abs(fast32 - slow) > 1e-4) < 0.01
    readout = train_readout(fast32, ytr)
    assert readout.accuracy(reservoir_features(g, xte, windows=3, trace_decay=0.8), yte) > 0.9 and readout.alpha > 0
    gradient = train_readout(fast32, ytr, method="gradient", epochs=30)
    assert gradient.alpha is None and gradient.history[-1] < gradient.history[0]
    with pytest.raises(GraphError, match="reservoir graph"):
        reservoir_features(sf.models.spiking_mlp(4, 3, 2), xtr[:, :, :4])
    with pytest.raises(GraphError, match="input"):
        reservoir_features(g, xtr[:, :, :5])
    with pytest.raises(DataError):
        reservoir_features(g, xtr, windows=steps + 1)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_reservoir_features_of_graded_inputs_match_the_simulator_for_any_thread_count(reset):
    """The event kernel's other branches: graded (non-binary) inputs, subtractive reset, a nonzero
    reset value, no trace; and samples split over threads give the same features as one thread."""
    import numba

    from spikeflow.models.lsm import reservoir_features

    rng = np.random.default_rng(4)
    g = reservoir(12, 40, p_in=0.5, input_scale=4.0, reset=reset, seed=5)
    g.nodes["lif"].v_reset = np.full(40, 0.5)
    x = rng.random((25, 64, 12)) * (rng.random((25, 64, 12)) < 0.4)
    slow = features(sf.simulate(g, x, record=["lif"]).spikes["lif"], windows=4, trace_decay=None)
    assert slow.sum() > 100 and slow.shape == (64, 160)
    np.testing.assert_array_equal(reservoir_features(g, x, windows=4, trace_decay=None, dtype="float64"), slow)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = reservoir_features(g, x, windows=4)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(reservoir_features(g, x, windows=4), one)
    assert np.mean(one[:, :160] != slow) < 0.01
