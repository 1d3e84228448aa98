"""The Ray worker of a sweep: an actor that compiles its simulator once and runs many trials.

A Ray *task* would start each trial in whichever worker process is free, and a fresh process pays
numba's (or Brian2's) compile and load again. One long-lived actor per CPU instead warms the
backend up once in ``__init__`` and then runs trial after trial in the same process, so compiled
kernels are reused (brian2#1429 asks for exactly this: compile once, run many). Each trial reports
the numba specialisations it added: ``new_compilations`` (kernels it is the first to use, e.g. a
training kernel the warm-up did not need) and ``recompilations`` (a kernel the worker already had,
compiled again; 0 when the worker reuses its code).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from importlib import import_module
from typing import Any

import numpy as np

from spikeflow.errors import DataError

# objectives that ship with spikeflow, by name
OBJECTIVES = {"digits_snn": "spikeflow.scale.objectives:digits_snn"}


def resolve_objective(objective: str | Callable) -> Callable:
    """A callable ``objective(params, context) -> {metric: value}`` from a built-in name,
    ``"package.module:function"``, or a callable (returned as is)."""
    if callable(objective):
        return objective
    target = OBJECTIVES.get(objective, objective)
    module_name, _, attr = target.partition(":")
    if not attr:
        raise DataError(f"objective {objective!r}: expected a built-in name {sorted(OBJECTIVES)} or 'package.module:function'")
    try:
        fn = getattr(import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise DataError(f"objective {objective!r}: cannot import it ({err})") from None
    if not callable(fn):
        raise DataError(f"objective {objective!r}: {attr} is not callable")
    return fn


def numba_specialisations() -> dict[int, int]:
    """Compiled (or cache-loaded) specialisations per numba kernel of spikeflow in this process."""
    try:
        from numba.core.dispatcher import Dispatcher
    except ImportError:
        return {}
    counts: dict[int, int] = {}
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith("spikeflow"):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Dispatcher):
                counts[id(value)] = len(value.signatures)
    return counts


def compilations_between(before: dict[int, int], after: dict[int, int]) -> tuple[int, int]:
    """``(new, again)``: specialisations added in total, and those added to kernels that already
    had one (a kernel compiled again for new argument types; 0 when the worker reuses its code)."""
    new = sum(count - before.get(key, 0) for key, count in after.items())
    again = sum(count - before[key] for key, count in after.items() if before.get(key, 0) > 0)
    return new, again


class WorkerContext:
    """What an objective gets besides its parameters: the warm backend, fixed options, a seed.

    Attributes:
        backend: the simulator this worker compiled (``simulate`` uses it).
        options: the ``[options]`` table of the sweep file.
        seed: the sweep's seed plus the trial number (a distinct, reproducible stream per trial).
    """

    def __init__(self, backend: str, options: dict[str, Any] | None = None, seed: int = 0):
        self.backend, self.options, self.seed = backend, dict(options or {}), int(seed)

    def simulate(self, graph, inputs, **kwargs):
        """``sf.simulate`` on this worker's backend."""
        import spikeflow as sf

        return sf.simulate(graph, inputs, backend=self.backend, **kwargs)


def warm_up(backend: str) -> float:
    """Simulate a tiny LIF network once so the backend's kernels are compiled; return seconds."""
    import spikeflow as sf

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    g = sf.Graph.sequential(
        sf.ir.Input(shape=(4,)), sf.ir.Affine(weight=rng.normal(0, 1, (3, 4)), bias=np.zeros(3)),
        sf.ir.LIF(tau=np.full(3, 0.01), v_threshold=np.ones(3), r=np.full(3, 10.0)),
        sf.ir.Affine(weight=rng.normal(0, 1, (2, 3)), bias=np.zeros(2)), sf.ir.LI(tau=np.full(2, 0.02), r=np.full(2, 20.0)),
        dt=1e-3,
    )
    x = (rng.random((5, 2, 4)) < 0.5).astype(np.float64)
    sf.simulate(g, x, backend=backend, record=["lif2"])
    return time.perf_counter() - start


class SimulationWorker:
    """A sweep worker (made a Ray actor by the driver): warm-up once, then :meth:`run` per trial."""

    def __init__(self, backend: str):
        self.backend = backend
        self.warmup_seconds = warm_up(backend)
        self.trials_run = 0

    def info(self) -> dict[str, Any]:
        """This worker's process id, warm-up time and trials run."""
        return {"pid": os.getpid(), "warmup_seconds": self.warmup_seconds, "trials_run": self.trials_run}

    def run(self, objective: str | Callable, trial: int, params: dict[str, Any], options: dict[str, Any], seed: int) -> dict[str, Any]:
        """Run one trial; return ``{"metrics", "seconds", "worker", "new_compilations", "recompilations",
        "trial_on_worker"}`` (numba specialisations added: kernels first used by this trial, and
        kernels compiled again)."""
        fn = resolve_objective(objective)
        context = WorkerContext(self.backend, options, seed + trial)
        before = numba_specialisations()
        start = time.perf_counter()
        metrics = fn(dict(params), context)
        seconds = time.perf_counter() - start
        new, again = compilations_between(before, numba_specialisations())
        if not isinstance(metrics, dict) or not all(isinstance(k, str) for k in metrics):
            raise DataError(f"objective {objective!r}: expected a dict of metric name -> number, got {type(metrics).__name__}")
        clean = {}
        for key, value in metrics.items():
            try:
                clean[key] = float(value)
            except (TypeError, ValueError):
                raise DataError(f"objective {objective!r}: metric {key!r} is not a number ({value!r})") from None
        self.trials_run += 1
        return {"metrics": clean, "seconds": seconds, "worker": os.getpid(), "new_compilations": new,
                "recompilations": again, "trial_on_worker": self.trials_run}
