"""The NIR bridge: conventions (dt, padding, shapes, wires, names), metadata, bad input, files."""

from dataclasses import dataclass

import nir
import numpy as np
import pytest

import spikeflow as sf
from spikeflow.ir import nodes as n
from nir.ir.graph import Identity

from tests.reference.graph_sim import simulate


def lif_graph(**kw) -> sf.Graph:
    return sf.Graph.sequential(
        n.Input(shape=(3,)),
        n.Affine(weight=np.arange(12.0).reshape(4, 3) / 10, bias=np.zeros(4)),
        n.LIF(tau=0.02, v_threshold=np.full(4, 0.5), reset="subtract"),
        dt=kw.pop("dt", 1e-3),
        **kw,
    )


def foreign(nodes, edges) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def test_export_writes_plain_nir_plus_spikeflow_metadata(tmp_path):
    g = lif_graph(metadata={"task": "demo"})
    ng = sf.to_nir(g, tmp_path / "g.nir")
    lif = ng.nodes["lif2"]
    assert isinstance(lif, nir.LIF)
    np.testing.assert_array_equal(lif.tau, np.full(4, 0.02))  # broadcast to full size for NIR
    np.testing.assert_array_equal(lif.v_reset, np.zeros(4))
    assert lif.metadata["spikeflow_reset"] == "subtract"
    assert list(lif.metadata["spikeflow_shape_tau"]) == []  # it was a scalar
    assert ng.metadata["spikeflow_dt"] == 1e-3 and ng.metadata["spikeflow_integration"] == "euler"
    back = nir.read(tmp_path / "g.nir")
    assert float(back.metadata["spikeflow_dt"]) == 1e-3
    assert sf.from_nir(tmp_path / "g.nir") == g


def test_foreign_graph_needs_dt():
    ng = sf.to_nir(lif_graph())
    ng.metadata = {}
    with pytest.raises(sf.GraphError, match="no time step.*dt="):
        sf.from_nir(ng)
    g = sf.from_nir(ng, dt=5e-4)
    assert g.dt == 5e-4 and g.integration == "euler"
    assert g.nodes["lif2"].reset == "subtract"  # node metadata still read
    ng.metadata = {"spikeflow_dt": 1e-3}
    assert sf.from_nir(ng, dt=2e-4, integration="exact").dt == 2e-4  # explicit dt wins


def test_foreign_conventions_padding_wires_open_outputs_and_names():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 2, 3, 3))
    ng = foreign(
        {
            "in": nir.Input(input_type={"input": np.array([2, 5, 5])}),
            "conv.a": nir.Conv2d(input_shape=None, weight=w, stride=1, padding="same", dilation=1, groups=1, bias=np.zeros(3)),
            "wire": Identity(input_type={"input": np.array([3, 5, 5])}),
            "conv/b": nir.Conv2d(input_shape=(5, 5), weight=rng.normal(size=(3, 3, 3, 3)), stride=2, padding="valid", dilation=1, groups=1, bias=np.ones(3)),
            "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([1, 1]), padding=np.array([0, 0])),
            "flat": nir.Flatten(input_type=None, start_dim=0, end_dim=-1),
            "out": nir.Output(output_type=None),
        },
        [("in", "conv.a"), ("conv.a", "wire"), ("wire", "conv/b"), ("conv/b", "pool"), ("pool", "flat"), ("flat", "out")],
    )
    g = sf.from_nir(ng, dt=1e-3)
    assert "wire" not in g.nodes and ("conv_a", "conv_b") in g.edges  # Identity is a wire
    assert g.nodes["conv_a"].padding == (1, 1) and g.nodes["conv_b"].padding == (0, 0)
    assert g.nodes["conv_b"].stride == (2, 2)
    shapes = g.shapes()
    assert shapes["conv_a"] == (3, 5, 5) and shapes["conv_b"] == (3, 2, 2) and shapes["pool"] == (3, 1, 1)
    assert g.nodes["out"].shape == (3,)  # NIR Flatten counts dims without the batch, like spikeflow


