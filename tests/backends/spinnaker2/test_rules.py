"""Every refusal of the target names the node, the rule and the numbers."""

import numpy as np
import pytest

import spikeflow as sf
from spikeflow.backends.spinnaker2 import DesignRuleError, PlacementError, QuantisationError, RoutingError, Target
from spikeflow.backends.spinnaker2.route import Entry, build_tables, deliver, merge
from spikeflow.errors import BackendError, SpikeflowError
from spikeflow.ir import nodes as n

from . import graphs as G


def _lif(k, thr=1.0):
    return n.LIF(tau=np.full(k, 0.01), v_threshold=np.full(k, thr), r=np.full(k, 10.0))


def _chain(*layers, shape=(4,)):
    return sf.Graph.sequential(n.Input(shape=shape), *layers, dt=1e-3)


def _export(g, tmp_path, **kw):
    return sf.export(g, target="spinnaker2", path=tmp_path / "out", **kw)


def test_unknown_node_type(tmp_path):
    g = _chain(n.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)), n.Threshold(threshold=np.ones(3)), n.Affine(weight=np.ones((3, 3)), bias=np.zeros(3)), _lif(3))
    with pytest.raises(DesignRuleError, match=r"node 'threshold2' of type Threshold: not a SpiNNaker 2 node type"):
        _export(g, tmp_path)


def test_two_weight_layers_in_a_row(tmp_path):
    g = _chain(n.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)), n.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)), _lif(2))
    with pytest.raises(DesignRuleError, match=r"node 'affine2' follows weight layer 'affine1'.*two weight layers in a row"):
        _export(g, tmp_path)


def test_population_without_weight_layer(tmp_path):
    g = _chain(n.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)), _lif(3), _lif(3))
    with pytest.raises(DesignRuleError, match=r"node 'lif3': population 'lif2' feeds it directly"):
        _export(g, tmp_path)


def test_cubalif_after_conv(tmp_path):
    shape = (2, 3, 3)
    g = _chain(n.Conv2d(weight=np.ones((2, 2, 1, 1)), bias=np.zeros(2)),
               n.CubaLIF(tau_syn=np.full(shape, 0.01), tau_mem=np.full(shape, 0.01), v_threshold=np.ones(shape)), shape=shape)
    with pytest.raises(DesignRuleError, match=r"node 'cubalif2': CubaLIF after convolution 'conv2d1'"):
        _export(g, tmp_path)


def test_conv_with_delay(tmp_path):
    shape = (2, 3, 3)
    g = _chain(n.Conv2d(weight=np.ones((2, 2, 1, 1)), bias=np.zeros(2)), n.LIF(tau=np.full(shape, 0.01), v_threshold=np.ones(shape)),
               n.Delay(delay=np.full(shape, 2e-3)), n.Conv2d(weight=np.ones((2, 2, 1, 1)), bias=np.zeros(2)),
               n.LIF(tau=np.full(shape, 0.01), v_threshold=np.ones(shape)), shape=shape)
    with pytest.raises(DesignRuleError, match=r"node 'conv2d4': convolution after Delay 'delay3'"):
        _export(g, tmp_path)


def test_sumpool_flatten_must_feed_weights(tmp_path):
    shape = (2, 4, 4)
    g = _chain(n.Conv2d(weight=np.ones((2, 2, 1, 1)), bias=np.zeros(2)), n.LIF(tau=np.full(shape, 0.01), v_threshold=np.ones(shape)),
               n.SumPool2d(kernel_size=(2, 2), stride=(2, 2)), n.Flatten(), n.LI(tau=np.full(8, 0.01)), shape=shape)
    with pytest.raises(DesignRuleError, match=r"node 'sumpool2d3': SumPool2d reaches population 'li5' without a weight layer after it"):
        _export(g, tmp_path)


def test_overlapping_pool(tmp_path):
    shape = (1, 4, 4)
    g = _chain(n.SumPool2d(kernel_size=(2, 2), stride=(1, 1)), n.Flatten(), n.Affine(weight=np.ones((2, 9)), bias=np.zeros(2)), _lif(2),
               shape=shape)
    with pytest.raises(DesignRuleError, match=r"kernel \(2, 2\) and stride \(1, 1\).*non-overlapping"):
        _export(g, tmp_path)


def test_delay_too_long(tmp_path):
    g = _chain(n.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)), _lif(3), n.Delay(delay=np.full(3, 12e-3)),
               n.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)), _lif(2))
    with pytest.raises(DesignRuleError, match=r"projection 'affine4' \('lif2' -> 'lif5'\): delay of 12 ticks; a synapse holds at most 7"):
        _export(g, tmp_path)


def test_output_must_be_a_population(tmp_path):
    g = _chain(n.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)), _lif(3), n.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)))
    with pytest.raises(DesignRuleError, match=r"does not lead to a neuron population|output must be a neuron population"):
        _export(g, tmp_path)


