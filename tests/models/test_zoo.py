"""The model zoo: builders are deterministic, named in MODELS, and build valid graphs."""

import numpy as np
import pytest

import spikeflow as sf
from spikeflow.errors import GraphError
from spikeflow.models import MODELS, build, digits_mlp, spiking_mlp


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_builds_a_valid_deterministic_graph(name):
    options = {"mlp": {"n_in": 6, "hidden": 5}, "saccade-cnn": {"bins": 4, "channels": (2, 3), "duration_us": 4000.0}}.get(name, {})
    a, b = build(name, **options), build(name, **options)
    a.validate()
    assert a == b


def test_seed_changes_the_weights():
    a, b = spiking_mlp(6, 5, seed=0), spiking_mlp(6, 5, seed=1)
    assert not np.array_equal(a.nodes["affine1"].weight, b.nodes["affine1"].weight)


def test_digits_mlp_is_the_spiking_mlp_on_64_inputs_with_metadata():
    a, b = digits_mlp(hidden=7, seed=2), spiking_mlp(64, 7, 10, seed=2)
    assert a.metadata["model"] == "digits-mlp" and not b.metadata
    for name in a.nodes:
        for field in ("weight", "bias", "tau", "r"):
            if hasattr(a.nodes[name], field):
                np.testing.assert_array_equal(getattr(a.nodes[name], field), getattr(b.nodes[name], field))


def test_weights_follow_torch_default_bound():
    g = spiking_mlp(100, 20, 4, seed=0)
    assert np.abs(g.nodes["affine1"].weight).max() <= 0.1 and np.abs(g.nodes["affine3"].weight).max() <= 1 / np.sqrt(20)


def test_unknown_model_names_the_zoo():
    with pytest.raises(GraphError, match="digits-mlp"):
        build("resnet")


def test_reachable_as_sf_models():
    assert sf.models.build is build
