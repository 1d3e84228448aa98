"""Per-sample early exit on the numba backends, and one entry point for every backend.

Each sample is stepped on its own by the numba interpreter (``kernels.exit_drive`` calls
``kernels._run_float`` one step at a time, from compiled code, so no Python runs between steps or
samples); after every step the decoder of :mod:`spikeflow.exit.policy` updates the accumulated
output and the sample stops as soon as the policy says so. The steps it skips are never simulated,
so ``stats`` counts only the work done. A batch-1 call costs little besides those steps: the
program and one sample's scratch are made once per :class:`ExitSimulator`, and a float64 array
input is only reshaped (no copy, no separate NaN scan: the driver checks each step it reads;
the steps after a sample's exit are neither read nor checked).

The confidence arithmetic lives in one compiled function (:func:`confidence`) that the torch
runner and the calibration reuse, so every backend decides on bit-identical numbers.

Example:
    >>> import numpy as np, spikeflow as sf
    >>> from spikeflow.exit.policy import set_exit_policy
    >>> g = sf.Graph.sequential(sf.ir.Linear(weight=np.eye(3)), sf.ir.IF(v_threshold=0.5, r=1e3))
    >>> _ = set_exit_policy(g, threshold=0.8)
    >>> res = simulate_exit(g, np.tile([1.0, 0.0, 0.0], (10, 2, 1)), backend="numba-event")
    >>> res.exit_steps.tolist(), res.predictions.tolist()
    ([3, 3], [0, 0])
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spikeflow.backends.inputs import prepare_inputs
from spikeflow.backends.numba import kernels as K
from spikeflow.errors import BackendError, DataError, GraphError
from spikeflow.exit.policy import ExitPolicy, check_exit_policy, get_exit_policy

BACKENDS = ("numba-event", "numba-clock", "torch")


@dataclass
class ExitResult:
    """What an early-exit run returns (every backend).

    Attributes:
        predictions: ``[B]`` class chosen at each sample's exit (argmax of the accumulated output).
        exit_steps: ``[B]`` number of steps each sample ran (1-based).
        confidence: ``[B]`` decoded confidence at exit.
        scores: ``[B, C]`` accumulated output at exit.
        stats: ``steps`` (sample-steps simulated), ``mean_steps``, ``max_steps`` (the cap that
            applied), ``saved`` (fraction of sample-steps skipped), ``synaptic_events`` and
            ``neuron_updates`` actually performed, ``wall_time`` (seconds).
        backend: the backend that ran.
    """

    predictions: np.ndarray
    exit_steps: np.ndarray
    confidence: np.ndarray
    scores: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)
    backend: str = ""

    def accuracy(self, labels) -> float:
        """Fraction of predictions equal to ``labels``."""
        labels = np.asarray(labels).reshape(-1)
        if labels.shape != self.predictions.shape:
            raise DataError(f"labels: expected shape {self.predictions.shape}, got {labels.shape}")
        return float(np.mean(self.predictions == labels))


def finish_stats(stats: dict, exit_steps: np.ndarray, last_step: int, wall: float) -> dict:
    """Fill the step statistics shared by all backends."""
    total = int(exit_steps.sum())
    full = last_step * len(exit_steps)
    stats.update(steps=total, mean_steps=total / len(exit_steps) if len(exit_steps) else 0.0, max_steps=int(last_step),
                 saved=1.0 - total / full if full else 0.0, wall_time=wall)
    return stats


# The compiled decoder and driver live in the interpreter's own file (``numba/kernels.py``): numba's
# cache is keyed by the source file of each function, so a cached driver here would not notice a
# change to the interpreter it calls. The names stay importable from here.
confidence, accumulate, trajectories = K.confidence, K.accumulate, K.trajectories


# ------------------------------------------------------------------------------ runners


def resolve_policy(graph, policy: ExitPolicy | None) -> ExitPolicy:
    """The policy to run: ``policy`` if given (checked against ``graph``), else the graph's own."""
    if policy is None:
        policy = get_exit_policy(graph)
        if policy is None:
            raise GraphError("early exit: the graph has no exit policy; calibrate one (sf.exit.calibrate) or pass policy=")
        return policy
    if not isinstance(policy, ExitPolicy):
        raise GraphError(f"argument 'policy': expected an ExitPolicy, got {type(policy).__name__}")
    probe = type(graph)(graph.nodes, graph.edges, dt=graph.dt, integration=graph.integration,
                        metadata={**graph.metadata, "exit_policy": policy.to_dict()})
    check_exit_policy(probe)
    return policy


