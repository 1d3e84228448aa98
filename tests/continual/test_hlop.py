"""HLOP subspace neurons and orthogonal projection: reference, convergence, projection, errors."""

import numpy as np
import pytest
import torch
from torch import nn

import spikeflow as sf
from spikeflow.errors import DataError, GraphError, SpikeflowError
from spikeflow.continual import ContinualTrainer, ExactProjection, Task
from spikeflow.continual.hlop import (
    HLOP, Subspace, activity_vectors, layer_activity, orthonormal_rows, principal_cosines, record_inputs,
    resolve_layers, top_subspace,
)
from spikeflow.train.trainer import RateEncoder
from tests.reference.oja import oja_update


def mlp_graph(n_in=64, hidden=48, n_out=10, seed=0, gain=1.0):
    rng = np.random.default_rng(seed)
    b1, b2 = gain / np.sqrt(n_in), 1 / np.sqrt(hidden)
    return sf.Graph.sequential(
        sf.ir.Input(shape=(n_in,)),
        sf.ir.Affine(weight=rng.uniform(-b1, b1, (hidden, n_in)), bias=rng.uniform(-b1, b1, hidden)),
        sf.ir.LIF(tau=np.full(hidden, 10e-3), v_threshold=np.ones(hidden), r=np.full(hidden, 10.0)),
        sf.ir.Affine(weight=rng.uniform(-b2, b2, (n_out, hidden)), bias=rng.uniform(-b2, b2, n_out)),
        sf.ir.LI(tau=np.full(n_out, 20e-3), r=np.full(n_out, 20.0)),
        dt=1e-3,
    )


def low_rank(n=1200, dim=24, rank=4, noise=0.05, seed=0):
    """Samples near a rank-``rank`` subspace with well separated strengths."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(dim, rank, generator=g, dtype=torch.float64))[0].T
    scales = torch.tensor([3.0, 2.4, 1.9, 1.5, 1.2, 1.0][:rank], dtype=torch.float64)
    z = torch.randn(n, rank, generator=g, dtype=torch.float64) * scales
    return z @ basis + noise * torch.randn(n, dim, generator=g, dtype=torch.float64), basis


def learn(sub, x, epochs, batch=50):
    for _ in range(epochs):
        for chunk in x.split(batch):
            sub.update(chunk)


# ------------------------------------------------------------------------------ Oja update


@pytest.mark.parametrize("levels", [None, 8])
def test_oja_update_matches_loop_reference(levels):
    g = torch.Generator().manual_seed(1)
    sub = Subspace(7, lr=0.7, iterations=3, levels=levels)
    sub.add(2, g)
    sub.merge()
    sub.add(3, g)
    x = torch.rand(6, 7, generator=g, dtype=torch.float64)
    expected = oja_update(sub.frozen.numpy(), sub.new.numpy(), x.numpy(), 0.7, 3, levels)
    sub.update(x)
    np.testing.assert_allclose(sub.new.numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("levels", [None, 32])
def test_hebbian_subspace_converges_to_pca_subspace_on_low_rank_data(levels):
    x, basis = low_rank()
    sub = Subspace(x.shape[1], lr=0.5, iterations=5, levels=levels)
    sub.add(4, torch.Generator().manual_seed(0))
    before = principal_cosines(sub.new, basis).min()
    learn(sub, x, epochs=3)
    sub.merge()
    cos = principal_cosines(sub.basis(), top_subspace(x, 4))
    assert before < 0.9
    assert cos.min() >= 0.9, cos
    # Oja's rule also makes the neurons' weights orthonormal by itself (before the merge's QR)
    np.testing.assert_allclose(sub.basis() @ sub.basis().T, np.eye(4), atol=1e-10)


def test_new_neurons_learn_the_residual_subspace_while_old_ones_stay_frozen():
    x, _ = low_rank(dim=24, rank=6, seed=3)
    sub = Subspace(24, lr=0.5, iterations=5)
    g = torch.Generator().manual_seed(0)
    sub.add(3, g)
    learn(sub, x, epochs=3)
    sub.merge()
    frozen = sub.basis().clone()
    sub.add(3, g)
    learn(sub, x, epochs=4)
    assert torch.equal(sub.frozen, frozen)  # older neurons do not learn
    cos = principal_cosines(sub.new, top_subspace(x, 3, against=frozen))
    assert cos.min() >= 0.9, cos
    sub.merge()
    assert sub.size == 6
    np.testing.assert_allclose(sub.basis() @ sub.basis().T, np.eye(6), atol=1e-10)
    assert principal_cosines(sub.basis(), top_subspace(x, 6)).min() >= 0.9


def test_hebbian_subspace_converges_on_real_layer_activities():
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    net = sf.to_torch(mlp_graph(gain=6.0), dtype=torch.float32)
    digits = torch.as_tensor(load_digits().data[:600] / 16.0, dtype=torch.float32)
    x = RateEncoder(8)(digits, torch.Generator().manual_seed(0))
    layers = resolve_layers(net, None)
    with torch.no_grad():
        acts = layer_activity(net, layers, x)
    hidden = acts["affine3"].double()
    assert hidden.shape == (600, 48) and 0.02 < hidden.mean() < 0.6  # real spike rates of the LIF layer
    for name, k in (("affine1", 5), ("affine3", 5)):
        sub = Subspace(acts[name].shape[1], lr=0.8, iterations=10)
        sub.add(k, torch.Generator().manual_seed(0))
        learn(sub, acts[name], epochs=8, batch=60)
        sub.merge()
        cos = principal_cosines(sub.basis(), top_subspace(acts[name], k))
        assert cos.min() >= 0.9, (name, cos)


# ----------------------------------------------------------------------- layers and inputs


def test_graph_module_layer_inputs_are_the_source_outputs():
    net = sf.to_torch(mlp_graph(gain=6.0), dtype=torch.float32)
    x = (torch.rand(5, 3, 64, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    layers = resolve_layers(net, None)
    assert list(layers) == ["affine1", "affine3"]
    with torch.no_grad():
        seqs = record_inputs(net, layers, x)
        _, rec = net.run(x, record=("lif2",))
    assert torch.equal(seqs["affine1"], x)
    assert torch.equal(seqs["affine3"], rec["lif2"])
    assert torch.allclose(activity_vectors(layers["affine1"], x), x.mean(0))
    assert activity_vectors(layers["affine1"], x, "step").shape == (15, 64)
    trace = activity_vectors(layers["affine1"], x, "trace").reshape(5, 3, 64)
    assert torch.allclose(trace[1], 0.9 * 0.1 * x[0] + 0.1 * x[1])


class ConvNet(nn.Module):
    """Conv2d -> ReLU rate unit -> Linear, called once per time step (the hook path)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, stride=2)
        self.fc = nn.Linear(3 * 3 * 3, 4)

    def forward(self, x):
        return torch.stack([self.fc(torch.relu(self.conv(x_t)).flatten(1)) for x_t in x])


