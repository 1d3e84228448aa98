"""Converted networks (ann_to_snn) on SpiNNaker 2: the half-threshold pulse becomes each IF
population's initial membrane (no PEs, routes or synapses), the executor equals numba fixed point on
``prog.graph`` spike for spike, and every pulse the target cannot fold is refused by name."""

import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import spikeflow as sf
from spikeflow.backends.spinnaker2 import DesignRuleError
from spikeflow.convert import QCFS, ann_to_snn
from spikeflow.errors import FormatError
from spikeflow.ir import nodes as n
from tests.reference import spinnaker2 as reference

from .test_folder import _rehash


def _mlp(seed: int, half_threshold: bool = True):
    torch.manual_seed(seed)
    ann = nn.Sequential(nn.Linear(6, 12), QCFS(4, 2.0), nn.Linear(12, 8), nn.BatchNorm1d(8), QCFS(4, 1.5), nn.Linear(8, 3)).eval()
    with torch.no_grad():
        ann[3].running_mean.uniform_(-0.2, 0.2)
        ann[4].threshold.fill_(1.0 + seed / 3)
    return ann_to_snn(ann, half_threshold=half_threshold), (6,)


def _cnn(seed: int, side: int = 8, pool: int = 2, pool2: int = 2):
    """Conv -> QCFS -> AvgPool -> Conv -> BN -> QCFS -> AvgPool -> Flatten -> Linear -> QCFS -> Linear."""
    torch.manual_seed(seed)
    last = side // pool // pool2
    ann = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), QCFS(4, 1.0), nn.AvgPool2d(pool), nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6),
                        QCFS(4, 1.2), nn.AvgPool2d(pool2), nn.Flatten(), nn.Linear(6 * last * last, 10), QCFS(4, 1.0), nn.Linear(10, 3)).eval()
    return ann_to_snn(ann, (2, side, side)), (2, side, side)


CASES = {"mlp-0": lambda: _mlp(0), "mlp-1": lambda: _mlp(1), "mlp-2": lambda: _mlp(2), "cnn-0": lambda: _cnn(0), "cnn-1": lambda: _cnn(1),
         "cnn-pool3": lambda: _cnn(2, side=6, pool=3)}


def _export(graph, shape, path, seed=0, chip=None):
    x = np.random.default_rng(seed).random((12, 3, *shape)) * 2
    sf.export(graph, target="spinnaker2", path=path, samples=x, silent="warn", chip=chip)
    return sf.load_export(path), x


@pytest.mark.parametrize("case", sorted(CASES))
def test_executor_equals_numba_fixed_point_on_converted_networks(case, tmp_path):
    graph, shape = CASES[case]()
    chip = {"max_atoms_per_core": 7, "app_pes_per_chip": 4, "chips": 9} if case == "mlp-1" else None
    prog, x = _export(graph, shape, tmp_path / "out", seed=sorted(CASES).index(case), chip=chip)
    ifs = [k for k in prog.pops if isinstance(graph.nodes.get(k), n.IF)]
    got = prog.run(x, record=ifs)
    want = sf.simulate(prog.graph, x, backend="numba-event", precision=prog.precision, record=ifs)
    for k in got.outputs:
        np.testing.assert_array_equal(got.outputs[k], want.outputs[k])
    for k in ifs:
        np.testing.assert_array_equal(got.spikes[k], want.spikes[k])
        np.testing.assert_array_equal(got.traces[k], want.traces[k])
    assert all(got.spikes[k].sum() > 0 for k in ifs)  # not a comparison of silent layers
    out, spikes = reference.run(tmp_path / "out", x)  # the slow, plain-integer reference agrees too
    for k in out:
        np.testing.assert_array_equal(got.outputs[k].reshape(out[k].shape), out[k])
    for k in got.spikes:
        np.testing.assert_array_equal(got.spikes[k].reshape(spikes[k].shape), spikes[k])
    # the float graph: the export is its quantisation (same rate code on most samples, not bit-equal)
    ref = sf.simulate(graph, x, backend="numba-event")
    assert np.mean(ref.output.sum(0).argmax(-1) == got.output.sum(0).argmax(-1)) >= 2 / 3


