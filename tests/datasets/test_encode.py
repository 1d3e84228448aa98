"""Spike encoders: statistics, ordering, determinism, NumPy and torch alike."""

import numpy as np
import pytest
import torch

from spikeflow.datasets.encode import delta_encode, latency_encode, rate_encode
from spikeflow.errors import DataError


@pytest.mark.parametrize("method", ["bernoulli", "poisson"])
def test_rate_is_proportional_to_value(method):
    x = np.linspace(0, 1, 11)[None].repeat(4, 0)
    s = rate_encode(x, n_steps=5000, method=method, seed=0)
    assert s.shape == (5000, 4, 11)
    rate = s.mean(axis=(0, 1))
    assert np.all(np.abs(rate - x[0]) < 4 * np.sqrt(np.maximum(x[0], 1e-3) / 20000) + 1e-3)
    if method == "bernoulli":
        assert set(np.unique(s)) <= {0.0, 1.0}


def test_rate_gain_and_seed():
    x = np.full((2, 3), 0.2)
    a, b, c = (rate_encode(x, 300, gain=2.0, seed=s) for s in (1, 1, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert abs(a.mean() - 0.4) < 0.05
    with pytest.raises(DataError, match=r"\[0.0, 0.5\]"):
        rate_encode(x * 3, 10, gain=2.0)


def test_rate_torch_in_torch_out():
    x = torch.full((8, 5), 0.3)
    s = rate_encode(x, 2000, seed=0)
    assert isinstance(s, torch.Tensor) and s.shape == (2000, 8, 5) and s.dtype == torch.float32
    assert abs(float(s.mean()) - 0.3) < 0.02
    assert torch.equal(s, rate_encode(x, 2000, seed=0))
    p = rate_encode(x, 2000, method="poisson", seed=0)
    assert abs(float(p.mean()) - 0.3) < 0.02 and float(p.max()) >= 2


def test_latency_orders_values_and_fires_once():
    x = np.array([[1.0, 0.8, 0.5, 0.2, 0.001]])
    for method in ("linear", "log"):
        s = latency_encode(x, n_steps=20, method=method)
        first = s.argmax(axis=0)[0]
        assert s.sum(axis=0).tolist() == [[1, 1, 1, 1, 0]]
        assert list(first[:4]) == sorted(first[:4]) and first[0] == 0
    lin = latency_encode(x, 11)
    assert lin.argmax(axis=0)[0, :4].tolist() == [0, 2, 5, 8]
    t = latency_encode(torch.tensor(x), 11)
    assert isinstance(t, torch.Tensor) and np.array_equal(t.numpy(), lin)


def reference_delta(x, thr):
    out = np.zeros_like(x)
    flat_x = x.reshape(x.shape[0], -1)
    flat_o = out.reshape(x.shape[0], -1)
    for j in range(flat_x.shape[1]):
        ref = flat_x[0, j]
        for t in range(1, flat_x.shape[0]):
            if abs(flat_x[t, j] - ref) >= thr:
                flat_o[t, j] = np.sign(flat_x[t, j] - ref)
                ref = flat_x[t, j]
    return out


def test_delta_matches_loop_reference_and_channels():
    x = np.cumsum(np.random.default_rng(0).normal(0, 0.05, (60, 3, 4)), axis=0)
    s = delta_encode(x, threshold=0.1)
    assert np.array_equal(s, reference_delta(x, 0.1))
    ch = delta_encode(x, threshold=0.1, channels=True)
    assert ch.shape == (60, 3, 2, 4)
    assert np.array_equal(ch[:, :, 0] - ch[:, :, 1], s)
    assert torch.equal(delta_encode(torch.tensor(x), 0.1), torch.tensor(s))


def test_bad_inputs():
    with pytest.raises(DataError, match="NaN"):
        rate_encode(np.array([[np.nan]]), 3)
    with pytest.raises(DataError, match="method"):
        rate_encode(np.zeros((1, 1)), 3, method="gauss")
    with pytest.raises(DataError, match="time-major"):
        delta_encode(np.zeros(5))
    with pytest.raises(DataError, match="non-empty"):
        latency_encode(np.zeros((0, 3)), 4)
