"""Fixed-point mode equals the loop-by-loop integer reference, saturations included."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import spikeflow as sf
from spikeflow.backends import FixedPoint, quantise, simulate
from spikeflow.errors import BackendError
from spikeflow.ir import nodes as n
from tests.reference import fixed_point as ref

from .strategies import conv_graphs, dense_graphs, spike_inputs

FORMATS = st.builds(
    FixedPoint,
    weight_bits=st.sampled_from([4, 8, 12]),
    state_bits=st.sampled_from([8, 12, 16]),
    state_frac=st.sampled_from([4, 6]),
    threshold_bits=st.sampled_from([8, 16]),
    coef_bits=st.sampled_from([10, 16]),
    coef_frac=st.sampled_from([8, 12]),
)


def test_quantise_rounds_half_up_and_saturates():
    q, saturated = quantise([0.49, 0.5, -0.5, -0.51, 100.0, -100.0], bits=8, frac=0)
    assert q.tolist() == [0, 1, 0, -1, 100, -100] and saturated == 0
    q, saturated = quantise([1.0, -1.0, 0.75], bits=4, frac=3)
    assert q.tolist() == [7, -8, 6] and saturated == 1
    with pytest.raises(BackendError, match="bits"):
        quantise([1.0], bits=1, frac=0)


def _check(graph, x, fmt):
    names = list(graph.flatten().nodes)
    expected, overflows = ref.simulate(graph, x, fmt)
    for backend in ("numba-clock", "numba-event"):
        res = simulate(graph, x, backend=backend, precision=fmt, record=names)
        for name, node in graph.flatten().nodes.items():
            got = res.spikes[name] if node.spiking else (res.traces[name] if not node.stateful or isinstance(node, n.Delay) else None)
            if got is not None:
                np.testing.assert_array_equal(got, expected[name], err_msg=f"{backend}: {name}")
        assert res.stats["overflows"] == overflows


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fixed_point_matches_integer_reference(data):
    graph = data.draw(dense_graphs())
    _check(graph, data.draw(spike_inputs(graph, max_steps=10)), data.draw(FORMATS))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fixed_point_conv_matches_integer_reference(data):
    graph = data.draw(conv_graphs())
    _check(graph, data.draw(spike_inputs(graph, max_steps=4)), data.draw(FORMATS))


def test_narrow_state_saturates_and_counts_overflows():
    g = sf.Graph.sequential(n.Linear(weight=np.full((2, 8), 0.9)), n.IF(v_threshold=100.0, r=1000.0), dt=1e-3)
    x = np.ones((5, 1, 8))
    res = simulate(g, x, backend="numba-event", precision=FixedPoint(state_bits=8, state_frac=4), record=["if2"])
    assert res.stats["overflows"] > 0
    assert res.traces["if2"].max() == pytest.approx(127 / 16)  # pinned at the top of the 8-bit range
    assert simulate(g, x, backend="numba-event", precision="fixed").stats["overflows"] == 0


def test_wide_fixed_point_tracks_float64():
    rng = np.random.default_rng(2)
    g = sf.Graph.sequential(n.Linear(weight=rng.normal(0, 0.5, (20, 30))), n.LIF(tau=0.02, v_threshold=1.0, r=20.0), dt=1e-3)
    x = (rng.random((100, 1, 30)) < 0.2).astype(float)
    exact = simulate(g, x, backend="numba-event").output
    fixed = simulate(g, x, backend="numba-event", precision=FixedPoint(weight_bits=16, state_bits=32, state_frac=16, threshold_bits=32, coef_bits=24, coef_frac=20))
    assert fixed.stats["saturated_params"] == 0 and fixed.stats["overflows"] == 0
    assert exact.sum() > 20
    assert abs(fixed.output.sum() - exact.sum()) <= 0.05 * exact.sum()
    # a 16-bit threshold cannot hold 1.0 with 16 fractional bits: the saturation is reported
    narrow = simulate(g, x, backend="numba-event", precision=FixedPoint(state_bits=32, state_frac=16, threshold_bits=16))
    assert narrow.stats["saturated_params"] == 20
