"""Sparse (CSR) Affine/Linear weights in the IR: coercion, equality, dicts, HDF5, NIR, shapes."""

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

import spikeflow as sf
from spikeflow.io import nir_bridge
from spikeflow.ir import nodes as n
from tests.reference.graph_sim import simulate as reference

FORMATS = ("csr", "csc", "coo", "lil", "dok", "bsr")


def random_sparse(rows, cols, density, seed=0):
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(rows, cols)) * (rng.random((rows, cols)) < density)
    return sp.csr_array(dense), dense


def sparse_graph(seed=0, affine=True):
    w, dense = random_sparse(6, 5, 0.4, seed)
    syn = n.Affine(weight=w, bias=np.linspace(0, 0.1, 6)) if affine else n.Linear(weight=w)
    return sf.Graph.sequential(n.Input(shape=(5,)), syn, n.LIF(tau=0.01, v_threshold=0.3, r=5.0), dt=1e-3), dense


# ------------------------------------------------------------------------------- coercion


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_scipy_format_becomes_canonical_float64_csr(fmt):
    _, dense = random_sparse(7, 9, 0.3)
    source = sp.csr_matrix(dense.astype(np.float32)).asformat(fmt)
    node = n.Linear(weight=source)
    w = node.weight
    assert isinstance(w, sp.csr_array) and w.dtype == np.float64 and w.has_sorted_indices
    assert w.has_canonical_format
    np.testing.assert_array_equal(w.toarray(), dense.astype(np.float32).astype(np.float64))


def test_duplicates_are_summed_and_the_input_is_not_aliased():
    coo = sp.coo_array(([1.0, 2.0, 5.0], ([0, 0, 1], [2, 2, 0])), shape=(2, 3))
    node = n.Linear(weight=coo)
    assert node.weight.nnz == 2
    assert node.weight.toarray().tolist() == [[0, 0, 3.0], [5.0, 0, 0]]
    csr = sp.csr_array(np.eye(3))
    node = n.Affine(weight=csr, bias=np.zeros(3))
    csr.data[:] = 7.0
    assert node.weight.toarray().tolist() == np.eye(3).tolist()


def test_dense_weights_stay_dense():
    node = n.Linear(weight=[[1, 0], [0, 2]])
    assert type(node.weight) is np.ndarray and node.weight.dtype == np.float64


@pytest.mark.parametrize(
    "bad, words",
    [
        (sp.csr_array(np.array([[np.nan, 1.0]])), ["weight", "NaN"]),
        (sp.csr_array(np.array([[np.inf, 1.0]])), ["weight", "NaN or inf"]),
        (sp.coo_array(np.array([1.0, 0.0, 2.0])), ["weight", "2-d", "1 dims"]),
        (sp.csr_array(np.array([[1 + 2j, 0]])), ["weight", "complex"]),
    ],
)
def test_bad_sparse_weights_are_rejected_with_the_field_named(bad, words):
    with pytest.raises(sf.GraphError) as err:
        n.Linear(weight=bad)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_sparse_weight_shape_checks_still_apply():
    with pytest.raises(sf.GraphError, match="'bias': expected shape \\(2,\\)"):
        n.Affine(weight=sp.csr_array(np.eye(2)), bias=np.zeros(3))
    with pytest.raises(sf.GraphError, match="shape mismatch"):
        sf.Graph.sequential(n.Input(shape=(3,)), n.Linear(weight=sp.csr_array(np.eye(2))), dt=1e-3).validate()


def test_conv_weights_do_not_accept_sparse():
    with pytest.raises(sf.GraphError, match="Conv1d field 'weight'"):
        n.Conv1d(weight=sp.csr_array(np.eye(2)), bias=np.zeros(2))


# ------------------------------------------------------------------------------- equality