def test_same_padding_that_needs_uneven_pads_is_refused():
    ng = foreign(
        {
            "in": nir.Input(input_type={"input": np.array([1, 6])}),
            "c": nir.Conv1d(input_shape=6, weight=np.ones((1, 1, 2)), stride=1, padding="same", dilation=1, groups=1, bias=np.zeros(1)),
            "out": nir.Output(output_type={"output": np.array([1, 6])}),
        },
        [("in", "c"), ("c", "out")],
    )
    with pytest.raises(sf.GraphError, match="node 'c'.*'padding'.*uneven"):
        sf.from_nir(ng, dt=1e-3)


@dataclass(eq=False)
class Mystery(nir.NIRNode):
    gain: np.ndarray

    def __post_init__(self):
        self.input_type = {"input": np.array(self.gain.shape)}
        self.output_type = {"output": np.array(self.gain.shape)}


def test_unsupported_nir_type_names_node_and_type():
    ng = foreign(
        {"in": nir.Input(input_type={"input": np.array([2])}), "odd": Mystery(gain=np.ones(2)), "out": nir.Output(output_type={"output": np.array([2])})},
        [("in", "odd"), ("odd", "out")],
    )
    with pytest.raises(sf.GraphError, match="node 'odd'.*Mystery.*not supported"):
        sf.from_nir(ng, dt=1e-3)


def test_bad_nodes_and_edges_are_named():
    ng = sf.to_nir(lif_graph())
    ng.nodes["lif2"].tau[1] = np.nan
    with pytest.raises(sf.GraphError, match="node 'lif2'.*'tau'.*NaN"):
        sf.from_nir(ng)
    ng = sf.to_nir(lif_graph())
    ng.edges.append(("lif2", "ghost"))
    with pytest.raises(sf.GraphError, match="'ghost' is not a node"):
        sf.from_nir(ng)


def test_bad_files(tmp_path):
    junk = tmp_path / "junk.nir"
    junk.write_bytes(b"\x00not hdf5" * 50)
    with pytest.raises(sf.FormatError, match="junk.nir.*not a readable NIR file"):
        sf.from_nir(junk)
    sf.to_nir(lif_graph(), tmp_path / "good.nir")
    cut = tmp_path / "cut.nir"
    cut.write_bytes((tmp_path / "good.nir").read_bytes()[:800])
    with pytest.raises(sf.FormatError, match="cut.nir"):
        sf.from_nir(cut)
    sf.save(lif_graph(), tmp_path / "own.h5")
    with pytest.raises(sf.FormatError, match="own.h5.*not a readable NIR file"):
        sf.from_nir(tmp_path / "own.h5")
    with pytest.raises(sf.FormatError, match="no such file"):
        sf.from_nir(tmp_path / "absent.nir")


def test_nir_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "g.nir"
    sf.to_nir(lif_graph(), path)
    before = path.read_bytes()

    def explode(filename, graph, **kw):
        open(filename, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nir, "write", explode)
    with pytest.raises(OSError, match="disk full"):
        sf.to_nir(lif_graph(dt=2e-3), path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["g.nir"]


def test_multi_port_nested_graph_is_refused():
    inner = sf.Graph(
        {"a": n.Input(shape=(2,)), "b": n.Input(shape=(2,)), "s": n.Scale(scale=1.0), "t": n.Scale(scale=2.0), "out": n.Output(shape=(2,))},
        [("a", "s"), ("b", "t"), ("s", "out"), ("t", "out")],
    )
    outer = sf.Graph(
        {"input": n.Input(shape=(2,)), "sub": inner, "output": n.Output(shape=(2,))},
        [("input", "sub.a"), ("input", "sub.b"), ("sub", "output")],
    )
    with pytest.raises(sf.GraphError, match="'sub.a'.*2 inputs.*flatten"):
        sf.to_nir(outer)


def test_snntorch_style_flat_subgraph_names_become_valid_names():
    """nirtorch flattens recurrent subgraphs into dotted keys ('3.lif'): they become '3_lif'."""
    g = lif_graph()
    ng = sf.to_nir(g)
    ng.nodes = {("3." + k if k == "lif2" else k): v for k, v in ng.nodes.items()}
    ng.edges = [tuple("3.lif2" if e == "lif2" else e for e in edge) for edge in ng.edges]
    ng.metadata = {"spikeflow_dt": 1e-3}
    back = sf.from_nir(ng)
    assert "3_lif2" in back.nodes
    x = np.random.default_rng(0).uniform(0, 2, (10, 2, 3))
    np.testing.assert_array_equal(simulate(back, x)["output"], simulate(g, x)["output"])
