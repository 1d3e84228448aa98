"""Graphs made elsewhere export and run: an snnTorch network through NIR, and a NIR file."""

import numpy as np
import snntorch as snn
import torch

import spikeflow as sf


def _run_both(prog, x, record):
    got = prog.run(x, record=record)
    want = sf.simulate(prog.graph, x, backend="numba-event", precision=prog.precision, record=record)
    for k in record:
        np.testing.assert_array_equal(got.spikes[k], want.spikes[k])
    np.testing.assert_array_equal(got.output, want.output)
    return got


def test_snntorch_network_through_nir_exports_and_runs(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(16, 24), snn.Leaky(beta=0.9, threshold=0.5, init_hidden=True),
        torch.nn.Linear(24, 24), snn.Synaptic(alpha=0.8, beta=0.9, threshold=0.5, init_hidden=True),
        torch.nn.Linear(24, 6), snn.Leaky(beta=0.9, threshold=0.5, init_hidden=True),
    )
    with torch.no_grad():
        for layer in (net[0], net[2], net[4]):
            layer.weight.mul_(2.0)
    x = (torch.rand(30, 3, 16, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    graph = sf.from_snntorch(net, x[0])
    sf.to_nir(graph, tmp_path / "net.nir")
    graph = sf.from_nir(tmp_path / "net.nir")  # the file another tool would hand over
    kinds = {type(v).__name__ for v in graph.nodes.values()}
    assert {"LIF", "CubaLIF", "Affine"} <= kinds
    report = sf.export(graph, target="spinnaker2", path=tmp_path / "out", samples=x.numpy().astype(np.float64))
    prog = sf.load_export(tmp_path / "out")
    spiking = [k for k, p in prog.pops.items() if p.kind != "input"]
    got = _run_both(prog, x.numpy().astype(np.float64), spiking)
    ref = sf.simulate(graph, x.numpy().astype(np.float64), backend="numba-event", record=spiking)
    for k in spiking:  # quantisation moves few spikes: counts agree within 20% per layer
        assert got.spikes[k].sum() > 0
        assert abs(got.spikes[k].sum() - ref.spikes[k].sum()) <= 0.2 * ref.spikes[k].sum(), k
    assert report.pes == 4 and {q["bits"] for q in report.layers} == {5}


def test_snntorch_default_late_reset_becomes_one_to_one_projections(tmp_path):
    """snnTorch's default Leaky subtracts one step late; the import adds Scale loops (and, for a
    Synaptic, a delayed tail) that the target maps to one-to-one projections."""
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Linear(10, 12), snn.Synaptic(alpha=0.7, beta=0.85, threshold=0.4, init_hidden=True),
                              torch.nn.Linear(12, 4), snn.Leaky(beta=0.85, threshold=0.4, init_hidden=True))
    x = (torch.rand(25, 2, 10, generator=torch.Generator().manual_seed(3)) < 0.4).float()
    graph = sf.from_snntorch(net, x[0])
    assert any(type(v).__name__ == "Scale" for v in graph.nodes.values())
    sf.export(graph, target="spinnaker2", path=tmp_path / "out")
    prog = sf.load_export(tmp_path / "out")
    spiking = [k for k, p in prog.pops.items() if p.kind != "input"]
    got = _run_both(prog, x.numpy().astype(np.float64), spiking)
    import json

    types = {p["type"] for p in json.loads((tmp_path / "out" / "network.json").read_text())["projections"]}
    assert types == {"dense", "one_to_one"} and all(got.spikes[k].sum() > 0 for k in spiking)