def test_pulse_is_an_initial_membrane_not_pes_routes_or_synapses(tmp_path):
    graph, shape = _mlp(0)
    plain, _ = _mlp(0, half_threshold=False)
    prog, x = _export(graph, shape, tmp_path / "pulse")
    base, _ = _export(plain, shape, tmp_path / "plain")
    net = json.loads((tmp_path / "pulse" / "network.json").read_text())
    assert [p["name"] for p in net["populations"]] == ["input", "if2", "if5", "affine6_readout"]
    assert not any(p["layer"].startswith("vinit") for p in net["projections"])
    assert prog.report.pes == base.report.pes and prog.report.routing_after == base.report.routing_after
    # the initial membrane is the simulator's own step-0 pulse, scaled like the layer (lambda/2 on the weight grid)
    first = sf.simulate(prog.graph, np.zeros((1, 1, *shape)), backend="numba-event", precision=prog.precision,
                        record=["vinit_if2", "vinit_if5"])
    for pop, entry in zip(("if2", "if5"), net["populations"][1:3]):
        with h5py.File(tmp_path / "pulse" / f"pe_{list(prog.pops).index(pop):04d}.h5") as f:
            v0 = f["neurons/v_init"][()]
            memory = json.loads(f.attrs["memory"])
        np.testing.assert_array_equal(v0, first.traces[f"vinit_{pop}"][0, 0] * 2**16)
        assert entry["params"]["v_init"] == pytest.approx(entry["params"]["threshold"] / 2, rel=2**-7)
        with h5py.File(tmp_path / "plain" / f"pe_{list(base.pops).index(pop):04d}.h5") as f:
            assert "v_init" not in f["neurons"]
            assert memory["neurons"] - json.loads(f.attrs["memory"])["neurons"] == 4  # one word: uniform parameters
    # the memory of the pulse graph's IF PE, as the report lists it
    assert prog.report.sram[1]["bytes"]["neurons"] == base.report.sram[1]["bytes"]["neurons"] + 4


def test_rounding_edge_the_initial_membrane_is_the_simulators_double_rounding(tmp_path):
    """A pulse weight of 6.47 state steps: numba rounds it to its 8-bit weight grid first (104 / 2**20)
    and then the product back to the state grid (half up: 7), where rounding the value straight to the
    state grid gives 6. The folded initial membrane holds the simulator's 7, so the executor equals it."""
    graph, shape = _mlp(0)
    w = 6.47 * 2.0**-16
    graph.nodes["vinit_if2"] = n.Linear(weight=np.full((12, 1), w))
    x = np.random.default_rng(3).random((12, 3, *shape)) * 2
    sf.export(graph, target="spinnaker2", path=tmp_path / "edge", population_scale=False)
    prog = sf.load_export(tmp_path / "edge")
    with h5py.File(tmp_path / "edge" / "pe_0001.h5") as f:
        assert f.attrs["population"] == "if2"
        v0 = f["neurons/v_init"][()]
    assert np.rint(w * 2**16) == 6 and np.all(v0 == 7)
    first = sf.simulate(prog.graph, np.zeros((1, 1, *shape)), backend="numba-event", precision=prog.precision, record=["vinit_if2"])
    np.testing.assert_array_equal(first.traces["vinit_if2"][0, 0] * 2**16, v0)
    got = prog.run(x, record=["if2", "if5"])
    want = sf.simulate(prog.graph, x, backend="numba-event", precision=prog.precision, record=["if2", "if5"])
    for k in ("if2", "if5"):
        np.testing.assert_array_equal(got.traces[k], want.traces[k])
        np.testing.assert_array_equal(got.spikes[k], want.spikes[k])