def test_equality_compares_values_whatever_the_storage():
    w, dense = random_sparse(5, 4, 0.5, seed=3)
    assert n.Linear(weight=w) == n.Linear(weight=dense)
    assert n.Linear(weight=dense) == n.Linear(weight=w)
    assert n.Linear(weight=w) == n.Linear(weight=w.tocoo())
    changed = dense.copy()
    changed[np.nonzero(dense)[0][0], np.nonzero(dense)[1][0]] += 1.0
    assert n.Linear(weight=w) != n.Linear(weight=changed)
    assert n.Linear(weight=w) != n.Linear(weight=sp.csr_array(changed))
    extra = dense.copy()
    extra[dense == 0] = 0.5  # a new nonzero where the sparse matrix stores nothing
    assert n.Linear(weight=w) != n.Linear(weight=extra)
    assert n.Linear(weight=w) != n.Linear(weight=sp.csr_array(np.zeros((4, 5))))
    # an explicitly stored zero is dropped: it is no synapse
    explicit = sp.csr_array((np.array([0.0, 2.0]), np.array([0, 1]), np.array([0, 2, 2])), shape=(2, 2))
    assert n.Linear(weight=explicit).weight.nnz == 1
    assert n.Linear(weight=explicit) == n.Linear(weight=[[0.0, 2.0], [0.0, 0.0]])


def test_repr_does_not_print_the_matrix():
    assert repr(n.Linear(weight=sp.csr_array(np.eye(3)))) == "Linear(weight=csr(3, 3)[nnz=3])"


def test_dense_weight_helper():
    w, dense = random_sparse(4, 3, 0.5)
    node = n.Affine(weight=w, bias=np.zeros(4))
    for value in (node, w, dense, dense.tolist(), n.Linear(weight=dense)):
        out = n.dense_weight(value)
        assert type(out) is np.ndarray and out.dtype == np.float64
        np.testing.assert_array_equal(out, dense)


# ------------------------------------------------------------------------------ dict / HDF5


def test_to_dict_is_plain_csr_and_from_dict_restores_it():
    g, _ = sparse_graph()
    data = g.nodes["affine1"].to_dict()
    weight = data["weight"]
    assert sorted(weight) == sorted(n.SPARSE_KEYS) and weight["format"] == "csr"
    assert weight["shape"].tolist() == [6, 5] and weight["indptr"].size == 7
    back = n.Node.from_dict(data)
    assert n.is_sparse(back.weight) and back == g.nodes["affine1"]
    assert sf.Graph.from_dict(g.to_dict()) == g


