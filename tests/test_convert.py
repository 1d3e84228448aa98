"""ANN-to-SNN conversion: QCFS, BatchNorm folding, half-threshold start, exactness where theory says so."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import spikeflow as sf  # noqa: E402
from spikeflow.errors import GraphError  # noqa: E402
from spikeflow.ir import nodes as n  # noqa: E402
from spikeflow.convert import QCFS, ann_to_snn  # noqa: E402

nn = torch.nn


def _snn_mean(graph, x, steps, backend="torch"):
    xs = np.broadcast_to(x, (steps,) + x.shape).copy()
    return sf.simulate(graph, xs, backend=backend).output.mean(0)


def test_qcfs_is_clip_floor_shift_and_trains_its_threshold():
    act = QCFS(levels=4, threshold=2.0)
    x = torch.linspace(-1, 3, 41, requires_grad=True)
    y = act(x)
    expected = 2.0 * np.clip(np.floor(x.detach().numpy() * 4 / 2.0 + 0.5) / 4, 0, 1)
    np.testing.assert_allclose(y.detach().numpy(), expected, atol=1e-6)
    y.sum().backward()
    assert act.threshold.grad is not None and x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(GraphError, match="levels"):
        QCFS(levels=0)
    with pytest.raises(GraphError, match="threshold"):
        QCFS(threshold=-1.0)


def test_one_hidden_layer_equals_the_ann_after_levels_steps():
    # With constant input and a lambda/2 start, an IF layer fires floor(T z / lambda + 1/2) times
    # in T steps: at T = L that is exactly QCFS's quantised activation.
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(6, 24), nn.BatchNorm1d(24), QCFS(levels=4, threshold=1.5), nn.Dropout(0.1), nn.Linear(24, 5)).double()
    with torch.no_grad():
        ann[1].running_mean.uniform_(-0.3, 0.3)
        ann[1].running_var.uniform_(0.5, 2.0)
        ann[1].weight.uniform_(0.5, 1.5)
    ann.eval()
    graph = ann_to_snn(ann)
    x = np.random.default_rng(0).uniform(0, 1, (64, 6))
    want = ann(torch.as_tensor(x)).detach().numpy()
    for backend in ("torch", "numba-event"):
        np.testing.assert_allclose(_snn_mean(graph, x, 4, backend), want, rtol=1e-9, atol=1e-9)
    assert not any(isinstance(v, n.IF) and v.reset != "subtract" for v in graph.nodes.values())


def test_conv_pool_network_converts_exactly_with_one_spiking_layer():
    torch.manual_seed(1)
    ann = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), QCFS(levels=3, threshold=1.0), nn.AvgPool2d(2),
                        nn.Flatten(), nn.Linear(3 * 3 * 3, 4)).double()
    with torch.no_grad():
        ann[1].running_mean.uniform_(-0.2, 0.2)
        ann[1].running_var.uniform_(0.5, 2.0)
    ann.eval()
    graph = ann_to_snn(ann, input_shape=(2, 6, 6))
    x = np.random.default_rng(1).uniform(0, 1, (16, 2, 6, 6))
    want = ann(torch.as_tensor(x)).detach().numpy()
    for backend in ("numba-clock", "numba-event", "torch"):
        np.testing.assert_allclose(_snn_mean(graph, x, 3, backend), want, rtol=1e-9, atol=1e-9)


def test_deeper_network_approaches_the_ann_and_backends_agree():
    torch.manual_seed(2)
    ann = nn.Sequential(nn.Conv2d(1, 4, 3), QCFS(8, 1.0), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 16), QCFS(8, 1.0),
                        nn.Linear(16, 3)).double().eval()
    graph = ann_to_snn(ann, input_shape=(1, 8, 8))
    x = np.random.default_rng(2).uniform(0, 1, (8, 1, 8, 8))
    xs = np.broadcast_to(x, (64,) + x.shape).copy()
    runs = {b: sf.simulate(graph, xs, backend=b).output for b in ("numba-clock", "numba-event", "torch")}
    np.testing.assert_array_equal(runs["numba-clock"], runs["numba-event"])
    np.testing.assert_allclose(runs["torch"], runs["numba-event"], rtol=1e-9, atol=1e-9)
    want = ann(torch.as_tensor(x)).detach().numpy()
    assert np.abs(runs["torch"].mean(0) - want).max() < 0.1 * np.abs(want).max() + 0.05


def test_membranes_start_at_half_threshold_through_the_pulse_only_at_step_zero():
    ann = nn.Sequential(nn.Linear(3, 4), QCFS(4, 2.0), nn.Linear(4, 2)).double().eval()
    with torch.no_grad():
        ann[0].weight.zero_()
        ann[0].bias.zero_()
    graph = ann_to_snn(ann)
    res = sf.simulate(graph, np.zeros((5, 1, 3)), backend="numba-event", record=["if2"])
    np.testing.assert_array_equal(res.traces["if2"][:, 0], np.full((5, 4), 1.0))  # lambda / 2, every step
    assert res.spikes["if2"].sum() == 0
    plain = ann_to_snn(ann, half_threshold=False)
    assert not any(k.startswith("vinit") for k in plain.nodes)
    assert sf.simulate(plain, np.zeros((2, 1, 3)), backend="numba-event", record=["if2"]).traces["if2"].max() == 0
    assert set(graph.metadata["conversion"]["pulse_nodes"]) == {k for k in graph.nodes if k.startswith("vinit")}


def test_converted_graph_saves_and_reloads(tmp_path):
    ann = nn.Sequential(nn.Linear(3, 5), QCFS(4, 1.0), nn.Linear(5, 2)).double().eval()
    graph = ann_to_snn(ann)
    sf.save(graph, tmp_path / "c.h5")
    back = sf.load(tmp_path / "c.h5")
    x = np.random.default_rng(0).uniform(0, 1, (6, 2, 3))
    np.testing.assert_array_equal(sf.simulate(back, x).output, sf.simulate(graph, x).output)


@pytest.mark.parametrize("model, shape, word", [
    (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), None, "QCFS"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), QCFS(), nn.MaxPool2d(2)), (1, 6, 6), "not supported"),
    (nn.Sequential(nn.Linear(3, 4), QCFS(), nn.BatchNorm1d(4)), None, "BatchNorm must follow"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), QCFS()), None, "input_shape"),
    (nn.Sequential(nn.Linear(3, 4), QCFS(), nn.Linear(5, 2)), None, "layer 3"),
    (nn.Sequential(), None, "no layers"),
])
def test_unsupported_models_raise_graph_errors(model, shape, word):
    with pytest.raises(GraphError, match=word):
        ann_to_snn(model, shape)
