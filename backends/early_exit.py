"""Per-sample early exit on the numba backends, and one entry point for every backend.

Each sample is stepped on its own by the numba interpreter (``kernels._run_float``, one step per
call, from compiled code, so no Python runs between steps); after every step the decoder of
:mod:`spikeflow.ir.exit_policy` updates the accumulated output and the sample stops as soon as the
policy says so. The steps it skips are never simulated, so ``stats`` counts only the work done.

The confidence arithmetic lives in one compiled function (:func:`confidence`) that the torch
runner and the calibration reuse, so every backend decides on bit-identical numbers.

Example:
    >>> import numpy as np, spikeflow as sf
    >>> from spikeflow.ir.exit_policy import set_exit_policy
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
from numba import njit

from spikeflow.errors import BackendError, DataError, GraphError
from spikeflow.ir.exit_policy import ExitPolicy, check_exit_policy, get_exit_policy

from .inputs import prepare_inputs
from .numba import kernels as K

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
    stats.update(steps=total, mean_steps=float(exit_steps.mean()) if len(exit_steps) else 0.0, max_steps=int(last_step),
                 saved=1.0 - total / full if full else 0.0, wall_time=wall)
    return stats


# ------------------------------------------------------------------------------ kernels


@njit(cache=True)
def confidence(acc, temperature):
    """``(max softmax(acc / temperature), argmax acc)``; first index wins ties."""
    best, arg = acc[0], 0
    for j in range(1, acc.shape[0]):
        if acc[j] > best:
            best, arg = acc[j], j
    total = 0.0
    for j in range(acc.shape[0]):
        total += math.exp((acc[j] - best) / temperature)
    return 1.0 / total, arg


@njit(cache=True)
def accumulate(acc, active, y, decay, temperature, conf, arg):
    """For rows ``active`` of ``acc``: ``acc = decay * acc + y`` (``y`` row ``i`` for sample
    ``active[i]``), then their confidence and prediction into ``conf[i]``, ``arg[i]``."""
    for i in range(active.shape[0]):
        b = active[i]
        for j in range(acc.shape[1]):
            acc[b, j] = decay * acc[b, j] + y[i, j]
        conf[i], arg[i] = confidence(acc[b], temperature)


@njit(cache=True)
def trajectories(outputs, decay, temperature, conf, pred):
    """Confidence and prediction after every step of ``outputs[T, N, C]`` (into ``conf``, ``pred``)."""
    acc = np.zeros(outputs.shape[2])
    for b in range(outputs.shape[1]):
        acc[:] = 0.0
        for t in range(outputs.shape[0]):
            for j in range(outputs.shape[2]):
                acc[j] = decay * acc[j] + outputs[t, b, j]
            conf[t, b], pred[t, b] = confidence(acc, temperature)


@njit(cache=True)
def _run_exit(ops, params, iparams, mem, tcount, inputs, rec_table, rec, event, counts, last_step, threshold, min_steps,
              decay, temperature, exit_steps, preds, confs, scores):
    n_cls = rec.shape[2]
    acc = np.zeros(n_cls)
    for b in range(mem.shape[0]):
        acc[:] = 0.0
        for t in range(last_step):
            K._run_float(ops, params, iparams, mem[b : b + 1], tcount[b : b + 1], inputs[t : t + 1, b : b + 1], rec_table, rec, event, counts)
            for j in range(n_cls):
                acc[j] = decay * acc[j] + rec[0, 0, j]
            conf, arg = confidence(acc, temperature)
            step = t + 1
            if (step >= min_steps and conf >= threshold) or step == last_step:
                exit_steps[b], preds[b], confs[b] = step, arg, conf
                for j in range(n_cls):
                    scores[b, j] = acc[j]
                break


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
        policy: an :class:`~spikeflow.ir.exit_policy.ExitPolicy` overriding the graph's.
        precision: "float64" or "float32" (fixed point has no early exit yet).
        sparse: weight storage, as for :func:`spikeflow.simulate`.
    """

    def __init__(self, graph, backend: str = "numba-event", *, policy: ExitPolicy | None = None, precision: str = "float64",
                 sparse="auto"):
        from .numba.engine import Engine

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

    def run(self, inputs, **prepare: Any) -> ExitResult:
        """Run every sample of ``inputs`` (``[T, B, ...]``, a dict by Input name, or events) from rest."""
        p = self.program
        checked = prepare_inputs(inputs, self.shapes, dt=self.dt, **prepare)
        steps, batch = next(iter(checked.values())).shape[:2]
        if steps < 1 or batch < 1:
            raise DataError(f"argument 'inputs': need at least one step and one sample, got [T, B] = [{steps}, {batch}]")
        packed = np.zeros((steps, batch, max(p.n_input, 1)), dtype=p.dtype)
        for name, (col, shape) in p.inputs.items():
            packed[:, :, col : col + math.prod(shape)] = checked[name].reshape(steps, batch, -1)
        last = self.policy.steps_for(steps)
        mem = np.zeros((batch, p.mem_size), dtype=p.dtype)
        tcount = np.zeros(batch, dtype=np.int64)
        rec = np.zeros((1, 1, self.n_classes), dtype=p.dtype)
        counts = np.zeros(3, dtype=np.int64)
        exit_steps = np.zeros(batch, dtype=np.int64)
        preds = np.zeros(batch, dtype=np.int64)
        confs = np.zeros(batch)
        scores = np.zeros((batch, self.n_classes))
        pol = self.policy
        start = time.perf_counter()
        _run_exit(p.ops, p.params, p.iparams, mem, tcount, packed, self._table, rec, self.backend == "numba-event", counts,
                  last, float(pol.threshold), int(pol.min_steps), float(pol.decay), float(pol.temperature),
                  exit_steps, preds, confs, scores)
        wall = time.perf_counter() - start
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
        from spikeflow.train.early_exit import TorchExitRunner

        graph.validate()
        flat = graph.flatten()
        checked = prepare_inputs(inputs, {k: flat.nodes[k].shape for k in flat.inputs}, dt=flat.dt, **prepare)
        batch_size = options.pop("batch_size", None)
        return TorchExitRunner(graph, policy=policy, **options).run(checked, batch_size=batch_size)
    return ExitSimulator(graph, backend, policy=policy, **options).run(inputs, **prepare)
