"""Dynamic-confidence early exit, the public namespace: ``sf.exit.calibrate(...)`` and friends.

Example:
    >>> import spikeflow as sf
    >>> sf.exit.ExitPolicy(output="output", threshold=0.9).min_steps
    1
"""

from spikeflow.exit.policy import (
    ExitPolicy,
    check_exit_policy,
    clear_exit_policy,
    get_exit_policy,
    set_exit_policy,
)
from spikeflow.exit.calibration import (
    CalibrationResult,
    TorchExitRunner,
    calibrate,
    calibrate_outputs,
    evaluate,
    evaluate_outputs,
    plot_exit_histogram,
    plot_latency_accuracy,
)


def simulate(graph, inputs, backend: str = "numba-event", **options):
    """Early-exit inference; see :func:`spikeflow.exit.runners.simulate_exit`."""
    from spikeflow.exit.runners import simulate_exit

    return simulate_exit(graph, inputs, backend=backend, **options)


def ExitSimulator(graph, backend: str = "numba-event", **options):  # noqa: N802 (a class, loaded lazily)
    """A reusable numba early-exit runner; see :class:`spikeflow.exit.runners.ExitSimulator`."""
    from spikeflow.exit.runners import ExitSimulator as _ExitSimulator

    return _ExitSimulator(graph, backend, **options)


__all__ = [
    "CalibrationResult", "ExitPolicy", "ExitSimulator", "TorchExitRunner", "calibrate", "calibrate_outputs",
    "check_exit_policy", "clear_exit_policy", "evaluate", "evaluate_outputs", "get_exit_policy", "plot_exit_histogram",
    "plot_latency_accuracy", "set_exit_policy", "simulate",
]
