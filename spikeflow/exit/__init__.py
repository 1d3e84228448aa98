"""Dynamic-confidence early exit (Li et al., ICCV 2023), in one package.

* :mod:`spikeflow.exit.policy`: the rule, stored in the graph's metadata (``set_exit_policy``);
* :mod:`spikeflow.exit.calibration`: the threshold chosen on a validation accuracy/latency front;
* :mod:`spikeflow.exit.runners`: inference that stops each sample early, on numba-event,
  numba-clock (per sample, compiled) and torch (batch compaction), with one entry point
  :func:`simulate`.

Example:
    >>> import spikeflow as sf
    >>> sf.exit.ExitPolicy(output="output", threshold=0.9).min_steps
    1
"""

from spikeflow.exit.calibration import (
    CalibrationResult,
    calibrate,
    calibrate_outputs,
    evaluate,
    evaluate_outputs,
    plot_exit_histogram,
    plot_latency_accuracy,
)
from spikeflow.exit.policy import (
    ExitPolicy,
    check_exit_policy,
    clear_exit_policy,
    get_exit_policy,
    set_exit_policy,
)

_RUNNERS = ("ExitResult", "ExitSimulator", "TorchExitRunner", "simulate_exit")  # loaded lazily: they import numba


def simulate(graph, inputs, backend: str = "numba-event", **options):
    """Early-exit inference; see :func:`spikeflow.exit.runners.simulate_exit`."""
    from spikeflow.exit.runners import simulate_exit

    return simulate_exit(graph, inputs, backend=backend, **options)


def __getattr__(name: str):
    if name in _RUNNERS:
        from spikeflow.exit import runners

        return getattr(runners, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CalibrationResult", "ExitPolicy", "ExitResult", "ExitSimulator", "TorchExitRunner", "calibrate", "calibrate_outputs",
    "check_exit_policy", "clear_exit_policy", "evaluate", "evaluate_outputs", "get_exit_policy", "plot_exit_histogram",
    "plot_latency_accuracy", "set_exit_policy", "simulate", "simulate_exit",
]