def _csr_dict(**changes):
    base = {
        "format": "csr", "shape": np.array([3, 4]), "indptr": np.array([0, 2, 2, 3]),
        "indices": np.array([1, 3, 0]), "data": np.array([1.0, -2.0, 0.5]),
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


MALFORMED = {
    "indptr not starting at 0": (_csr_dict(indptr=np.array([1, 2, 2, 3])), "start at 0"),
    "indptr decreasing": (_csr_dict(indptr=np.array([0, 2, 1, 3])), "never decrease"),
    "indptr too short": (_csr_dict(indptr=np.array([0, 2, 3])), "rows + 1 = 4 entries, found 3"),
    "indptr end beyond data": (_csr_dict(indptr=np.array([0, 2, 2, 4])), "lengths disagree"),
    "indices and data lengths": (_csr_dict(data=np.array([1.0, 2.0])), "lengths disagree"),
    "index out of range": (_csr_dict(indices=np.array([1, 4, 0])), "'indices'[1] = 4 is outside the 4 columns"),
    "negative index": (_csr_dict(indices=np.array([1, -1, 0])), "'indices'[1] = -1"),
    "float indices": (_csr_dict(indices=np.array([1.0, 3.0, 0.0])), "'indices' must be a 1-d array of integers"),
    "2-d data": (_csr_dict(data=np.ones((3, 1))), "'data' must be a 1-d array"),
    "3-d shape": (_csr_dict(shape=np.array([3, 4, 1])), "2 sizes"),
    "negative shape": (_csr_dict(shape=np.array([-3, 4])), "2 sizes"),
    "NaN data": (_csr_dict(data=np.array([1.0, np.nan, 0.5])), "NaN"),
    "unknown format": (_csr_dict(format="coo"), "format 'coo'"),
    "missing key": (_csr_dict(indices=None), "exactly the entries"),
    "extra key": (_csr_dict(extra=np.zeros(1)), "exactly the entries"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_csr_dicts_raise_graph_error_naming_the_field(case):
    data, words = MALFORMED[case]
    with pytest.raises(sf.GraphError) as err:
        n.Node.from_dict({"type": "Linear", "weight": data})
    assert "Linear field 'weight'" in str(err.value) and words in str(err.value), str(err.value)


def test_valid_csr_dict_builds_the_matrix():
    node = n.Node.from_dict({"type": "Linear", "weight": _csr_dict()})
    assert node.weight.toarray().tolist() == [[0, 1.0, 0, -2.0], [0, 0, 0, 0], [0.5, 0, 0, 0]]


def test_hdf5_round_trip_keeps_the_weight_sparse(tmp_path):
    g, dense = sparse_graph()
    inner, _ = sparse_graph(seed=1, affine=False)
    outer = sf.Graph({"x": n.Input(shape=(5,)), "sub": inner, "y": n.Output(shape=(6,))}, [("x", "sub"), ("sub", "y")], dt=1e-3)
    for graph in (g, outer):
        path = tmp_path / "net.h5"
        sf.save(graph, path)
        back = sf.load(path)
        assert back == graph
    back = sf.load(tmp_path / "net.h5")
    assert n.is_sparse(back.nodes["sub"].nodes["linear1"].weight)
    sf.save(g, path)
    with h5py.File(path) as f:
        group = f["graph/nodes/affine1/weight"]
        assert isinstance(group, h5py.Group) and group.attrs["format"] == "csr"
        assert group["data"].shape == (np.count_nonzero(dense),)
    back = sf.load(path)
    assert n.is_sparse(back.nodes["affine1"].weight)
    np.testing.assert_array_equal(back.nodes["affine1"].weight.toarray(), dense)


def _edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f["graph/nodes/affine1/weight"])


def _replace(name, value):
    def fn(group):
        del group[name]
        group[name] = value
    return fn


FILE_DAMAGE = {
    "indptr decreasing": (_replace("indptr", np.array([0, 3, 1, 4, 6, 8, 12])), sf.GraphError, ["never decrease"]),
    "indptr wrong length": (_replace("indptr", np.array([0, 1, 2])), sf.GraphError, ["rows + 1 = 7"]),
    "index out of range": (lambda g: g["indices"].__setitem__(0, 99), sf.GraphError, ["'indices'[0] = 99"]),
    "data shorter": (_replace("data", np.ones(2)), sf.GraphError, ["lengths disagree"]),
    "format attribute": (lambda g: g.attrs.__setitem__("format", "csc"), sf.FormatError, ["'format' must be 'csr'"]),
    "format missing": (lambda g: g.attrs.__delitem__("format"), sf.FormatError, ["exactly the entries"]),
    "indices missing": (lambda g: g.__delitem__("indices"), sf.FormatError, ["exactly the entries"]),
    "indices as strings": (_replace("indices", np.array(["a", "b"], dtype=object).astype(h5py.string_dtype())), sf.FormatError, ["'indices' must be a 1-d dataset of integers"]),
    "data as a group": (lambda g: (g.__delitem__("data"), g.create_group("data")), sf.FormatError, ["'data' must be a 1-d dataset"]),
    "shape 2-d": (_replace("shape", np.array([[6, 5]])), sf.FormatError, ["'shape' must be a 1-d dataset"]),
}


@pytest.mark.parametrize("case", sorted(FILE_DAMAGE))
def test_damaged_sparse_groups_are_named(tmp_path, case):
    fn, error, words = FILE_DAMAGE[case]
    g, _ = sparse_graph()
    path = tmp_path / "net.h5"
    sf.save(g, path)
    _edit(path, fn)
    with pytest.raises(error) as err:
        sf.load(path)
    text = str(err.value)
    assert str(path) in text and "affine1" in text and "weight" in text, text
    assert all(w in text for w in words), text


def test_fuzzed_csr_dicts_raise_only_graph_errors():
    """Random corruptions of a valid CSR dict: either a valid node or a GraphError, nothing else."""
    rng = np.random.default_rng(0)
    built = rejected = 0
    for _ in range(400):
        data = _csr_dict()
        key = str(rng.choice(["shape", "indptr", "indices", "data"]))
        arr = data[key]
        how = rng.integers(5)
        if how == 0:  # change one entry
            arr = arr.copy()
            arr[rng.integers(arr.size)] = rng.integers(-3, 6)
        elif how == 1:  # drop or add entries
            arr = arr[: rng.integers(arr.size + 1)] if rng.random() < 0.5 else np.concatenate([arr, arr[:2]])
        elif how == 2:  # shuffle
            arr = rng.permutation(arr)
        elif how == 3:  # another dtype
            arr = arr.astype(rng.choice([np.float32, np.int8, np.uint16, np.bool_]))
        else:  # another rank
            arr = arr.reshape(1, -1) if rng.random() < 0.5 else np.asarray(arr[0] if arr.size else 0)
        data[key] = arr
        try:
            node = n.Node.from_dict({"type": "Linear", "weight": data})
        except sf.GraphError:
            rejected += 1
            continue
        built += 1
        w = node.weight
        assert w.has_canonical_format and w.indptr.size == w.shape[0] + 1
        assert (w.indices < w.shape[1]).all() and (w.indices >= 0).all()
    assert built > 20 and rejected > 100


def test_fuzzed_files_raise_only_spikeflow_errors(tmp_path):
    rng = np.random.default_rng(1)
    g, _ = sparse_graph()
    clean = tmp_path / "clean.h5"
    sf.save(g, clean)
    for i in range(25):
        path = tmp_path / f"f{i}.h5"
        path.write_bytes(clean.read_bytes())
        key = str(rng.choice(["shape", "indptr", "indices", "data"]))
        with h5py.File(path, "r+") as f:
            group = f["graph/nodes/affine1/weight"]
            arr = group[key][()]
            arr = rng.permutation(arr) if rng.random() < 0.5 else arr[: rng.integers(arr.size + 1)]
            del group[key]
            group[key] = arr
        try:
            back = sf.load(path)
        except sf.SpikeflowError as err:
            assert str(path) in str(err)
            continue
        assert n.is_sparse(back.nodes["affine1"].weight)


# ------------------------------------------------------------------------------ semantics


def test_shapes_and_reference_simulation_match_the_dense_weight():
    g, dense = sparse_graph(seed=4)
    d = sf.Graph.sequential(n.Input(shape=(5,)), n.Affine(weight=dense, bias=np.linspace(0, 0.1, 6)),
                            n.LIF(tau=0.01, v_threshold=0.3, r=5.0), dt=1e-3)
    assert g.shapes() == d.shapes()
    x = (np.random.default_rng(0).random((30, 2, 5)) < 0.3).astype(float)
    ours, theirs = reference(g, x, record_state=True), reference(d, x, record_state=True)
    assert sorted(ours) == sorted(theirs)
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    assert ours["lif2"].sum() > 0


# ------------------------------------------------------------------------------------ NIR


def test_nir_export_densifies_and_imports_dense(tmp_path):
    g, dense = sparse_graph()
    ng = sf.to_nir(g, tmp_path / "net.nir")
    assert type(ng.nodes["affine1"].weight) is np.ndarray
    np.testing.assert_array_equal(ng.nodes["affine1"].weight, dense)
    back = sf.from_nir(tmp_path / "net.nir")
    assert type(back.nodes["affine1"].weight) is np.ndarray and back == g


def test_nir_export_refuses_a_too_large_dense_matrix():
    assert nir_bridge.MAX_DENSE == 50_000_000
    g, _ = sparse_graph()
    sf.to_nir(g, max_dense=30)  # 6 x 5 = 30 entries: allowed
    with pytest.raises(sf.GraphError) as err:
        sf.to_nir(g, max_dense=29)
    text = str(err.value)
    assert "node 'affine1' field 'weight'" in text and "6 x 5" in text and "30 dense entries" in text and "max_dense" in text
    inner, _ = sparse_graph(affine=False)
    outer = sf.Graph({"x": n.Input(shape=(5,)), "sub": inner, "y": n.Output(shape=(6,))}, [("x", "sub"), ("sub", "y")], dt=1e-3)
    with pytest.raises(sf.GraphError, match="node 'sub': node 'linear1' field 'weight'"):
        sf.to_nir(outer, max_dense=10)
    # dense weights are not limited: they are already dense
    sf.to_nir(sf.Graph.sequential(n.Input(shape=(5,)), n.Linear(weight=np.ones((6, 5))), dt=1e-3), max_dense=1)


def test_default_limit_applies_to_a_huge_sparse_matrix():
    w = sp.csr_array((np.ones(3), (np.array([0, 1, 2]), np.array([0, 1, 2]))), shape=(10_000, 10_000))
    g = sf.Graph.sequential(n.Input(shape=(10_000,)), n.Linear(weight=w), dt=1e-3)
    with pytest.raises(sf.GraphError, match="100,000,000 dense entries \\(800.0 MB\\)"):
        sf.to_nir(g)
