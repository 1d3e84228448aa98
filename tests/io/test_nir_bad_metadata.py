"""NIR files with bad metadata, shapes or values: every one a SpikeflowError (issue 17 found
JSONDecodeError, ValueError, TypeError, UnicodeDecodeError and RecursionError escaping)."""

import shutil

import h5py
import numpy as np
import pytest

import spikeflow as sf

STR = h5py.string_dtype()
META = "node/metadata/"
LIF = "node/nodes/lif2/"


def _set(f, name, value, dtype=None):
    if name in f:
        del f[name]
    f.create_dataset(name, data=value, dtype=dtype)


BAD = {
    "metadata not JSON": lambda f: _set(f, META + "spikeflow_metadata", "{", STR),
    "metadata nested 100000 deep": lambda f: _set(f, META + "spikeflow_metadata", "[" * 100_000, STR),
    "metadata a list": lambda f: _set(f, META + "spikeflow_metadata", "[1, 2]", STR),
    "metadata not UTF-8": lambda f: _set(f, META + "spikeflow_metadata", np.void(b"\xff\xfe")),
    "node order not JSON": lambda f: _set(f, META + "spikeflow_node_order", "[", STR),
    "dt a string": lambda f: _set(f, META + "spikeflow_dt", "abc", STR),
    "dt NaN": lambda f: _set(f, META + "spikeflow_dt", np.nan),
    "dt an array": lambda f: _set(f, META + "spikeflow_dt", np.ones(3)),
    "integration an int": lambda f: _set(f, META + "spikeflow_integration", 5),
    "integration unknown": lambda f: _set(f, META + "spikeflow_integration", "rk4", STR),
    "shape 2**40": lambda f: _set(f, LIF + "metadata/spikeflow_shape_tau", np.array([2**40])),
    "reset an int": lambda f: _set(f, LIF + "metadata/spikeflow_reset", 3),
    "reset unknown": lambda f: _set(f, LIF + "metadata/spikeflow_reset", "sideways", STR),
    "tau a string": lambda f: _set(f, LIF + "tau", "x", STR),
    "tau complex": lambda f: _set(f, LIF + "tau", np.ones(3, complex)),
    "tau 2-d": lambda f: _set(f, LIF + "tau", np.ones((3, 3))),
    "type unknown": lambda f: _set(f, LIF + "type", "Bogus", STR),
    "type an int": lambda f: _set(f, LIF + "type", 3),
    "edges numbers": lambda f: _set(f, "node/edges", np.ones((2, 2))),
    "edges of three": lambda f: _set(f, "node/edges", np.array([["a", "b", "c"]], dtype=object), STR),
    "edge to a missing node": lambda f: _set(f, "node/edges", np.array([["input", "ghost"]], dtype=object), STR),
    "weight 3-d": lambda f: _set(f, "node/nodes/affine1/weight", np.ones((2, 2, 2))),
    "weight a string": lambda f: _set(f, "node/nodes/affine1/weight", "w", STR),
    "weight NaN": lambda f: _set(f, "node/nodes/affine1/weight", np.full((3, 4), np.nan)),
    "input shape 2**40": lambda f: _set(f, "node/nodes/input/shape", np.array([2**40])),
    "input shape negative": lambda f: _set(f, "node/nodes/input/shape", np.array([-4])),
    "nodes a dataset": lambda f: (f.__delitem__("node/nodes"), f.create_dataset("node/nodes", data=1)),
    "a node a dataset": lambda f: (f.__delitem__(LIF[:-1]), f.create_dataset(LIF[:-1], data=1)),
    "no nodes": lambda f: f.__delitem__("node/nodes"),
}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    path = tmp_path_factory.mktemp("nir") / "clean.nir"
    g = sf.Graph.sequential(
        sf.ir.Input(shape=(4,)), sf.ir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)), sf.ir.LIF(tau=0.01, v_threshold=np.ones(3)), dt=1e-3
    )
    sf.to_nir(g, path)
    return path


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_nir_content_is_a_spikeflow_error(clean, tmp_path, case):
    path = tmp_path / "bad.nir"
    shutil.copy(clean, path)
    with h5py.File(path, "r+") as f:
        BAD[case](f)
    explicit_dt = case.startswith(("dt ", "integration"))
    with pytest.raises(sf.SpikeflowError) as err:
        sf.from_nir(path, dt=None if explicit_dt else 1e-3, integration=None)
    assert str(path) in str(err.value)