class ExitSimulator:
    """Early-exit inference on numba-event or numba-clock; the graph is lowered once.

    Args:
        graph: the network; its exit policy is used unless ``policy`` is given.
        backend: "numba-event" (default) or "numba-clock".
        policy: an :class:`~spikeflow.exit.policy.ExitPolicy` overriding the graph's.
        precision: "float64" or "float32" (fixed point has no early exit yet).
        sparse: weight storage, as for :func:`spikeflow.simulate`.
    """

    def __init__(self, graph, backend: str = "numba-event", *, policy: ExitPolicy | None = None, precision: str = "float64",
                 sparse="auto"):
        from spikeflow.backends.numba.engine import Engine

        if backend not in ("numba-event", "numba-clock"):
            raise BackendError(f"argument 'backend': ExitSimulator runs 'numba-event' or 'numba-clock', got {backend!r}")
        if precision not in ("float64", "float32"):
            raise BackendError(f"argument 'precision': early exit runs 'float64' or 'float32', got {precision!r}")
        graph.validate()
        self.policy = resolve_policy(graph, policy)
        self.backend = backend
        flat = graph.flatten()
        self.shapes = {k: flat.nodes[k].shape for k in flat.inputs}
        self.dt = flat.dt
        self.program = Engine(graph, backend=backend, event=backend == "numba-event", precision=precision, sparse=sparse).program
        offset, shape = self.program.outputs[self.policy.output]
        self.n_classes = int(shape[0])
        self._table = np.array([[offset, self.n_classes, 0]], dtype=np.int64)
        p = self.program
        # one sample's scratch, reused by every run (the driver resets it per sample); so one
        # ExitSimulator must not run in two threads at once
        pol = self.policy
        self._rule = np.array([0, pol.threshold, pol.min_steps, pol.decay, pol.temperature], dtype=np.float64)
        self._counts = np.zeros(3, dtype=np.int64)
        self._mem = np.zeros((1, p.mem_size), dtype=p.dtype)
        self._tcount = np.zeros(1, dtype=np.int64)
        self._step_in = np.zeros((1, 1, max(p.n_input, 1)), dtype=p.dtype)
        self._rec = np.zeros((1, 1, self.n_classes), dtype=p.dtype)
        self._single = next(iter(p.inputs)) if len(p.inputs) == 1 and p.n_input > 0 else None

    def _packed(self, inputs, prepare: dict) -> np.ndarray:
        """Inputs as ``[T, B, n_input]`` float64. A float64 array for a one-Input graph is only
        reshaped (a view when its layout allows, no copy); its shape is checked here and its
        values (NaN, inf) by the driver, step by step as it reads them (steps after a sample's
        exit are never read). Anything else goes through ``prepare_inputs``."""
        p = self.program
        name = self._single
        if name is not None and not prepare and type(inputs) is np.ndarray and inputs.dtype == np.float64:
            shape = self.shapes[name]
            if inputs.ndim == len(shape) + 2 and inputs.shape[2:] == tuple(shape):
                return inputs.reshape(inputs.shape[0], inputs.shape[1], p.n_input)
        checked = prepare_inputs(inputs, self.shapes, dt=self.dt, **prepare)
        steps, batch = next(iter(checked.values())).shape[:2]
        if name is not None:
            return checked[name].reshape(steps, batch, p.n_input)
        packed = np.zeros((steps, batch, max(p.n_input, 1)))
        for key, (col, shape) in p.inputs.items():
            packed[:, :, col : col + math.prod(shape)] = checked[key].reshape(steps, batch, -1)
        return packed

    def run(self, inputs, **prepare: Any) -> ExitResult:
        """Run every sample of ``inputs`` (``[T, B, ...]``, a dict by Input name, or events) from rest."""
        packed = self._packed(inputs, prepare)
        steps, batch = packed.shape[:2]
        if steps < 1 or batch < 1:
            raise DataError(f"argument 'inputs': need at least one step and one sample, got [T, B] = [{steps}, {batch}]")
        last = self.policy.steps_for(steps)
        rule, counts = self._rule, self._counts
        rule[0] = last
        counts[:] = 0
        exit_steps = np.zeros(batch, dtype=np.int64)
        preds = np.zeros(batch, dtype=np.int64)
        confs = np.zeros(batch)
        scores = np.zeros((batch, self.n_classes))
        p = self.program
        start = time.perf_counter()
        bad = K.exit_drive(p.ops, p.params, p.iparams, packed, rule, self.backend == "numba-event", self._mem, self._tcount,
                           self._step_in, self._table, self._rec, counts, exit_steps, preds, confs, scores)
        wall = time.perf_counter() - start
        if bad >= 0:  # the checked path names the input and the first bad index
            prepare_inputs(inputs, self.shapes, dt=self.dt, **prepare)
            raise DataError(f"argument 'inputs': sample {bad} has a value that is not finite in {self._mem.dtype} (too large)")
        stats = finish_stats({"synaptic_events": int(counts[0]), "neuron_updates": int(counts[1])}, exit_steps, last, wall)
        return ExitResult(preds, exit_steps, confs, scores, stats, self.backend)


def simulate_exit(graph, inputs, backend: str = "numba-event", *, policy: ExitPolicy | None = None, **options: Any) -> ExitResult:
    """Early-exit inference of ``graph`` on ``inputs`` ``[T, B, ...]`` with ``backend``.

    Args:
        graph: the network; its exit policy is used unless ``policy`` is given.
        inputs: as for :func:`spikeflow.simulate` (arrays, tensors, a dict by Input name, events).
        backend: "numba-event", "numba-clock" or "torch" (batch compaction: finished samples leave
            the batch).
        policy: overrides the graph's policy.
        **options: ``precision``/``sparse`` (numba), ``dtype``/``device``/``batch_size`` (torch),
            and for events ``bin_width``/``sensor_size``.
    """
    from spikeflow.ir import Graph

    if not isinstance(graph, Graph):
        raise GraphError(f"argument 'graph': expected a spikeflow.Graph, got {type(graph).__name__}")
    if backend not in BACKENDS:
        raise BackendError(f"argument 'backend': early exit runs on {BACKENDS}, got {backend!r}")
    prepare = {k: options.pop(k) for k in ("bin_width", "sensor_size") if k in options}
    if backend == "torch":
        from spikeflow.exit.calibration import TorchExitRunner

        graph.validate()
        flat = graph.flatten()
        checked = prepare_inputs(inputs, {k: flat.nodes[k].shape for k in flat.inputs}, dt=flat.dt, **prepare)
        batch_size = options.pop("batch_size", None)
        return TorchExitRunner(graph, policy=policy, **options).run(checked, batch_size=batch_size)
    return ExitSimulator(graph, backend, policy=policy, **options).run(inputs, **prepare)
