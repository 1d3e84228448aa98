"""Quantisation-aware fine-tuning uses the export's own quantiser, with straight-through gradients."""

import json

import numpy as np
import torch

import spikeflow as sf
from spikeflow.backends.spinnaker2.qat import fake_quantise
from spikeflow.train.qat import finetune

from . import graphs as G


def test_fake_quantised_forward_is_the_export_and_gradients_pass(tmp_path):
    rng = np.random.default_rng(0)
    graph = G.mlp(rng)
    net = sf.to_torch(graph, dtype=torch.float64)
    assert fake_quantise(net, graph) == ["affine1", "affine3"]
    sf.export(graph, target="spinnaker2", path=tmp_path / "o")
    prog = sf.load_export(tmp_path / "o")
    layers = {q["name"]: q for q in prog.report.layers}
    for name in ("affine1", "affine3"):
        forward = net.layers[name].weight.detach().numpy()
        exported = np.asarray(prog.graph.nodes[name].weight) / layers[name]["scale"]  # the float network it stands for
        np.testing.assert_allclose(forward, exported, rtol=1e-12, atol=1e-15)
    x = torch.from_numpy(G.spikes(rng, 10, 4, (12,)))
    net(x).sum().backward()
    grad = net.layers["affine1"].parametrizations.weight.original.grad
    assert grad is not None and torch.count_nonzero(grad) > 0  # straight through the rounding


def test_finetune_returns_weights_that_export_exactly(tmp_path):
    rng = np.random.default_rng(1)
    graph = G.mlp(rng, n_in=12, hidden=16, out=3)
    x = G.spikes(rng, 8, 48, (12,)).transpose(1, 0, 2).astype(np.float32)  # [N, T, ...]
    y = rng.integers(0, 3, 48)
    tuned, trainer = finetune(graph, (x, y), epochs=1, lr=1e-2, batch_size=16, progress=False)
    assert len(trainer.history["loss"]) == 1
    assert not np.allclose(tuned.nodes["affine1"].weight, graph.nodes["affine1"].weight)
    sf.export(tuned, target="spinnaker2", path=tmp_path / "o")
    prog = sf.load_export(tmp_path / "o")
    net_json = json.loads((tmp_path / "o" / "network.json").read_text())
    for proj in net_json["projections"]:
        scale = {q["name"]: q["scale"] for q in prog.report.layers}[proj["layer"]]
        # the tuned float weights already sit on the export's grid: quantising them changes nothing
        tuned_w = np.asarray(tuned.nodes[proj["layer"]].weight, np.float64) * scale
        np.testing.assert_allclose(np.asarray(prog.graph.nodes[proj["layer"]].weight), tuned_w, rtol=0, atol=2.0 ** -proj["weight_frac"] * 1e-3)