def test_conv_activity_vectors_are_unfolded_input_patches():
    torch.manual_seed(0)
    net = ConvNet()
    x = torch.rand(4, 5, 2, 6, 6)
    seqs = record_inputs(net, resolve_layers(net, None), x)
    assert torch.equal(seqs["conv"], x)
    patches = activity_vectors(net.conv, seqs["conv"])
    assert patches.shape == (5 * 9, 2 * 3 * 3)
    rate = x.mean(0)
    # patch of sample 1 at output position (row 1, col 2): rows 1..3, cols 3..5 of the padded input
    padded = nn.functional.pad(rate, (1, 1, 1, 1))
    expected = padded[1, :, 2:5, 4:7].reshape(-1)
    assert torch.allclose(patches[1 * 9 + 1 * 3 + 2], expected)


# ------------------------------------------------------------------------------ projection


def tiny_tasks(n_tasks=2, n=96, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(n_tasks):
        basis = torch.linalg.qr(torch.randn(dim, 3, generator=g))[0].T
        x = (torch.rand(n, 3, generator=g) @ basis).abs().clamp(max=1.0)
        y = torch.randint(0, 3, (n,), generator=g)
        tasks.append(Task(f"t{t}", (x.numpy(), y.numpy()), (x[:32].numpy(), y[:32].numpy())))
    return tasks


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_projected_training_leaves_old_responses_and_biases_unchanged(optimizer):
    torch.manual_seed(0)
    net = sf.to_torch(mlp_graph(n_in=16, hidden=24, n_out=3, gain=4.0), dtype=torch.float64)
    strategy = ExactProjection({"affine1": 4, "affine3": 10})
    trainer = ContinualTrainer(net, strategy, optimizer=optimizer, lr=0.05, epochs=2, batch_size=16,
                               encoder=RateEncoder(6), progress=False)
    tasks = tiny_tasks()
    trainer.fit(tasks, stop_after=1)
    w = {k: layer.weight.detach().clone() for k, layer in strategy.layers.items()}
    biases = {k: layer.bias.detach().clone() for k, layer in strategy.layers.items()}
    trainer.fit(tasks)
    for name, layer in strategy.layers.items():
        basis = strategy.subspaces[name].frozen[: strategy._k(name)]  # task 1's directions
        delta = layer.weight.detach() - w[name]
        assert delta.abs().max() > 1e-4  # task 2 did train this layer
        assert (delta @ basis.T).abs().max() < 1e-10  # ...only orthogonally to task 1's subspace
        assert torch.equal(layer.bias, biases[name])


def test_gradient_projection_of_a_conv_layer():
    torch.manual_seed(0)
    net = ConvNet()
    strategy = HLOP(subspace={"conv": 5, "fc": 4})
    strategy.attach(net, seed=0)
    for sub in strategy.subspaces.values():
        sub.add(sub.n // 3, torch.Generator().manual_seed(1))
        sub.merge()
    strategy.task = 1
    net(torch.rand(3, 2, 2, 6, 6)).sum().backward()
    strategy.before_step()
    basis = strategy.subspaces["conv"].basis().float()
    assert (net.conv.weight.grad.view(3, -1) @ basis.T).abs().max() < 1e-5
    assert net.conv.bias.grad is None and net.fc.bias.grad is None  # frozen after the first task


def test_orthonormal_rows_drops_dependent_directions():
    a = torch.eye(4, dtype=torch.float64)[:2]
    h = torch.tensor([[1.0, 1.0, 0, 0], [0, 0, 1.0, 0]], dtype=torch.float64)
    q = orthonormal_rows(h, a)
    assert q.shape == (1, 4)
    assert torch.allclose(q.abs(), torch.tensor([[0, 0, 1.0, 0]], dtype=torch.float64))


# ----------------------------------------------------------------------------------- errors


def test_protecting_an_unsupported_layer_is_a_clear_error():
    net = sf.to_torch(mlp_graph(), dtype=torch.float64)
    with pytest.raises(GraphError, match="layer 'lif2': type LIF cannot be protected"):
        HLOP(subspace=4, layers=["lif2"]).attach(net, 0)
    conv1d = nn.Sequential(nn.Conv1d(2, 2, 3))
    with pytest.raises(SpikeflowError, match="no layer to protect"):
        HLOP(subspace=2).attach(conv1d, 0)
    with pytest.raises(GraphError, match="Conv1d cannot be protected"):
        HLOP(subspace=2, layers=["0"]).attach(conv1d, 0)
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(GraphError, match="groups=2"):
        HLOP(subspace=2).attach(grouped, 0)
    with pytest.raises(DataError, match="no such layer"):
        HLOP(subspace=2, layers=["nope"]).attach(net, 0)


def test_subspace_larger_than_the_input_is_a_clear_error():
    net = sf.to_torch(mlp_graph(n_in=16, hidden=24, n_out=3), dtype=torch.float64)
    with pytest.raises(DataError, match="layer 'affine1': a subspace of 20 neurons per task does not fit its input size 16"):
        HLOP(subspace=20).attach(net, 0)
    strategy = HLOP(subspace={"affine1": 10, "affine3": 4})
    strategy.attach(net, 0)
    sub = strategy.subspaces["affine1"]
    sub.add(10, torch.Generator().manual_seed(0))
    sub.merge()
    with pytest.raises(DataError, match="a subspace of 20 neurons .* larger than the layer's input size 16"):
        sub.add(10, torch.Generator().manual_seed(0))
    with pytest.raises(DataError, match="'other', which is not a protected layer"):
        HLOP(subspace={"affine1": 2, "affine3": 2, "other": 1}).attach(net, 0)


def test_bad_options_are_clear_errors():
    with pytest.raises(DataError, match="learning rate"):
        HLOP(lr=5.0)
    with pytest.raises(DataError, match="iterations"):
        HLOP(iterations=0)
    with pytest.raises(DataError, match="activity"):
        HLOP(activity="spikes")
    with pytest.raises(DataError, match="hebbian_epochs"):
        HLOP(hebbian_epochs=0)
    with pytest.raises(DataError, match="top_subspace"):
        top_subspace(torch.zeros(5, 3), 4)