def test_fan_in_too_large_for_one_pe(tmp_path):
    big = 120_000
    g = _chain(n.Affine(weight=np.full((3, big), 0.01), bias=np.zeros(3)), _lif(3), shape=(big,))
    with pytest.raises(PlacementError, match=r"layer 'lif2': one neuron needs 1\d\d\.\d KB \(synapses .* a PE has 96 KB"):
        _export(g, tmp_path, chip={"chips": 4})


def test_network_too_large_for_the_chips(tmp_path):
    g = _chain(n.Affine(weight=np.full((2000, 4), 0.5), bias=np.zeros(2000)), _lif(2000))
    with pytest.raises(PlacementError, match=r"network needs 9 PEs but 1 chip\(s\) x 4 give 4: layer 'lif2' alone needs 8 PEs .*'chips': 3"):
        _export(g, tmp_path, chip={"app_pes_per_chip": 4})
    rep = _export(g, tmp_path, chip={"app_pes_per_chip": 4, "chips": 3})
    assert rep.pes == 9 and rep.chips == 3


def test_routing_table_limit(tmp_path):
    g = _chain(n.Affine(weight=np.full((40, 4), 0.5), bias=np.zeros(40)), _lif(40), n.Affine(weight=np.ones((2, 40)), bias=np.zeros(2)),
               n.LI(tau=np.full(2, 0.01)))
    with pytest.raises(RoutingError, match=r"chip 0: routing table needs \d+ entries after merging .* the router holds 2"):
        _export(g, tmp_path, chip={"router_entries": 2, "max_atoms_per_core": 1})


def test_silent_layer_refused_or_warned(tmp_path):
    rng = np.random.default_rng(0)
    w = np.full((3, 4), 1e-3)
    w[0, 0] = -1.0  # one large inhibitory weight sets the range: the small ones round to zero
    g = _chain(n.Affine(weight=w, bias=np.zeros(3)), n.LIF(tau=np.full(3, 0.01), v_threshold=np.full(3, 0.005), r=np.full(3, 10.0)))
    x = np.zeros((10, 2, 4))
    x[:, :, :] = 1.0  # float: neurons 1 and 2 fire from the small weights; quantised: nothing fires
    with pytest.raises(QuantisationError, match=r"layer 'lif2' goes silent after quantisation: \d+ spikes in float, 0 quantised"):
        _export(g, tmp_path, samples=x)
    with pytest.warns(UserWarning, match="goes silent"):
        rep = _export(g, tmp_path, samples=x, silent="warn")
    assert rep.spike_counts["lif2"]["quantised"] == 0 < rep.spike_counts["lif2"]["float"]
    del rng


def test_bad_options_and_target_fields(tmp_path):
    g = G.mlp(np.random.default_rng(0))
    with pytest.raises(BackendError, match="unknown field 'cores'"):
        _export(g, tmp_path, chip={"cores": 3})
    with pytest.raises(BackendError, match="field 'chips': expected a positive number"):
        _export(g, tmp_path, chip={"chips": 0})
    with pytest.raises(QuantisationError, match="percentile"):
        _export(g, tmp_path, percentile=0)
    with pytest.raises(SpikeflowError, match="silent"):
        _export(g, tmp_path, samples=np.ones((3, 1, 12)), silent="maybe")
    assert Target(chips=2).pes == 296


def test_merge_keeps_every_route():
    rng = np.random.default_rng(1)
    entries = []
    for k in rng.choice(64, 40, replace=False):
        route = int(rng.integers(0, 3))
        entries.append(Entry(int(k) << 4, 0xFFFFFFF0, (route,) if route else (), (1,) if route != 1 else ()))
    merged = merge(entries)
    assert len(merged) < len(entries)
    for e in entries:  # each key still finds one entry, with the same route
        hits = [m for m in merged if (e.key | 5) & m.mask == m.key]
        assert len(hits) == 1 and (hits[0].links, hits[0].pes) == (e.links, e.pes)
    for key in range(0, 64 << 4, 16):  # keys nobody sent are not captured
        if key not in {e.key for e in entries}:
            assert not [m for m in merged if key & m.mask == m.key]


def test_tables_deliver_across_chips():
    sources = [(0 << 4, 0xFFFFFFF0, 0, [(8, 2), (4, 0)]), (1 << 4, 0xFFFFFFF0, 8, [(0, 1)])]
    tables = build_tables(sources, chips=9)
    assert deliver(tables, 0 << 4 | 3, 0, 9) == {(8, 2), (4, 0)}
    assert deliver(tables, 1 << 4, 8, 9) == {(0, 1)}
    assert deliver(tables, 5 << 4, 0, 9) == set()
