"""Backends: one entry point to simulate a graph, one to export it to hardware, one registry.

Each simulation backend is a module with ``is_available()``, ``run(graph, inputs, *, record,
precision, ...)`` and ``CAPABILITIES`` (a :class:`~spikeflow.backends.capabilities.Capabilities`:
precisions, event input, early exit, streaming; a backend with ``event_input`` also has
``run_events``); each hardware target a module with ``export(graph, path, **options)`` returning a
report and ``load_export(path)`` returning the program (``.run(x, record=...)``, ``.graph``,
``.precision``, ``.report``) from the exported folder alone (see
:mod:`spikeflow.backends.export_folder`), and optionally ``CAPABILITIES``. Both register with one
line below (or from their own package with :func:`register_backend` / :func:`register_target`).
Backend modules import nothing heavy at the top, so reading their capabilities is cheap; numba,
torch and brian2 load only when their backend runs. Callers ask :func:`capabilities` and
:func:`backend_names`, never test a backend's name.

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

from spikeflow.errors import BackendError, DataError, GraphError

from .capabilities import Capabilities
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


def _import(module: str):
    return import_module(module, __name__) if module.startswith(".") else import_module(module)


def _module(name: str):
    if name not in _BACKENDS:
        raise BackendError(f"argument 'backend': unknown backend {name!r}; registered: {sorted(_BACKENDS)}")
    return _import(_BACKENDS[name])


def available_backends() -> dict[str, bool]:
    """Every registered backend and whether it can run here."""
    return {name: bool(_module(name).is_available()) for name in _BACKENDS}


def capabilities(name: str) -> Capabilities:
    """What the registered backend or target ``name`` can do (its module's ``CAPABILITIES``)."""
    if name in _BACKENDS:
        return getattr(_module(name), "CAPABILITIES", Capabilities())
    if name in _TARGETS:
        return getattr(_target(name), "CAPABILITIES", Capabilities(kind="target", engine=name))
    raise BackendError(f"unknown backend or target {name!r}; backends: {sorted(_BACKENDS)}, targets: {sorted(_TARGETS)}")


def backend_names(**required: Any) -> list[str]:
    """Registered simulation backends that have the ``required`` capabilities, e.g. ``early_exit=True``."""
    return sorted(name for name in _BACKENDS if capabilities(name).supports(**required))


def target_names(**required: Any) -> list[str]:
    """Registered hardware targets (with the ``required`` capabilities, when given: that imports them)."""
    return sorted(name for name in _TARGETS if not required or capabilities(name).supports(**required))


def simulate(
    graph,
    inputs: Any,
    backend: str = "numba-event",
    *,
    record: Iterable[str] = (),
    precision: Any = "float64",
    bin_width: float | None = None,
    sensor_size: tuple[int, ...] | None = None,
    batch_first: bool = False,
    **options: Any,
) -> SimulationResult:
    """Run ``graph`` on ``inputs`` with ``backend`` and return a :class:`SimulationResult`.

    Args:
        graph: a :class:`spikeflow.Graph` (nested graphs are flattened; names become ``outer.inner``).
        inputs: ``[T, B, ...]`` array or tensor, or a dict by Input name; or tonic-style events (a
            structured array, or a list of them for a batch), binned to ``bin_width`` µs (default:
            the graph's ``dt``) over a sensor of ``sensor_size`` (W, H, P).
        backend: a registered backend (:func:`backend_names`: "numba-event", "numba-clock", "torch",
            "brian2"); its :func:`capabilities` say which ``precision`` values it takes.
        record: node names whose spikes (``result.spikes``) and membrane potentials or values
            (``result.traces``) are returned.
        precision: "float64", "float32", or (numba) "fixed" / a ``FixedPoint``.
        batch_first: the array inputs are ``[B, T, ...]`` (as datasets and the Trainer hold them);
            they are swapped to the time-major ``[T, B, ...]`` that every backend runs. Results are
            always time-major.
        **options: backend-specific, e.g. ``sparse`` (numba), ``target`` (brian2).
    """
    from spikeflow.ir import Graph

    if not isinstance(graph, Graph):
        raise GraphError(f"argument 'graph': expected a spikeflow.Graph, got {type(graph).__name__}")
    module = _module(backend)
    if not module.is_available():
        raise BackendError(f"backend {backend!r} is not available here (its package is not installed or failed to import)")
    check_precision(backend, precision)
    flat = graph.checked()  # validated and flattened once; the backend reuses it
    shapes = {k: flat.nodes[k].shape for k in flat.inputs}
    if batch_first:
        inputs = _time_major(inputs)
    start = time.perf_counter()
    if capabilities(backend).event_input and len(shapes) == 1 and event_samples(inputs) is not None:
        # events go straight to per-step entries: a long sparse recording is never densified
        result = module.run_events(flat, inputs, record=tuple(record), precision=precision, bin_width=bin_width,
                                   sensor_size=sensor_size, **options)
    else:
        checked = prepare_inputs(inputs, shapes, dt=flat.dt, bin_width=bin_width, sensor_size=sensor_size)
        result = module.run(flat, checked, record=tuple(record), precision=precision, **options)
    result.stats["wall_time"] = time.perf_counter() - start
    return result


def _time_major(inputs: Any) -> Any:
    """Array inputs ``[B, T, ...]`` (or a dict of them) as ``[T, B, ...]``; events are left alone."""
    if event_samples(inputs) is not None:
        return inputs
    if isinstance(inputs, dict):
        return {k: _time_major(v) for k, v in inputs.items()}
    if hasattr(inputs, "transpose") and getattr(inputs, "ndim", 0) >= 2:
        return inputs.transpose(0, 1) if hasattr(inputs, "detach") else inputs.swapaxes(0, 1)
    raise DataError(f"argument 'inputs': batch_first=True needs arrays of shape [B, T, ...], got {type(inputs).__name__}")


def check_precision(backend: str, precision: Any) -> None:
    """Raise BackendError unless ``backend`` declares ``precision`` (a FixedPoint counts as "fixed")."""
    accepted = capabilities(backend).precisions
    name = precision if isinstance(precision, str) else "fixed"  # a FixedPoint; the backend checks its fields
    if name not in accepted:
        raise BackendError(f"argument 'precision': backend {backend!r} runs {' or '.join(map(repr, accepted))}, got {precision!r}")


def _target(target: str):
    if target not in _TARGETS:
        known = ", ".join(sorted(_TARGETS)) or "none yet"
        raise BackendError(f"argument 'target': unknown target {target!r}; registered targets: {known}")
    return _import(_TARGETS[target])


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
    "Capabilities", "FixedPoint", "SimulationResult", "Simulator", "available_backends", "backend_names", "bin_events",
    "capabilities", "check_precision", "export", "load_export", "quantise", "register_backend", "register_target",
    "simulate", "target_names",
]
