"""The photograph place-recognition traverses and the sum-of-absolute-differences baseline."""

import numpy as np
import pytest

from spikeflow.datasets.places import QUERY, REFERENCE, Conditions, patch_normalise, place_cells, sad_match, traverse
from spikeflow.errors import DataError


def test_traverse_shapes_order_and_determinism():
    a = traverse(REFERENCE, 2, places=6, sensor=8, cell=32, bins=4, seed=3)
    b = traverse(REFERENCE, 2, places=6, sensor=8, cell=32, bins=4, seed=3)
    assert a["x"].shape == (12, 4, 2 * 8 * 8) and a["x"].dtype == np.float32
    assert a["place"].tolist() == list(range(6)) * 2 and a["view"].shape == (12, 8, 8)
    assert np.array_equal(a["x"], b["x"]) and np.array_equal(a["view"], b["view"])
    assert (a["x"] >= 0).all() and a["x"].sum() > 0 and np.allclose(a["x"], np.round(a["x"]))
    # another seed: other offsets and noise, the same places
    c = traverse(REFERENCE, 2, places=6, sensor=8, cell=32, bins=4, seed=4)
    assert not np.array_equal(a["x"], c["x"]) and np.array_equal(a["cells"], c["cells"])


def test_query_conditions_change_the_pictures():
    ref = traverse(REFERENCE, 1, places=4, sensor=8, cell=32, bins=4, seed=0)
    query = traverse(QUERY, 1, places=4, sensor=8, cell=32, bins=4, seed=0)
    assert query["view"].mean() < 0.8 * ref["view"].mean()  # darker
    # background activity adds events where the reference has none
    assert (query["x"].sum(1) > 0).mean() > (ref["x"].sum(1) > 0).mean()


def test_place_cells_follow_textured_route():
    cells = place_cells(10)
    assert cells.shape == (10, 3) and set(cells[:, 0]) == {0, 1}  # both photographs
    assert len({tuple(c) for c in cells}) == 10
    with pytest.raises(DataError, match="places must be between 1"):
        place_cells(10_000)


@pytest.mark.parametrize("kwargs, match", [({"cell": 30, "sensor": 8}, "multiple of sensor"), ({"repeats": 0}, "repeats"),
                                           ({"bins": 0}, "bins")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(DataError, match=match):
        traverse(Conditions(), **{"places": 2, **kwargs})


def test_sad_match_against_loops():
    rng = np.random.default_rng(0)
    ref, query = rng.random((5, 8, 8)), rng.random((7, 8, 8))
    got = sad_match(ref, query, patch=4)
    for i in range(7):
        best, best_sad = -1, np.inf
        q = query[i]
        for j in range(5):
            total = 0.0
            for by in range(0, 8, 4):
                for bx in range(0, 8, 4):
                    a, b = q[by:by + 4, bx:bx + 4], ref[j, by:by + 4, bx:bx + 4]
                    total += np.abs((a - a.mean()) / a.std() - (b - b.mean()) / b.std()).sum()
            if total < best_sad:
                best, best_sad = j, total
        assert got[i] == best
    # patch normalisation removes brightness and contrast of each patch
    assert np.allclose(patch_normalise(3.0 * ref + 1.0), patch_normalise(ref))
    with pytest.raises(DataError, match="multiple of patch"):
        patch_normalise(ref, patch=3)
