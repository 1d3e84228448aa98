"""Every registered node type round-trips through sf.save/sf.load and sf.to_nir/sf.from_nir.

The types come from ``NODE_TYPES`` (no hand-kept list): :func:`random_node` builds a random valid
instance of any type from its dataclass fields and fails loudly for a type it cannot build.
"""

import importlib
import pkgutil
from dataclasses import fields

import numpy as np
import pytest

import spikeflow as sf
import spikeflow.ir
from spikeflow.io import nir_bridge
from spikeflow.ir import nodes as n
from spikeflow.ir.nodes import NODE_TYPES

# Register every node type spikeflow.ir defines, whatever other tests happened to import.
for _info in pkgutil.iter_modules(spikeflow.ir.__path__):
    importlib.import_module(f"spikeflow.ir.{_info.name}")
NIR_TYPES = sorted(k for k in NODE_TYPES if k in nir_bridge.TO_NIR)

DT = 1e-3
CHANNELS = 2
# Per-sample input shapes tried in turn until the node accepts one (channels first).
CANDIDATE_SHAPES = [(4,), (CHANNELS, 9), (CHANNELS, 7, 6), (2, 3, 4)]


def _array_field(cls, name: str, rng, elementwise_shape, ndim_weight: int | None):
    """Random values for an array field: weights by the class's convolution rank, the rest
    elementwise (positive, so that time constants, delays and gains are all valid)."""
    if name == "weight":
        if ndim_weight is None:  # dense: (out, in)
            return rng.normal(size=(3, 4))
        kernel = tuple(rng.integers(1, 3, size=ndim_weight))
        return rng.normal(size=(3, CHANNELS) + kernel)
    if name == "bias":
        return rng.normal(size=3)
    scale = DT * rng.uniform(2, 40)
    if name == "delay":
        return DT * rng.integers(0, 4, size=elementwise_shape).astype(float)
    return scale * rng.uniform(1, 2, size=elementwise_shape)


def _egru(rng):
    hidden = 3
    return dict(
        weight_ih=rng.normal(size=(3 * hidden, 4)), weight_hh=rng.normal(size=(3 * hidden, hidden)),
        bias_ih=rng.normal(size=3 * hidden), bias_hh=rng.normal(size=3 * hidden), threshold=rng.uniform(0.1, 0.5, hidden),
    )


SPECIAL = {"EGRU": _egru}
"""Types whose parameters are tied by a structure field kinds cannot express (gate blocks)."""


def random_node(cls: type, rng: np.random.Generator) -> tuple[n.Node, tuple[int, ...]]:
    """A random valid instance of ``cls`` and an input shape it accepts."""
    if cls.__name__ in SPECIAL:
        node = cls(**SPECIAL[cls.__name__](rng))
        return node, node.input_shape()
    ndim_weight = getattr(cls, "ndim", None)
    for in_shape in CANDIDATE_SHAPES:
        elementwise_shape = in_shape if rng.random() < 0.5 else ()
        kwargs = {}
        for f in fields(cls):
            kind = f.metadata["kind"]
            if kind == "shape":
                kwargs[f.name] = in_shape
            elif kind == "ints":
                low = 0 if f.name == "padding" else 1
                kwargs[f.name] = tuple(int(v) for v in rng.integers(low, low + 2, size=f.metadata["n"]))
            elif kind == "int":
                if f.default is not f.default_factory and isinstance(f.default, int):
                    kwargs[f.name] = f.default  # groups, start_dim, end_dim: defaults are valid
            elif kind == "choice":
                kwargs[f.name] = str(rng.choice(f.metadata["choices"]))
            elif kind in ("array", "positive"):
                kwargs[f.name] = _array_field(cls, f.name, rng, elementwise_shape, ndim_weight)
            else:
                raise AssertionError(f"random_node: field kind {kind!r} of {cls.__name__}.{f.name} is new; teach the factory")
        try:
            node = cls(**kwargs)
            node.output_shape(in_shape)
        except sf.GraphError:
            continue
        return node, in_shape
    raise AssertionError(f"random_node cannot build a valid {cls.__name__}; teach the factory about this type")


def single_node_graph(kind: str, seed: int) -> sf.Graph:
    rng = np.random.default_rng(seed)
    node, in_shape = random_node(NODE_TYPES[kind], rng)
    if isinstance(node, n.Input):
        return sf.Graph({"x": node, "y": n.Output(shape=node.shape)}, [("x", "y")], dt=DT)
    if isinstance(node, n.Output):
        return sf.Graph({"x": n.Input(shape=node.shape), "y": node}, [("x", "y")], dt=DT)
    return sf.Graph(
        {"x": n.Input(shape=in_shape), "node": node, "y": n.Output(shape=node.output_shape(in_shape))},
        [("x", "node"), ("node", "y")],
        dt=DT,
        integration=str(rng.choice(["euler", "exact"])),
        metadata={"seed": seed, "kind": kind},
    ).validate()


