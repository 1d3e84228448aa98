"""Backends: one entry point to simulate a graph, one to export it to hardware.

Each simulation backend is a module with ``is_available()`` and
``run(graph, inputs, *, record, precision, ...)``; each hardware target a module with
``export(graph, path, **options)`` returning a report and ``load_export(path)`` returning the
program (``.run(x, record=...)``, ``.graph``, ``.precision``, ``.report``) from the exported folder
alone (see :mod:`spikeflow.backends.export_folder`). Both register with one line below (or from
their own package with :func:`register_backend` / :func:`register_target`); nothing is imported
until used, so numba, torch and brian2 load only when their backend runs.

Example:
    >>> import numpy as np, spikeflow as sf
    >>> g = sf.Graph.sequential(sf.ir.Linear(weight=np.eye(2)), sf.ir.LIF(tau=0.01, v_threshold=0.5, r=5.0))
    >>> res = sf.simulate(g, np.ones((3, 1, 2)), backend="numba-event", record=["lif2"])
    >>> res.spikes["lif2"][:, 0, 0].tolist(), res.stats["steps"]
    ([0.0, 1.0, 0.0], 3)
"""

from __future__ import annotations

import time
from importlib import import_module
from typing import Any, Iterable

from spikeflow.errors import BackendError, GraphError

from .inputs import bin_events, event_samples, prepare_inputs
from .result import SimulationResult

_BACKENDS: dict[str, str] = {}
_TARGETS: dict[str, str] = {}


def register_backend(name: str, module: str) -> None:
    """Register a simulation backend implemented by ``module`` (absolute, or relative to this package)."""
    _BACKENDS[name] = module


def register_target(name: str, module: str) -> None:
    """Register a hardware target: ``module.export(graph, path, **options)``, ``module.load_export(path)``."""
    _TARGETS[name] = module


register_backend("numba-clock", ".numba.clock")
register_backend("numba-event", ".numba.event")
register_backend("torch", ".torch_backend")
register_backend("brian2", ".brian2_backend")
register_target("rram-lsm", ".rram")


def _module(name: str):
    module = _BACKENDS[name]
    return import_module(module, __name__) if module.startswith(".") else import_module(module)


def available_backends() -> dict[str, bool]:
    """Every registered backend and whether it can run here."""
    return {name: bool(_module(name).is_available()) for name in _BACKENDS}


def simulate(
    graph,
    inputs: Any,
    backend: str = "numba-event",
    *,
    record: Iterable[str] = (),
    precision: Any = "float64",
    bin_width: float | None = None,
    sensor_size: tuple[int, ...] | None = None,
    **options: Any,
) -> SimulationResult:
    """Run ``graph`` on ``inputs`` with ``backend`` and return a :class:`SimulationResult`.

    Args:
        graph: a :class:`spikeflow.Graph` (nested graphs are flattened; names become ``outer.inner``).
        inputs: ``[T, B, ...]`` array or tensor, or a dict by Input name; or tonic-style events (a
            structured array, or a list of them for a batch), binned to ``bin_width`` µs (default:
            the graph's ``dt``) over a sensor of ``sensor_size`` (W, H, P).
        backend: "numba-event", "numba-clock", "torch" or "brian2" (see :func:`available_backends`).
        record: node names whose spikes (``result.spikes``) and membrane potentials or values
            (``result.traces``) are returned.
        precision: "float64", "float32", or (numba) "fixed" / a ``FixedPoint``.
        **options: backend-specific, e.g. ``sparse`` (numba), ``target`` (brian2).
    """
    from spikeflow.ir import Graph

    if not isinstance(graph, Graph):
        raise GraphError(f"argument 'graph': expected a spikeflow.Graph, got {type(graph).__name__}")
    if backend not in _BACKENDS:
        raise BackendError(f"argument 'backend': unknown backend {backend!r}; registered: {sorted(_BACKENDS)}")
    module = _module(backend)
    if not module.is_available():
        raise BackendError(f"backend {backend!r} is not available here (its package is not installed or failed to import)")
    graph.validate()
    flat = graph.flatten()
    shapes = {k: flat.nodes[k].shape for k in flat.inputs}
    if backend == "numba-event" and event_samples(inputs) is not None and len(shapes) == 1:
        # events go straight to per-step entries: a long sparse recording is never densified
        from .numba.event import Simulator

        sim = Simulator(graph, backend, record=tuple(record), precision=precision, bin_width=bin_width, sensor_size=sensor_size, **options)
        start = time.perf_counter()
        result = sim.step(inputs)
        result.stats["wall_time"] = time.perf_counter() - start
        return result
    checked = prepare_inputs(inputs, shapes, dt=flat.dt, bin_width=bin_width, sensor_size=sensor_size)
    start = time.perf_counter()
    result = module.run(graph, checked, record=tuple(record), precision=precision, **options)
    result.stats["wall_time"] = time.perf_counter() - start
    return result


def _target(target: str):
    if target not in _TARGETS:
        known = ", ".join(sorted(_TARGETS)) or "none yet"
        raise BackendError(f"argument 'target': unknown target {target!r}; registered targets: {known}")
    module = _TARGETS[target]
    return import_module(module, __name__) if module.startswith(".") else import_module(module)


def export(graph, target: str, path, **options: Any):
    """Export ``graph`` for a hardware ``target`` into the folder ``path``; returns the target's report."""
    return _target(target).export(graph, path, **options)


def load_export(path):
    """The program in an export folder, run by its target's reference executor (``.run(x, record=...)``).

    The manifest is verified (target, version, every file's hash) before any data file is read.
    """
    from .export_folder import read_manifest

    return _target(read_manifest(path)["target"]).load_export(path)


def __getattr__(name: str):
    if name == "Simulator":  # lazy: importing it loads the numba engine module
        from .numba.event import Simulator

        return Simulator
    if name in ("FixedPoint", "quantise"):
        from .numba import fixed_point

        return getattr(fixed_point, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FixedPoint", "SimulationResult", "Simulator", "available_backends", "bin_events", "export", "load_export",
    "quantise", "register_backend", "register_target", "simulate",
]
