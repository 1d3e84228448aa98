"""The backend/target registry: capabilities declared by each module, asked for instead of names."""

import sys
import types

import numpy as np
import pytest

import spikeflow as sf
from spikeflow import backends
from spikeflow.backends import Capabilities, backend_names, capabilities, check_precision, target_names
from spikeflow.errors import BackendError


def small_graph():
    return sf.Graph.sequential(sf.ir.Input(shape=(2, 3, 3)), sf.ir.Flatten(), sf.ir.Linear(weight=np.ones((2, 18))),
                               sf.ir.IF(v_threshold=0.5, r=1e3), dt=1e-3)


def test_every_backend_declares_its_capabilities():
    for name in backend_names():
        caps = capabilities(name)
        assert caps.kind == "simulator" and caps.engine and "float64" in caps.precisions
    assert backend_names(early_exit=True) == ["numba-clock", "numba-event", "torch"]
    assert backend_names(event_input=True) == ["numba-event"]
    assert backend_names(precision="fixed") == ["numba-clock", "numba-event"]
    assert backend_names(streaming=True, engine="numba") == ["numba-clock", "numba-event"]


def test_unknown_names_and_capabilities_are_clear_errors():
    with pytest.raises(BackendError, match="unknown backend or target 'nope'"):
        capabilities("nope")
    with pytest.raises(BackendError, match="unknown capability 'gpu'"):
        backend_names(gpu=True)
    with pytest.raises(BackendError, match="kind"):
        Capabilities(kind="accelerator")


def test_precision_is_checked_once_against_the_declared_ones():
    check_precision("numba-event", "float32")
    with pytest.raises(BackendError, match="'brian2' runs 'float64', got 'float32'"):
        check_precision("brian2", "float32")
    with pytest.raises(BackendError, match="'torch' runs 'float64' or 'float32', got 'fixed'"):
        sf.simulate(small_graph(), np.ones((2, 1, 2, 3, 3)), backend="torch", precision="fixed")


def test_events_reach_run_events_only_on_backends_that_take_them(monkeypatch):
    events = np.zeros(4, dtype=[("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
    events["t"] = [0, 100, 1500, 2500]
    graph = small_graph()
    calls = []
    from spikeflow.backends.numba import event as event_module

    original = event_module.run_events
    monkeypatch.setattr(event_module, "run_events", lambda *a, **k: calls.append("events") or original(*a, **k))
    ev = sf.simulate(graph, events, backend="numba-event", sensor_size=(3, 3, 2))
    clock = sf.simulate(graph, events, backend="numba-clock", sensor_size=(3, 3, 2))  # binned densely
    assert calls == ["events"]
    np.testing.assert_array_equal(ev.output, clock.output)
    assert ev.output.any()


def test_two_argument_registration_still_works_and_reads_module_capabilities(monkeypatch):
    plain = types.ModuleType("plain_target")
    plain.export = lambda graph, path, **options: {"path": str(path)}
    plain.load_export = lambda path: None
    declared = types.ModuleType("declared_backend")
    declared.CAPABILITIES = Capabilities(engine="test", precisions=("float64", "int8"))
    declared.is_available = lambda: True
    monkeypatch.setitem(sys.modules, "plain_target", plain)
    monkeypatch.setitem(sys.modules, "declared_backend", declared)
    monkeypatch.setattr(backends, "_TARGETS", dict(backends._TARGETS))
    monkeypatch.setattr(backends, "_BACKENDS", dict(backends._BACKENDS))
    backends.register_target("plain", "plain_target")
    backends.register_backend("declared", "declared_backend")
    assert "plain" in target_names() and capabilities("plain") == Capabilities(kind="target", engine="plain")
    assert backend_names(precision="int8") == ["declared"]
    assert sf.export(small_graph(), target="plain", path="somewhere") == {"path": "somewhere"}


@pytest.mark.parametrize("backend", ["numba-event", "numba-clock", "torch"])
def test_simulate_validates_and_flattens_once(backend, monkeypatch):
    graph = sf.Graph(
        {"input": sf.ir.Input(shape=(2, 3, 3)), "inner": small_graph(), "output": sf.ir.Output(shape=(2,))},
        [("input", "inner"), ("inner", "output")], dt=1e-3,
    )
    sf.simulate(graph, np.ones((2, 1, 2, 3, 3)), backend=backend)  # warm-up (compiles)
    counts = {"shapes": 0, "flatten": 0}
    infer, flatten = sf.Graph._infer_shapes, sf.Graph.flatten

    def counting_infer(self):
        counts["shapes"] += 1
        return infer(self)

    def counting_flatten(self):
        counts["flatten"] += self._checked_shapes is None and self.is_nested()
        return flatten(self)

    monkeypatch.setattr(sf.Graph, "_infer_shapes", counting_infer)
    monkeypatch.setattr(sf.Graph, "flatten", counting_flatten)
    graph.validate()
    one_validation = dict(counts)
    counts.update(shapes=0, flatten=0)
    res = sf.simulate(graph, np.ones((3, 1, 2, 3, 3)), backend=backend)
    assert res.output.shape == (3, 1, 2)
    assert counts == one_validation  # the backend reuses sf.simulate's checked, flattened graph