def nested_recurrent_graph() -> sf.Graph:
    rng = np.random.default_rng(7)
    rnn = sf.Graph(
        {
            "input": n.Input(shape=(4,)),
            "lif": n.CubaLIF(tau_syn=0.005, tau_mem=rng.uniform(0.01, 0.02, 4), v_threshold=0.05, reset="subtract"),
            "w_rec": n.Linear(weight=rng.normal(size=(4, 4))),
            "output": n.Output(shape=(4,)),
        },
        [("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        dt=1e-3,
    )
    inner = sf.Graph(
        {"input": n.Input(shape=(4,)), "rnn": rnn, "scale": n.Scale(scale=0.5), "output": n.Output(shape=(4,))},
        [("input", "rnn"), ("rnn", "scale"), ("scale", "output")],
        dt=1e-3,
    )
    return sf.Graph(
        {
            "input": n.Input(shape=(3,)),
            "fc": n.Affine(weight=rng.normal(size=(4, 3)), bias=np.zeros(4)),
            "block": inner,
            "li": n.LI(tau=0.02),
            "output": n.Output(shape=(4,)),
        },
        [("input", "fc"), ("fc", "block"), ("block", "li"), ("li", "output")],
        dt=1e-3,
        integration="exact",
        metadata={"name": "nested"},
    ).validate()


def test_factory_covers_every_registered_type():
    for kind, cls in NODE_TYPES.items():
        node, in_shape = random_node(cls, np.random.default_rng(0))
        assert type(node) is cls
        assert node.output_shape(in_shape)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", sorted(NODE_TYPES))
def test_every_node_round_trips_through_hdf5(kind, seed, tmp_path):
    g = single_node_graph(kind, seed)
    sf.save(g, tmp_path / "g.h5")
    back = sf.load(tmp_path / "g.h5")
    assert back == g
    assert list(back.nodes) == list(g.nodes)


def test_nir_tables_cover_every_nir_primitive():
    import nir

    primitives = {name for name in nir.ir.__all__ if isinstance(getattr(nir, name), type) and issubclass(getattr(nir, name), nir.NIRNode)}
    assert primitives - {"NIRGraph", "NIRNode"} == set(nir_bridge.TO_NIR) == set(nir_bridge.FROM_NIR)
    assert set(nir_bridge.TO_NIR) <= set(NODE_TYPES)


@pytest.mark.parametrize("kind", sorted(set(NODE_TYPES) - set(NIR_TYPES)) or ["(none)"])
def test_types_without_nir_equivalent_are_refused(kind):
    if kind == "(none)":
        pytest.skip("every registered type is a NIR primitive")
    with pytest.raises(sf.GraphError, match=f"node 'node': type {kind} has no NIR equivalent"):
        sf.to_nir(single_node_graph(kind, 0))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", NIR_TYPES)
def test_every_node_round_trips_through_nir(kind, seed, tmp_path):
    import nir

    g = single_node_graph(kind, seed)
    in_memory = sf.to_nir(g)
    assert type(in_memory.nodes["x" if kind != "Input" else "x"]).__name__ == "Input"
    if kind not in ("Input", "Output"):
        assert type(in_memory.nodes["node"]).__name__ == kind  # one-to-one
    assert sf.from_nir(in_memory) == g
    sf.to_nir(g, tmp_path / "g.nir")
    assert sf.from_nir(tmp_path / "g.nir") == g
    # A plain NIR reader sees full-size neuron parameters and the graph types check out.
    nir.read(tmp_path / "g.nir")


def test_nested_recurrent_graph_round_trips(tmp_path):
    import nir

    g = nested_recurrent_graph()
    sf.save(g, tmp_path / "g.h5")
    assert sf.load(tmp_path / "g.h5") == g
    ng = sf.to_nir(g, tmp_path / "g.nir")
    assert isinstance(ng.nodes["block"], nir.NIRGraph)
    assert isinstance(ng.nodes["block"].nodes["rnn"], nir.NIRGraph)
    assert ("w_rec", "lif") in ng.nodes["block"].nodes["rnn"].edges
    for back in (sf.from_nir(ng), sf.from_nir(tmp_path / "g.nir")):
        assert back == g
        assert back.delayed_edges() == [("block.rnn.w_rec", "block.rnn.lif")]


def test_round_trip_preserves_behaviour(tmp_path):
    from tests.reference.graph_sim import simulate

    g = nested_recurrent_graph()
    x = np.random.default_rng(1).uniform(0, 3, size=(12, 2, 3))
    want = simulate(_flat(g), x)
    assert 0 < want["block_rnn_lif"].mean() < 1  # the recurrent layer spikes, but not always
    sf.save(g, tmp_path / "b.h5")
    for back in (sf.load(tmp_path / "b.h5"), sf.from_nir(sf.to_nir(g))):
        got = simulate(_flat(back), x)
        np.testing.assert_array_equal(got["block_rnn_lif"], want["block_rnn_lif"])
        np.testing.assert_array_equal(got["output"], want["output"])


def _flat(g: sf.Graph) -> sf.Graph:
    """The flattened graph with '.' in names replaced (the reference simulator validates names)."""
    flat = g.flatten()
    rename = {k: k.replace(".", "_") for k in flat.nodes}
    return sf.Graph(
        {rename[k]: v for k, v in flat.nodes.items()}, [(rename[a], rename[b]) for a, b in flat.edges], dt=flat.dt, integration=flat.integration
    )
