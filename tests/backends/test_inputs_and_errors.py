"""Input checking, event binning and the errors of the entry points."""

import numpy as np
import pytest

import spikeflow as sf
from spikeflow.backends import available_backends, bin_events, export, simulate
from spikeflow.errors import BackendError, DataError, GraphError, SpikeflowError
from spikeflow.ir import nodes as n


def _graph():
    return sf.Graph.sequential(n.Linear(weight=np.ones((2, 3))), n.LIF(tau=0.01, v_threshold=0.5), dt=1e-3)


def test_numba_backends_are_registered_and_available():
    found = available_backends()
    assert found["numba-clock"] and found["numba-event"]
    assert {"torch", "brian2"} <= set(found)


def test_simulate_is_the_public_entry_point():
    res = sf.simulate(_graph(), np.ones((4, 1, 3)), backend="numba-clock")
    assert res.output.shape == (4, 1, 2) and res.backend == "numba-clock"
    assert set(res.stats) >= {"synaptic_events", "neuron_updates", "steps", "wall_time"}


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"backend": "loihi"}, BackendError, "unknown backend 'loihi'"),
        ({"precision": "float16"}, BackendError, "precision"),
        ({"sparse": "maybe"}, BackendError, "sparse"),
        ({"record": ["nope"]}, DataError, "record.*'nope'"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        simulate(_graph(), np.ones((4, 1, 3)), **kwargs)


@pytest.mark.parametrize(
    "x, match",
    [
        (np.ones((4, 1, 5)), r"expected shape \[T, B, 3\], got \[4, 1, 5\]"),
        (np.ones((4, 3)), r"expected shape \[T, B, 3\]"),
        (np.ones((4, 1, 3), dtype=complex), "real numeric dtype"),
        (np.array([[["a", "b", "c"]]]), "real numeric dtype"),
        (np.where(np.arange(12).reshape(4, 1, 3) == 7, np.nan, 1.0), r"NaN or inf, first at index \(2, 0, 1\)"),
        ({"inp": np.ones((4, 1, 3))}, "expected keys"),
    ],
)
@pytest.mark.parametrize("backend", ["numba-clock", "numba-event", "brian2"])
def test_bad_inputs_raise_data_error_naming_the_input(x, match, backend):
    with pytest.raises(DataError, match=match):
        simulate(_graph(), x, backend=backend)


def test_a_node_the_backend_cannot_run_is_named():
    class _Mystery(n._Elementwise):  # a leading underscore keeps it out of the node registry
        pass

    g = sf.Graph.sequential(n.Input(shape=(3,)), _Mystery(), dt=1e-3)
    for backend in ("numba-clock", "numba-event"):
        with pytest.raises(BackendError, match=f"node '_mystery1' of type _Mystery is not supported by backend '{backend}'"):
            simulate(g, np.ones((2, 1, 3)), backend=backend)


def test_not_a_graph_is_rejected():
    with pytest.raises(GraphError, match="argument 'graph'"):
        simulate({"nodes": {}}, np.ones((2, 1, 3)))


def test_export_to_an_unknown_target_lists_the_registered_ones():
    with pytest.raises(BackendError, match="unknown target 'loihi'; registered targets: "):
        export(_graph(), target="loihi", path="/tmp/nowhere")


def _reference_bins(events, sensor_size, width, n_bins):
    w, h, p = sensor_size
    frames = np.zeros((n_bins, p, h, w))
    for e in events:
        k = int(e["t"] // width)
        if k < n_bins:
            frames[k, e["p"], e["y"], e["x"]] += 1
    return frames


def test_bin_events_matches_a_loop():
    rng = np.random.default_rng(0)
    ev = np.zeros(300, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])
    ev["x"], ev["y"], ev["p"], ev["t"] = rng.integers(0, 5, 300), rng.integers(0, 4, 300), rng.integers(0, 2, 300), rng.integers(0, 9000, 300)
    assert np.array_equal(bin_events(ev, (5, 4, 2), 1000.0, 8), _reference_bins(ev, (5, 4, 2), 1000.0, 8))
    assert bin_events(ev, (5, 4, 2), 1000.0).shape == (9, 2, 4, 5)


def test_events_are_binned_at_dt_and_checked():
    g = sf.Graph.sequential(n.Input(shape=(2, 2, 3)), n.Flatten(), n.Linear(weight=np.ones((1, 12))), n.IF(v_threshold=0.5, r=1000.0), dt=1e-3)
    ev = np.array([(0, 1, 500, 1), (2, 0, 2500, 0)], dtype=[("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
    res = simulate(g, ev, backend="numba-event")  # sensor size (3, 2, 2) from the Input shape
    assert res.output[:, 0, 0].tolist() == [1.0, 0.0, 1.0]
    batch = simulate(g, [ev, ev[:1]], backend="numba-event")
    assert batch.output.shape == (3, 2, 1) and batch.output[:, 1, 0].tolist() == [1.0, 0.0, 0.0]
    bad = ev.copy()
    bad["x"][1] = 7
    with pytest.raises(DataError, match="field 'x': event 1 has x=7, expected 0..2"):
        simulate(g, bad, backend="numba-event")
    with pytest.raises(DataError, match="sensor_size"):
        simulate(g, ev, backend="numba-event", sensor_size=(4, 4, 2))


def test_every_error_is_a_spikeflow_error():
    assert issubclass(DataError, SpikeflowError) and issubclass(BackendError, SpikeflowError)
