"""Bad input to the entry points: a SpikeflowError, never a raw numpy/torch error or a silently
wrong result (issue 17, items 2 and 3)."""

import numpy as np
import pytest
import torch

import spikeflow as sf
from spikeflow.datasets.events import make_events


def conv_net() -> sf.Graph:
    return sf.Graph.sequential(
        sf.ir.Input(shape=(2, 4, 4)), sf.ir.Flatten(), sf.ir.Affine(weight=np.ones((3, 32)), bias=np.zeros(3)),
        sf.ir.LIF(tau=0.01, v_threshold=np.ones(3)),
    )


def _events(t, dtype="i8"):
    ev = np.zeros(1, dtype=[("x", "i2"), ("y", "i2"), ("t", dtype), ("p", "?")])
    ev["x"], ev["y"], ev["t"] = 1, 1, t
    return ev


BACKENDS = ["numba-event", "numba-clock", "torch"]
BAD_EVENTS = {
    "t = 2**52 µs (too many steps for memory)": (_events(2**52), "memory"),
    "t = 1e300": (_events(1e300, "f8"), "expected a time"),
    "t = NaN": (_events(np.nan, "f8"), "expected a time"),
    "t = 2**64 - 1 (uint64)": (_events(2**64 - 1, "u8"), "above the latest time"),
    "t complex": (_events(1, "c16"), "integer or float"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(BAD_EVENTS))
def test_bad_event_times(backend, case):
    events, words = BAD_EVENTS[case]
    with pytest.raises(sf.DataError, match=words):
        sf.simulate(conv_net(), events, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_events_without_y_on_a_2d_sensor_are_refused(backend):
    # Issue 17: they all landed in row 0.
    ev = np.zeros(2, dtype=[("x", "i2"), ("t", "i8"), ("p", "?")])
    ev["x"], ev["t"] = [1, 2], [0, 100]
    with pytest.raises(sf.DataError, match="no 'y' field"):
        sf.simulate(conv_net(), ev, backend=backend, sensor_size=(4, 4, 2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_t_dense_input_is_refused_before_allocating(backend):
    x = np.broadcast_to(np.zeros((1, 1, 2, 4, 4)), (2**40, 1, 2, 4, 4))  # a view: no memory yet
    with pytest.raises(sf.DataError, match="memory"):
        sf.simulate(conv_net(), x, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bfloat16_input_runs_like_float32(backend):
    x = (torch.rand(6, 1, 2, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    a = sf.simulate(conv_net(), x.to(torch.bfloat16), backend=backend).output
    b = sf.simulate(conv_net(), x, backend=backend).output
    np.testing.assert_array_equal(a, b)
    with pytest.raises(sf.DataError, match="real numeric"):
        sf.simulate(conv_net(), x.to(torch.complex64), backend=backend)


@pytest.mark.parametrize("bad", ["nan", "inf", "complex"])
def test_torch_module_refuses_nan_inf_and_complex_input(bad):
    net = sf.to_torch(conv_net())
    x = torch.ones(4, 1, 2, 4, 4)
    if bad == "complex":
        x = x.to(torch.complex64)
    else:
        x[2, 0, 1, 3, 3] = float(bad)
    with pytest.raises(sf.DataError, match="NaN or inf, first at index \\(2, 0, 1, 3, 3\\)" if bad != "complex" else "real values"):
        net(x)


@pytest.mark.parametrize("bad", ["-inf", "nan_and_inf", "inf_and_minus_inf"])
def test_torch_module_refuses_nonfinite_input_that_a_sum_could_hide(bad):
    # The input check sums the input once: inf and -inf together sum to NaN, and so on; every case
    # must still be found, at its first index.
    net = sf.to_torch(conv_net())
    x = torch.ones(4, 1, 2, 4, 4)
    first, second = {"-inf": ("-inf", None), "nan_and_inf": ("nan", "inf"), "inf_and_minus_inf": ("inf", "-inf")}[bad]
    x[1, 0, 0, 2, 1] = float(first)
    if second is not None:
        x[3, 0, 1, 0, 0] = float(second)
    with pytest.raises(sf.DataError, match="NaN or inf, first at index \\(1, 0, 0, 2, 1\\)"):
        net(x)


def test_torch_module_accepts_finite_input_whose_sum_overflows():
    # A float32 sum of finite values can overflow to inf: the check then falls back to the exact test.
    net = sf.to_torch(conv_net())
    x = torch.full((4, 1, 2, 4, 4), 3e38)
    assert not torch.isfinite(x.sum())
    assert net(x).shape[0] == 4


def test_recurrent_edge_of_the_wrong_shape_into_a_conv_is_refused():
    nodes = {
        "input": sf.ir.Input(shape=(1, 4, 4)),
        "conv": sf.ir.Conv2d(weight=np.ones((2, 1, 3, 3)), bias=np.zeros(2), padding=(1, 1)),
        "lif": sf.ir.LIF(tau=np.full((2, 4, 4), 0.01), v_threshold=np.ones((2, 4, 4))),
        "output": sf.ir.Output(shape=(2, 4, 4)),
    }
    g = sf.Graph(nodes, [("input", "conv"), ("conv", "lif"), ("lif", "conv"), ("lif", "output")])
    with pytest.raises(sf.GraphError, match="recurrent edge from 'lif' gives shape \\(2, 4, 4\\), expected \\(1, 4, 4\\)"):
        g.validate()


def test_recurrent_edge_of_the_right_shape_into_a_conv_is_accepted():
    nodes = {
        "input": sf.ir.Input(shape=(2, 4, 4)),
        "conv": sf.ir.Conv2d(weight=np.ones((2, 2, 3, 3)), bias=np.zeros(2), padding=(1, 1)),
        "lif": sf.ir.LIF(tau=np.full((2, 4, 4), 0.01), v_threshold=np.ones((2, 4, 4))),
        "output": sf.ir.Output(shape=(2, 4, 4)),
    }
    sf.Graph(nodes, [("input", "conv"), ("conv", "lif"), ("lif", "conv"), ("lif", "output")]).validate()


@pytest.mark.parametrize("delay", [1e300, 1e12, 2.0**21 * 1e-3])
def test_delay_too_long_to_buffer_is_refused(delay):
    # Issue 17: Delay(delay=1e300) wrapped around in the int64 cast and acted as no delay.
    with pytest.raises(sf.GraphError, match="a delay holds at most"):
        sf.Graph.sequential(sf.ir.Input(shape=(1,)), sf.ir.Delay(delay=np.array([delay])), dt=1e-3).validate()


def test_longest_delay_still_works():
    g = sf.Graph.sequential(sf.ir.Input(shape=(1,)), sf.ir.Delay(delay=np.array([3e-3])), dt=1e-3)
    out = sf.simulate(g, np.eye(6)[:, :1].reshape(6, 1, 1), backend="numba-clock").output.ravel()
    assert out.tolist() == [0, 0, 0, 1, 0, 0]


def test_event_values_that_need_integers():
    bad = make_events([1], [1], [5], [1]).astype([("x", "f8"), ("y", "i2"), ("t", "i8"), ("p", "?")])
    with pytest.raises(sf.DataError, match="field 'x': expected integers"):
        sf.simulate(conv_net(), bad, backend="numba-clock")