def _edited(change):
    graph, shape = _mlp(0)
    change(graph)
    return graph


@pytest.mark.parametrize("change, match", [
    (lambda g: g.nodes.__setitem__("vinit_late", n.Delay(delay=2e-3)), r"node 'vinit_if2': the pulse into IF layer 'if2' is nonzero at step 1"),
    (lambda g: g.nodes.__setitem__("vinit_one", n.Affine(weight=np.full((1, 6), 0.5), bias=np.ones(1))), r"node 'vinit_if2': .*depends on the input"),
    (lambda g: g.nodes.__setitem__("if2", n.LIF(tau=0.02, v_threshold=1.0, reset="subtract")), r"node 'vinit_if2': the pulse feeds 'if2' of type LIF"),
    (lambda g: g.nodes.__setitem__("if2", n.IF(v_threshold=2.0, r=500.0, reset="subtract")), r"node 'vinit_if2': IF layer 'if2' has input gain"),
    (lambda g: g.metadata["conversion"]["pulse_nodes"].append("vinit_gone"), r"node 'vinit_gone': listed as a pulse node"),
    (lambda g: (g.nodes.__setitem__("side", n.Affine(weight=np.zeros((1, 12)), bias=np.zeros(1))), g.edges.extend([("if2", "side"), ("side", "vinit_pulse")])),
     r"node 'vinit_pulse': pulse node fed by 'side' \(Affine\)"),
    (lambda g: (g.nodes.__setitem__("zz_skip", n.Affine(weight=np.ones((12, 6)), bias=np.zeros(12))), g.edges.extend([("input", "zz_skip"), ("zz_skip", "if2")])),
     r"node 'vinit_if2': IF layer 'if2' sums \['affine1', 'zz_skip'\] besides the pulse, and 'zz_skip' after it"),
])
def test_a_pulse_the_target_cannot_fold_is_refused_by_name(change, match, tmp_path):
    graph = _edited(change)
    with pytest.raises(DesignRuleError, match=match):
        sf.export(graph, target="spinnaker2", path=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_v_init_in_the_pe_image_is_checked_and_version_1_exports_still_load(tmp_path):
    graph, shape = _mlp(0)
    prog, x = _export(graph, shape, tmp_path / "out")
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "out", bad)
    with h5py.File(bad / "pe_0001.h5", "r+") as f:
        del f["neurons/v_init"]
        f["neurons/v_init"] = np.zeros(3, np.int64)
    _rehash(bad)
    with pytest.raises(FormatError, match=r"pe_0001.h5 neuron field 'v_init' is not 12 integers"):
        sf.load_export(bad)
    # a version-1 export (written before initial membranes existed) loads and starts from zero
    plain, _ = _mlp(0, half_threshold=False)
    _export(plain, shape, tmp_path / "v1")
    m = json.loads((tmp_path / "v1" / "manifest.json").read_text())
    m["version"] = 1
    (tmp_path / "v1" / "manifest.json").write_text(json.dumps(m))
    old = sf.load_export(tmp_path / "v1")
    np.testing.assert_array_equal(old.run(x).output, sf.simulate(old.graph, x, backend="numba-event", precision=old.precision).output)
    m["version"] = 3
    (tmp_path / "v1" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(FormatError, match="format version 3"):
        sf.load_export(tmp_path / "v1")


def test_prog_graph_is_a_converted_graph_that_exports_again(tmp_path):
    """``prog.graph`` keeps the pulse (and names it), so it simulates as exported and exports again
    to the same initial membranes."""
    graph, shape = _mlp(1)
    prog, x = _export(graph, shape, tmp_path / "once")
    assert prog.graph.metadata["conversion"]["pulse_nodes"] == graph.metadata["conversion"]["pulse_nodes"]
    sf.export(prog.graph, target="spinnaker2", path=tmp_path / "twice")
    again = sf.load_export(tmp_path / "twice")
    np.testing.assert_array_equal(again.run(x).output, prog.run(x).output)
