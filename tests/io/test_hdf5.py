"""spikeflow's HDF5 graph format: the walker, the header, schema checks on broken files, atomic writes."""

import h5py
import numpy as np
import pytest

import spikeflow as sf
from spikeflow.io import hdf5
from spikeflow.ir import nodes as n


def small_graph() -> sf.Graph:
    return sf.Graph(
        {
            "input": n.Input(shape=(3,)),
            "fc": n.Affine(weight=np.arange(6.0).reshape(2, 3), bias=np.zeros(2)),
            "lif": n.LIF(tau=np.array([0.01, 0.02]), v_threshold=1.0, reset="subtract"),
            "output": n.Output(shape=(2,)),
        },
        [("input", "fc"), ("fc", "lif"), ("lif", "output")],
        dt=1e-3,
        metadata={"note": "small"},
    )


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "net.h5"
    sf.save(small_graph(), path)
    return path


def test_walker_round_trips_python_and_numpy_values(tmp_path):
    data = {
        "s": "text", "i": 3, "f": 0.5, "b": True, "arr": np.arange(4.0), "zero_d": np.array(2.5),
        "ints": np.array([1, 2], dtype=np.int64), "names": ["a", "b"], "pairs": [["a", "b"], ["c", "d"]],
        "empty": [], "nested": {"deeper": {"x": np.ones((2, 2))}},
    }
    with h5py.File(tmp_path / "t.h5", "w") as f:
        hdf5.write_tree(f, data)
    with h5py.File(tmp_path / "t.h5", "r") as f:
        back = hdf5.read_tree(f)
    assert set(back) == set(data)
    for key in ("s", "i", "f", "b", "names", "pairs", "empty"):
        assert back[key] == data[key] and type(back[key]) is type(data[key])
    for key in ("arr", "zero_d", "ints"):
        assert back[key].dtype == data[key].dtype and np.array_equal(back[key], data[key])
    assert np.array_equal(back["nested"]["deeper"]["x"], np.ones((2, 2)))


def test_walker_refuses_what_it_cannot_store(tmp_path):
    with h5py.File(tmp_path / "t.h5", "w") as f, pytest.raises(sf.FormatError, match="'obj'.*object"):
        hdf5.write_tree(f, {"obj": object()})


def test_file_has_format_header_and_keeps_node_order(saved):
    with h5py.File(saved, "r") as f:
        assert f.attrs["format"] == "spikeflow-graph"
        assert f.attrs["format_version"] == hdf5.FORMAT_VERSION == 1
        assert f["graph/nodes/lif/tau"].dtype == np.float64
    g = sf.load(saved)
    assert list(g.nodes) == ["input", "fc", "lif", "output"]
    assert g == small_graph() and g.metadata == {"note": "small"}


def _edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def _set_edges(f, edges):
    del f["graph/edges"]
    f["graph"].create_dataset("edges", data=np.array(edges, dtype=object), dtype=h5py.string_dtype())


BROKEN = {
    "newer version": (lambda f: f.attrs.__setitem__("format_version", 2), sf.FormatError, ["newer", "version 2"]),
    "wrong format name": (lambda f: f.attrs.__setitem__("format", "other-thing"), sf.FormatError, ["spikeflow-graph", "other-thing"]),
    "missing format": (lambda f: f.attrs.__delitem__("format"), sf.FormatError, ["spikeflow-graph"]),
    "missing group": (lambda f: f.__delitem__("graph"), sf.FormatError, ["missing group 'graph'"]),
    "extra group": (lambda f: f.create_group("junk"), sf.FormatError, ["unexpected group 'junk'"]),
    "missing graph field": (lambda f: f["graph"].attrs.__delitem__("dt"), sf.FormatError, ["missing field 'dt'"]),
    "extra graph field": (lambda f: f["graph"].attrs.__setitem__("colour", "red"), sf.FormatError, ["unexpected field 'colour'"]),
    "missing node field": (lambda f: f["graph/nodes/lif"].__delitem__("tau"), sf.GraphError, ["'lif'", "missing field 'tau'"]),
    "extra node field": (lambda f: f["graph/nodes/lif"].create_dataset("bogus", data=1.0), sf.GraphError, ["'lif'", "unexpected field 'bogus'"]),
    "unknown node type": (lambda f: f["graph/nodes/lif"].attrs.__setitem__("type", "Bogus"), sf.GraphError, ["'lif'", "unknown node type 'Bogus'"]),
    "NaN parameter": (lambda f: f["graph/nodes/lif/tau"].__setitem__(0, np.nan), sf.GraphError, ["'lif'", "'tau'", "NaN"]),
    "wrong dtype": (
        lambda f: (f["graph/nodes/lif"].__delitem__("tau"), f["graph/nodes/lif"].create_dataset("tau", data=["0.01", "0.02"], dtype=h5py.string_dtype())),
        sf.FormatError, ["'lif'", "'tau'", "numeric array"],
    ),
    "wrong attribute type": (lambda f: f["graph/nodes/lif"].attrs.__setitem__("reset", 1), sf.FormatError, ["'lif'", "'reset'", "string"]),
    "edge to a missing node": (lambda f: _set_edges(f, [["input", "fc"], ["fc", "ghost"], ["lif", "output"]]), sf.GraphError, ["'ghost' is not a node"]),
    "shape mismatch": (lambda f: f["graph/nodes/input/shape"].__setitem__(0, 4), sf.GraphError, ["'fc'", "(3,)"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_file_raises_error_naming_file_and_place(saved, case):
    edit, error, words = BROKEN[case]
    _edit(saved, edit)
    with pytest.raises(error) as err:
        sf.load(saved)
    message = str(err.value)
    assert str(saved) in message
    for word in words:
        assert word in message, message


def test_truncated_file(saved, tmp_path):
    data = saved.read_bytes()
    for cut in (len(data) // 2, 100, 0):
        broken = tmp_path / f"cut{cut}.h5"
        broken.write_bytes(data[:cut])
        with pytest.raises(sf.FormatError, match=str(broken)):
            sf.load(broken)


def test_not_hdf5_and_missing_file(tmp_path):
    path = tmp_path / "net.h5"
    path.write_text("this is not HDF5\n" * 100)
    with pytest.raises(sf.FormatError, match="net.h5.*not a readable"):
        sf.load(path)
    with pytest.raises(sf.FormatError, match="no such file"):
        sf.load(tmp_path / "absent.h5")


def test_nir_file_is_not_a_spikeflow_file(tmp_path):
    sf.to_nir(small_graph(), tmp_path / "net.nir")
    with pytest.raises(sf.FormatError, match="expected a 'spikeflow-graph' file"):
        sf.load(tmp_path / "net.nir")


def test_failing_write_leaves_old_file_intact(saved, monkeypatch):
    before = saved.read_bytes()

    def explode(group, data):
        group.create_dataset("partial", data=np.zeros(3))
        raise RuntimeError("disk full")

    monkeypatch.setattr(hdf5, "write_tree", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        sf.save(small_graph(), saved)
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]  # no temporary left behind
    monkeypatch.undo()
    assert sf.load(saved) == small_graph()


def test_save_validates_first(tmp_path):
    bad = sf.Graph({"input": n.Input(shape=(2,)), "output": n.Output(shape=(2,))}, [("input", "ghost")])
    with pytest.raises(sf.GraphError, match="ghost"):
        sf.save(bad, tmp_path / "bad.h5")
    assert not (tmp_path / "bad.h5").exists()
