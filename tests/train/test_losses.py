import math

import pytest
import torch

from spikeflow.errors import DataError
from spikeflow.train import losses as L


def test_count_cross_entropy_matches_hand_value():
    # counts: sample 0 -> [2, 0] (label 0), sample 1 -> [1, 1] (label 1)
    y = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]])
    target = torch.tensor([0, 1])
    expected = (math.log(1 + math.exp(-2)) + math.log(2)) / 2
    assert L.SpikeCountCrossEntropy()(y, target).item() == pytest.approx(expected)
    # scale multiplies the counts before the softmax
    assert L.SpikeCountCrossEntropy(scale=0.5)(y, target).item() == pytest.approx((math.log(1 + math.exp(-1)) + math.log(2)) / 2)


def test_count_mse_matches_hand_value():
    y = torch.zeros(4, 1, 3)
    y[:, 0, 1] = 1.0  # class 1 fires 4 times, others never
    target = torch.tensor([1])
    loss = L.SpikeCountMSE(on_rate=0.5, off_rate=0.25)(y, target)
    # target counts: [1, 2, 1]; counts [0, 4, 0] -> errors [1, 4, 1] / 3
    assert loss.item() == pytest.approx(2.0)


def test_membrane_cross_entropy_max_and_mean():
    v = torch.tensor([[[0.0, 1.0]], [[2.0, 0.0]], [[1.0, 0.5]]])  # T=3, B=1, C=2
    target = torch.tensor([0])
    # max over time: [2, 1]; mean: [1, 0.5]
    assert L.MembraneCrossEntropy("max")(v, target).item() == pytest.approx(math.log(1 + math.exp(-1)))
    assert L.MembraneCrossEntropy("mean")(v, target).item() == pytest.approx(math.log(1 + math.exp(-0.5)))
    assert L.MembraneCrossEntropy("max").scores(v).tolist() == [[2.0, 1.0]]


def test_losses_reject_bad_shapes_and_names():
    with pytest.raises(DataError, match=r"\[T, B, C\]"):
        L.SpikeCountCrossEntropy()(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(DataError, match="labels"):
        L.MembraneCrossEntropy()(torch.zeros(3, 4, 2), torch.zeros(5, dtype=torch.long))
    with pytest.raises(DataError, match="unknown loss 'nope'"):
        L.get_loss("nope")
    with pytest.raises(DataError, match="reduce"):
        L.MembraneCrossEntropy("median")
    with pytest.raises(DataError, match="rates"):
        L.SpikeCountMSE(on_rate=2.0)


def _record(values):
    z = torch.tensor(values, requires_grad=True)  # [T, B, N]
    return z, {"h": z}


def test_count_l1_and_l2_values_and_gradients_push_activity_down():
    z, rec = _record([[[1.0, 0.0]], [[1.0, 1.0]]])  # counts [2, 1]
    reg = L.SpikeCountL1("h", weight=0.5)
    r = reg(rec)
    assert r.item() == pytest.approx(0.5 * (2 + 1) / 2)
    r.backward()
    assert (z.grad > 0).all()
    z, rec = _record([[[1.0, 0.0]], [[1.0, 1.0]]])
    r = L.SpikeCountL2("h", weight=1.0)(rec)
    assert r.item() == pytest.approx((4 + 1) / 2)
    r.backward()
    assert (z.grad > 0).all()
    assert z.grad[0, 0, 0] > z.grad[0, 0, 1]  # the busier neuron is pushed harder


def test_rate_bounds_only_act_outside_the_bounds():
    # neuron 0 fires every step (rate 1), neuron 1 never (rate 0)
    z, rec = _record([[[1.0, 0.0]], [[1.0, 0.0]]])
    up = L.RateUpperBound("h", max_rate=0.5, weight=2.0)(rec)
    assert up.item() == pytest.approx(2.0 * (0.5**2) / 2)
    up.backward()
    assert z.grad[:, :, 0].gt(0).all() and z.grad[:, :, 1].eq(0).all()

    z, rec = _record([[[1.0, 0.0]], [[1.0, 0.0]]])
    low = L.RateLowerBound("h", min_rate=0.25, weight=1.0)(rec)
    assert low.item() == pytest.approx(0.25**2 / 2)
    low.backward()
    assert z.grad[:, :, 1].lt(0).all() and z.grad[:, :, 0].eq(0).all()


def test_regularizer_sums_over_nodes_and_names_missing_ones():
    a, b = torch.ones(2, 1, 3), torch.ones(2, 1, 4)
    reg = L.SpikeCountL1(["a", "b"], weight=1.0)
    assert reg({"a": a, "b": b}).item() == pytest.approx(4.0)
    with pytest.raises(DataError, match="node 'b' was not recorded"):
        reg({"a": a})
