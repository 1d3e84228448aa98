"""Region ensembles: one graph whose members sit side by side, the hyperactive-neuron
regulariser against a loop reference, and member training on 1 and 2 Ray workers."""

import numpy as np
import pytest

import spikeflow as sf
from spikeflow.errors import DataError
from spikeflow.scale.ensemble import (
    MemberConfig, compare_place_recognition, ensemble_graph, hyperactive_neurons, member_graph, neuron_scores, place_scores,
    recall_at_1, remove_place_neurons, split_regions, train_on_ray,
)

TINY = MemberConfig(hidden=6, per_place=2, epochs=2, batch_size=8)


def test_ensemble_graph_is_the_members_side_by_side(tmp_path):
    regions = split_regions(5, 2)
    members = [member_graph(12, len(r), TINY, seed=k) for k, r in enumerate(regions)]
    ens = ensemble_graph(members, regions, 5)
    x = (np.random.default_rng(0).random((3, 10, 12)) < 0.4).astype(np.float32)
    expected = np.zeros((3, 5))
    for member, region in zip(members, regions):
        potential = np.asarray(sf.simulate(member, x.transpose(1, 0, 2).astype(np.float64), backend="numba-clock").output)
        for j, p in enumerate(region):
            # a place's score: the largest over time of its place neurons' mean potential
            expected[:, p] = potential[:, :, 2 * j:2 * j + 2].mean(-1).max(0)
    for backend in ("numba-event", "torch"):
        assert np.allclose(place_scores(ens, x, backend=backend), expected)
    sf.save(ens, tmp_path / "ens.h5")
    again = sf.load(tmp_path / "ens.h5")
    assert again == ens and np.allclose(place_scores(again, x), expected)
    with pytest.raises(DataError, match="2 members but 3 regions"):
        ensemble_graph(members, split_regions(5, 3), 5)
    with pytest.raises(DataError, match="place_of_neuron"):
        ensemble_graph(members[::-1], regions, 5)  # 3 places' neurons under a 2-place region


def test_hyperactive_neurons_against_loops():
    rng = np.random.default_rng(1)
    place = np.repeat(np.arange(6), 3)
    scores = rng.random((18, 8))
    place_of_neuron = np.repeat(np.arange(4), 2)
    region = np.array([1, 2, 3, 4])
    for fraction in (0.0, 0.4, 1.0):
        got = hyperactive_neurons(scores, place_of_neuron, place, region, fraction)
        expected = np.zeros(8, bool)
        counts = np.zeros(8)
        for j in range(8):
            own = scores[place == region[place_of_neuron[j]], j].mean()
            outside = [q for q in range(6) if q not in region]
            counts[j] = sum(scores[place == q, j].mean() >= own for q in outside) / len(outside)
            expected[j] = counts[j] > fraction
        for p in range(4):  # each place keeps its least hyperactive neuron
            mine = [j for j in range(8) if place_of_neuron[j] == p]
            if expected[mine].all():
                expected[mine[int(np.argmin(counts[mine]))]] = False
        assert np.array_equal(got, expected)
        assert all((~got[place_of_neuron == p]).any() for p in range(4))


def test_removing_place_neurons_keeps_the_others_exactly():
    g = member_graph(12, 3, TINY, seed=0)
    remove = np.array([True, False, False, False, False, True])
    small = remove_place_neurons(g, remove)
    x = (np.random.default_rng(2).random((2, 9, 12)) < 0.4).astype(np.float32)
    assert small.shapes()["output"] == (4,) and small.metadata["place_of_neuron"] == [0, 1, 1, 2]
    assert np.allclose(neuron_scores(small, x), neuron_scores(g, x)[:, ~remove])


def test_recall_and_regions():
    assert recall_at_1(np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert [r.tolist() for r in split_regions(5, 2)] == [[0, 1, 2], [3, 4]]
    with pytest.raises(DataError, match="count"):
        split_regions(3, 4)


def test_members_train_identically_on_one_and_two_ray_workers(ray_cluster):
    rng = np.random.default_rng(0)
    x = (rng.random((16, 6, 12)) < 0.3).astype(np.float32)
    place = np.tile(np.arange(4), 4)
    regions = split_regions(4, 2)
    one, _ = train_on_ray(x, place, regions, TINY, workers=1, calibration=(x, place))
    two, _ = train_on_ray(x, place, regions, TINY, workers=2, calibration=(x, place))
    assert len({r["pid"] for r in two}) == 2  # both workers trained a member
    for a, b in zip(one, two):
        assert a["graph"] == b["graph"] and np.array_equal(a["remove"], b["remove"])
        assert a["graph"].shapes()["output"] == (4,)


@pytest.mark.slow
def test_compare_place_recognition_end_to_end(ray_cluster, tmp_path):
    result = compare_place_recognition(MemberConfig(hidden=8, per_place=2, epochs=3), places=8, regions=2, train_repeats=2,
                                       calibration_repeats=1, query_repeats=1, workers=(1, 2), out=str(tmp_path))
    methods = [r["method"] for r in result["rows"]]
    assert methods == ["ensemble", "ensemble + regulariser", "single SNN (same size)", "sum of absolute differences (non-spiking)"]
    assert all(0.0 <= r["recall_at_1"] <= 1.0 for r in result["rows"])
    sizes = {r["method"]: r["neurons"] for r in result["rows"]}
    assert sizes["ensemble"] == sizes["single SNN (same size)"] == 2 * 8 + 8 * 2
    assert sizes["ensemble + regulariser"] == sizes["ensemble"] - sum(result["removed"])
    assert set(result["timing"]) == {1, 2}
    assert sf.load(result["paths"]["ensemble"]) == result["graphs"]["ensemble + regulariser"]
