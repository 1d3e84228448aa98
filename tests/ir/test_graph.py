import numpy as np
import pytest

import spikeflow as sf
from spikeflow.ir import nodes as n


def rnn_graph():
    return sf.Graph(
        {
            "input": n.Input(shape=(4,)),
            "lif": n.LIF(tau=np.full(4, 0.01), v_threshold=1.0),
            "w": n.Linear(weight=np.eye(4)),
            "output": n.Output(shape=(4,)),
        },
        [("input", "lif"), ("lif", "w"), ("w", "lif"), ("lif", "output")],
    )


def test_sequential_infers_shapes_through_conv_stack():
    g = sf.Graph.sequential(
        n.Input(shape=(1, 8, 8)),
        n.Conv2d(weight=np.ones((4, 1, 3, 3)), bias=np.zeros(4), padding=1),
        n.LIF(tau=0.01, v_threshold=1.0),
        n.SumPool2d(kernel_size=2, stride=2),
        n.Flatten(),
        n.Affine(weight=np.ones((10, 64)), bias=np.zeros(10)),
        n.LI(tau=0.02),
    )
    shapes = g.shapes()
    assert shapes["conv2d1"] == (4, 8, 8)
    assert shapes["sumpool2d3"] == (4, 4, 4)
    assert shapes["output"] == (10,)


def test_recurrent_edge_is_delayed_and_grouped():
    g = rnn_graph()
    assert g.delayed_edges() == [("w", "lif")]
    assert ["lif", "w"] in g.components()


def test_nested_graph_flattens_with_dotted_names():
    outer = sf.Graph(
        {"input": n.Input(shape=(4,)), "rnn": rnn_graph(), "output": n.Output(shape=(4,))},
        [("input", "rnn"), ("rnn", "output")],
    )
    flat = outer.flatten()
    assert set(flat.nodes) == {"input", "rnn.lif", "rnn.w", "output"}
    assert ("input", "rnn.lif") in flat.edges and ("rnn.lif", "output") in flat.edges
    assert flat.delayed_edges() == [("rnn.w", "rnn.lif")]


@pytest.mark.parametrize(
    "build, words",
    [
        (lambda: n.LIF(tau=[0.01, np.nan], v_threshold=1.0), ["LIF", "tau", "NaN"]),
        (lambda: n.LIF(tau=-1.0, v_threshold=1.0), ["tau", "> 0"]),
        (lambda: n.LIF(tau=0.01, v_threshold=1.0, reset="soft"), ["reset", "soft"]),
        (lambda: n.Affine(weight=np.ones((2, 3)), bias=np.ones(3)), ["bias", "(2,)"]),
        (lambda: n.Node.from_dict({"type": "Bogus"}), ["unknown node type", "Bogus"]),
        (lambda: n.Node.from_dict({"type": "LI", "tau": 1.0, "extra": 1}), ["unexpected field", "extra"]),
        (lambda: n.Node.from_dict({"type": "LIF", "tau": 1.0}), ["missing field", "v_threshold"]),
    ],
)
def test_bad_nodes_name_the_field(build, words):
    with pytest.raises(sf.SpikeflowError) as err:
        build()
    for word in words:
        assert word in str(err.value)


def test_graph_errors_name_the_node():
    with pytest.raises(sf.GraphError, match="'a'.*no stateful node"):
        sf.Graph(
            {"input": n.Input(shape=(4,)), "a": n.Linear(weight=np.eye(4)), "b": n.Scale(scale=2.0), "output": n.Output(shape=(4,))},
            [("input", "a"), ("a", "b"), ("b", "a"), ("b", "output")],
        ).validate()
    with pytest.raises(sf.GraphError, match="'ghost' is not a node"):
        sf.Graph({"input": n.Input(shape=(2,)), "output": n.Output(shape=(2,))}, [("input", "ghost")]).validate()
    with pytest.raises(sf.GraphError, match="'affine2'.*expects input shape \\(63,\\)"):
        sf.Graph.sequential(n.Input(shape=(1, 8, 8)), n.Flatten(), n.Affine(weight=np.ones((10, 63)), bias=np.zeros(10)))
    with pytest.raises(sf.GraphError, match="'lif1'.*Euler"):
        sf.Graph.sequential(n.Input(shape=(2,)), n.LIF(tau=1e-4, v_threshold=1.0), dt=1e-3).validate()


def test_components_are_ordered_after_everything_they_read():
    eye = np.eye(3)
    g = sf.Graph(
        {
            "input": n.Input(shape=(3,)),
            "n0": n.LIF(tau=0.01, v_threshold=1.0),
            "skip": n.Linear(weight=eye),
            "n1": n.LIF(tau=0.01, v_threshold=1.0),
            "n2": n.LIF(tau=0.01, v_threshold=1.0),
            "rec": n.Linear(weight=eye),
            "output": n.Output(shape=(3,)),
        },
        [("input", "n0"), ("n0", "n1"), ("n0", "skip"), ("skip", "n2"), ("n1", "n2"), ("n2", "rec"), ("rec", "n1"), ("n2", "output")],
    )
    position = {name: i for i, group in enumerate(g.components()) for name in group}
    for a, b in g.edges:
        assert position[a] <= position[b], (a, b, g.components())
