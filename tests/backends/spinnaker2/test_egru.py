"""EGRU layers export as FP32 value-event populations and run event for event as numba float32."""

import numpy as np
import pytest
import torch

import spikeflow as sf
from spikeflow.backends.spinnaker2 import DesignRuleError
from spikeflow.ir import nodes as n
from spikeflow.ir.egru import EGRU
from spikeflow.torch.egru import EGRU as TorchEGRU
from spikeflow.train.pruning import MagnitudePruner


def _layer(rng, n_in, hidden, density_ih=0.3, density_hh=0.05, threshold=0.1):
    def pruned(shape, density, std):
        return rng.normal(0, std, shape) * (rng.random(shape) < density)

    return EGRU(weight_ih=pruned((3 * hidden, n_in), density_ih, 0.6), weight_hh=pruned((3 * hidden, hidden), density_hh, 0.4),
                bias_ih=rng.normal(0, 0.1, 3 * hidden), bias_hh=rng.normal(0, 0.1, 3 * hidden), threshold=np.full(hidden, threshold))


def _graph(*layers):
    nodes = {"input": n.Input(shape=(layers[0].input_size,))}
    names = ["input"]
    for i, layer in enumerate(layers):
        nodes[f"egru{i}"] = layer
        names.append(f"egru{i}")
    nodes["output"] = n.Output(shape=(layers[-1].hidden_size,))
    names.append("output")
    return sf.Graph(nodes, list(zip(names, names[1:])), dt=1e-3).validate()


@pytest.mark.parametrize("chip", [None, {"max_atoms_per_core": 7, "app_pes_per_chip": 3, "chips": 9}], ids=["one-chip", "many-chips"])
def test_stacked_egru_events_equal_numba_float32(chip, tmp_path):
    rng = np.random.default_rng(0)
    graph = _graph(_layer(rng, 12, 32), _layer(rng, 32, 24, density_ih=0.2))
    x = rng.normal(0, 1, (40, 3, 12)) * (rng.random((40, 3, 12)) < 0.7)
    sf.export(graph, target="spinnaker2", path=tmp_path / "out", chip=chip)
    prog = sf.load_export(tmp_path / "out")
    assert prog.precision == "float32"
    got = prog.run(x, record=["egru0", "egru1"])
    want = sf.simulate(graph, x, backend="numba-event", precision="float32", record=["egru0", "egru1"])
    for k in ("egru0", "egru1"):
        np.testing.assert_array_equal(got.traces[k], want.traces[k])
        assert 0.05 < np.mean(got.traces[k] != 0) < 0.95  # value events, neither silent nor saturated
    np.testing.assert_array_equal(got.output, want.output)
    assert got.stats["packets"] > 0


@pytest.mark.slow
def test_language_model_pruned_to_95_percent_fits_and_runs(tmp_path):
    """The example's EGRU language model (embedding 16, 1024 units), pruned to 95 %: every PE's
    data fits 96 KB, and the export reproduces numba's float32 events."""
    torch.manual_seed(0)
    rnn = TorchEGRU(16, 1024)
    MagnitudePruner(rnn, sparsity=0.95).step()
    (node,) = rnn.to_nodes()
    assert np.mean(node.weight_hh == 0) >= 0.949
    graph = _graph(node)
    report = sf.export(graph, target="spinnaker2", path=tmp_path / "lm", picture=False)
    per_pe = [sum(pe["bytes"].values()) for pe in report.sram if pe["model"] == "egru"]
    assert max(per_pe) <= 96 * 1024 and report.pes == len(per_pe) + 1
    prog = sf.load_export(tmp_path / "lm")
    x = np.random.default_rng(1).normal(0, 1, (30, 1, 16))
    got = prog.run(x)
    want = sf.simulate(graph, x, backend="numba-event", precision="float32")
    np.testing.assert_array_equal(got.output, want.output)


def test_egru_refusals(tmp_path):
    rng = np.random.default_rng(2)
    layer = _layer(rng, 4, 6)
    mixed = sf.Graph({"input": n.Input(shape=(4,)), "egru": layer, "fc": n.Affine(weight=np.ones((2, 6)), bias=np.zeros(2)),
                      "lif": n.LIF(tau=np.full(2, 0.01), v_threshold=np.ones(2)), "output": n.Output(shape=(2,))},
                     [("input", "egru"), ("egru", "fc"), ("fc", "lif"), ("lif", "output")], dt=1e-3)
    with pytest.raises(DesignRuleError, match=r"node 'fc' of type Affine: an EGRU export \(FP32\) holds only Input, EGRU and Output"):
        sf.export(mixed, target="spinnaker2", path=tmp_path / "o")
    from dataclasses import replace

    traced = _graph(replace(layer, trace_decay=np.asarray(0.5)))
    with pytest.raises(DesignRuleError, match="trace_decay"):
        sf.export(traced, target="spinnaker2", path=tmp_path / "o")
    big = _graph(_layer(rng, 40_000, 4, density_ih=1.0))
    with pytest.raises(sf.SpikeflowError, match=r"layer 'egru0': one unit needs \d+\.\d KB, a PE has 96 KB"):
        sf.export(big, target="spinnaker2", path=tmp_path / "o", chip={"chips": 2})
