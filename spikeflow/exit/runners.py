"""Early-exit runners: per-sample on the numba backends, batch compaction in torch, one entry point.

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

from spikeflow.backends import backend_names, capabilities
from spikeflow.backends.inputs import prepare_inputs
from spikeflow.backends.numba import kernels as K
from spikeflow.errors import BackendError, DataError, GraphError
from spikeflow.exit.policy import ExitPolicy, check_exit_policy, get_exit_policy


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

        runners = backend_names(early_exit=True, engine="numba")
        if backend not in runners:
            raise BackendError(f"argument 'backend': ExitSimulator runs one of {runners}, got {backend!r}")
        if precision not in ("float64", "float32"):
            raise BackendError(f"argument 'precision': early exit runs 'float64' or 'float32', got {precision!r}")
        flat = graph.checked()
        self.policy = resolve_policy(graph, policy)
        self.backend = backend
        self.shapes = {k: flat.nodes[k].shape for k in flat.inputs}
        self.dt = flat.dt
        self.program = Engine(flat, backend=backend, event=capabilities(backend).event_driven, precision=precision, sparse=sparse).program
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
        backend: a backend with the ``early_exit`` capability (``backend_names(early_exit=True)``:
            "numba-event", "numba-clock", or "torch" with batch compaction: finished samples leave
            the batch).
        policy: overrides the graph's policy.
        **options: ``precision``/``sparse`` (numba), ``dtype``/``device``/``batch_size`` (torch),
            and for events ``bin_width``/``sensor_size``.
    """
    from spikeflow.ir import Graph

    if not isinstance(graph, Graph):
        raise GraphError(f"argument 'graph': expected a spikeflow.Graph, got {type(graph).__name__}")
    runners = backend_names(early_exit=True)
    if backend not in runners:
        raise BackendError(f"argument 'backend': early exit runs on {runners}, got {backend!r}")
    prepare = {k: options.pop(k) for k in ("bin_width", "sensor_size") if k in options}
    if capabilities(backend).engine == "torch":
        flat = graph.checked()
        checked = prepare_inputs(inputs, {k: flat.nodes[k].shape for k in flat.inputs}, dt=flat.dt, **prepare)
        batch_size = options.pop("batch_size", None)
        return TorchExitRunner(graph, policy=policy, **options).run(checked, batch_size=batch_size)
    return ExitSimulator(graph, backend, policy=policy, **options).run(inputs, **prepare)


# ------------------------------------------------------------------------------ torch runner


class TorchExitRunner:
    """Early-exit inference in PyTorch with batch compaction: finished samples leave the batch, so
    later steps cost less.

    The lowered module runs chunks of steps through its public state API
    (:meth:`~spikeflow.torch.lowering.GraphModule.run_chunk`: one GEMM over ``k * batch`` rows and
    one fused neuron scan per layer and chunk; the neurons' coefficients are discretised once per
    run), the chunk's outputs are decoded in one compiled call and exits decided per step, and
    finished samples are dropped from the state
    (:meth:`~spikeflow.torch.lowering.GraphModule.select`) after each chunk. With
    ``run(..., batch_size=n)`` at most ``n`` samples are in flight and waiting samples join from rest
    (:meth:`~spikeflow.torch.lowering.GraphModule.join`) in the place of finished ones. A sample
    stopping inside a chunk wastes the rest of that chunk's work, never its answer.

    Args:
        graph_or_net: a :class:`spikeflow.Graph` or a module made by :func:`spikeflow.to_torch`.
        policy: overrides the graph's exit policy.
        dtype: torch dtype (float64 gives the same exits as the numba backends).
        device: torch device.
        chunk: steps per chunk; None (default) adapts it: every step up to ``min_steps`` in one
            chunk (no sample can stop there); a first chunk up to the calibrated mean exit step
            (``policy.calibration["validation_mean_steps"]``, when the policy has one); then as
            many steps as keep the expected wasted work (samples stopping inside the chunk) below
            the fixed cost of one more chunk, at most ``max_chunk``.
        max_chunk: the largest adaptive chunk (bounds the waste to ``max_chunk - 1`` steps a sample).
        chunk_cost: the fixed cost of one chunk (Python, one call per layer, the input gather
            and state compaction) in sample-steps of work; it sets how eagerly the adaptive chunk
            grows. The default is measured on the DigitSaccades MLP on CPU (~0.45 ms a chunk,
            ~7 us a sample-step).
    """

    def __init__(self, graph_or_net, *, policy: ExitPolicy | None = None, dtype=None, device: str = "cpu",
                 chunk: int | None = None, max_chunk: int = 6, chunk_cost: float = 64.0):
        import torch

        from spikeflow.backends.torch_backend import dense_counts
        from spikeflow.ir import Graph
        from spikeflow.torch.lowering import GraphModule, to_torch

        if isinstance(graph_or_net, Graph):
            graph, net = graph_or_net, to_torch(graph_or_net, dtype=dtype or torch.float64)
        elif isinstance(graph_or_net, GraphModule):
            graph, net = graph_or_net.to_graph(), graph_or_net
        else:
            raise GraphError(f"TorchExitRunner: expected a spikeflow Graph or a module from sf.to_torch, got {type(graph_or_net).__name__}")
        for name, value in (("chunk", chunk), ("max_chunk", max_chunk)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise DataError(f"argument {name!r}: expected an integer >= 1, got {value!r}")
        if isinstance(chunk_cost, bool) or not isinstance(chunk_cost, (int, float)) or not chunk_cost >= 0:
            raise DataError(f"argument 'chunk_cost': expected a number >= 0, got {chunk_cost!r}")
        self.policy = resolve_policy(graph, policy)
        self.dtype, self.device = dtype or torch.float64, torch.device(device)
        self.net = net.to(device=self.device, dtype=self.dtype).eval()
        self.chunk, self.max_chunk, self.chunk_cost = chunk, max_chunk, float(chunk_cost)
        self._counts = dense_counts(graph)
        mean = (self.policy.calibration or {}).get("validation_mean_steps")
        self._prior = int(round(mean)) if isinstance(mean, (int, float)) and math.isfinite(mean) and mean >= 1 else None

    def run(self, inputs, batch_size: int | None = None):
        """Run ``inputs`` (``[T, B, ...]`` array/tensor or a dict by Input name) from rest.

        ``batch_size`` caps the samples in flight (default: all of them). With continuous batching,
        a sample that exits makes room for the next one in input order at the next chunk, so the
        chunks stay full instead of dwindling to the slowest samples of each batch.
        """
        import torch


        net = self.net
        x = inputs if isinstance(inputs, dict) else {net.inputs[0]: inputs}
        if sorted(x) != net.inputs:
            raise DataError(f"argument 'inputs': expected tensors for {net.inputs}, got {sorted(x)}")
        x = {k: torch.as_tensor(v).to(device=self.device, dtype=self.dtype) for k, v in x.items()}
        for k, v in x.items():
            if v.dim() != len(net.shapes[k]) + 2 or tuple(v.shape[2:]) != tuple(net.shapes[k]):
                raise DataError(f"argument 'inputs' (Input {k!r}): expected shape [T, B, {', '.join(map(str, net.shapes[k]))}], got {list(v.shape)}")
        steps, batch = next(iter(x.values())).shape[:2]
        if steps < 1 or batch < 1:
            raise DataError(f"argument 'inputs': need at least one step and one sample, got [T, B] = [{steps}, {batch}]")
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
            raise DataError(f"argument 'batch_size': expected an integer >= 1 or None, got {batch_size!r}")
        start = time.perf_counter()
        counts = [0, 0]
        with torch.no_grad(), net.reuse_coefficients():
            preds, steps_run, confs, scores = self._run_pool(x, batch_size or batch, counts)
        wall = time.perf_counter() - start
        stats = finish_stats({"synaptic_events": counts[0], "neuron_updates": counts[1]}, steps_run, self.policy.steps_for(steps), wall)
        return ExitResult(preds, steps_run, confs, scores, stats, "torch")

    def _next_chunk(self, done: np.ndarray, last: int, hazard: float) -> int:
        """Steps of the next chunk for samples that have run ``done`` steps each, of which a
        fraction ``hazard`` stopped per open step lately."""
        left = int((last - done).max())  # no chunk runs past every sample's last step
        if self.chunk is not None:
            return min(self.chunk, left)
        lead = self.policy.min_steps - int(done.max())
        if lead > 1:  # nobody can stop before min_steps: no waste
            return min(lead, left)
        if not done.any() and self._prior is not None:  # no stopping rate seen yet: the calibrated mean exit
            return max(1, min(self._prior, self.max_chunk, left))
        # Waste of a k-step chunk ~ active * hazard * k * (k - 1) / 2 sample-steps; one more
        # chunk costs chunk_cost. Per step, chunk_cost / k + active * hazard * (k - 1) / 2 is
        # smallest at k = sqrt(2 * chunk_cost / (active * hazard)).
        k = self.max_chunk if hazard <= 0 else int(round(math.sqrt(2.0 * self.chunk_cost / (len(done) * hazard))))
        return max(1, min(k, self.max_chunk, left))

    def _window(self, v, done: np.ndarray, k: int, ids: np.ndarray, last: int):
        """The next ``k`` steps of the samples ``ids`` of one input ``v[T, B, ...]``, each from its
        own step ``done``, contiguous ``[k, len(ids), ...]``; steps past ``last`` repeat the last
        one (a sample exits at ``last`` at the latest, so their results are never used)."""
        import torch

        t0 = int(done[0])
        uniform = bool((done == t0).all()) and int(ids[-1]) - int(ids[0]) == len(ids) - 1
        if uniform and t0 + k <= last:  # one block of steps and samples: a slice
            block = v[t0 : t0 + k, int(ids[0]) : int(ids[-1]) + 1]
            return block.contiguous() if self.device.type != "cpu" else torch.from_numpy(np.ascontiguousarray(block.numpy()))
        rows = np.minimum(done[None, :] + np.arange(k)[:, None], last - 1)
        if self.device.type != "cpu":
            return v[torch.as_tensor(rows, device=self.device), torch.as_tensor(ids, device=self.device)[None, :]]
        # Serial NumPy copies (fancy indexing): torch's threaded copies stall for milliseconds on a busy machine.
        return torch.from_numpy(v.numpy()[rows, ids[None, :]])

    def _run_pool(self, x: dict, size: int, counts: list):
        """Exits of every sample, at most ``size`` in flight (continuous batching)."""
        import torch


        net, pol = self.net, self.policy
        steps, total = next(iter(x.values())).shape[:2]
        last = pol.steps_for(steps)
        synapses, neurons = self._counts
        decay, temperature = float(pol.decay), float(pol.temperature)
        width = net.shapes[pol.output][0]
        out = (np.zeros(total, np.int64), np.zeros(total, np.int64), np.zeros(total), np.zeros((total, width)))
        # the samples in flight: input index, steps run, accumulated output, network state
        ids, done, acc, state = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, width)), None
        admitted, hazard = 0, 0.0
        while admitted < total or len(ids):
            if admitted < total and len(ids) < size:
                new = np.arange(admitted, min(total, admitted + size - len(ids)))
                admitted += len(new)
                fresh = net.initial_state(len(new))
                state = net.join(state, fresh) if len(ids) else fresh
                ids, done = np.concatenate([ids, new]), np.concatenate([done, np.zeros(len(new), np.int64)])
                acc = np.concatenate([acc, np.zeros((len(new), width))])
            k, n = self._next_chunk(done, last, hazard), len(ids)
            y, state = net.run_chunk({name: self._window(v, done, k, ids, last) for name, v in x.items()}, state)
            y = y[pol.output] if isinstance(y, dict) else y
            counts[0] += synapses * k * n
            counts[1] += neurons * k * n
            # Decode the whole chunk at once: row 0 carries the accumulated output in (decay * 0 +
            # acc == acc exactly), rows 1..k are the chunk's steps, as the step-by-step decoder.
            seq = np.empty((k + 1, n, width))
            seq[0] = acc
            seq[1:] = y.detach().cpu().double().numpy()
            conf, pred = np.empty((k + 1, n)), np.empty((k + 1, n), dtype=np.int64)
            trajectories(seq, decay, temperature, conf, pred)
            conf, pred = conf[1:], pred[1:]
            ts = done[None, :] + np.arange(1, k + 1)[:, None]  # the step each row ends, per sample
            open_rows = (ts >= pol.min_steps) & (ts <= last)
            stop_rows = ((conf >= pol.threshold) & open_rows) | (ts == last)
            stops = stop_rows.any(axis=0)
            stopped = int(stops.sum())
            if stopped:
                cols = np.flatnonzero(stops)
                first = stop_rows[:, cols].argmax(axis=0)  # the row of each exit within the chunk
                finished = ids[cols]
                out[0][finished], out[1][finished], out[2][finished] = pred[first, cols], ts[first, cols], conf[first, cols]
                out[3][finished] = _accumulated(acc[cols], seq[1:, cols], first, decay)
            if open_rows.any():  # the stopping rate per open step over this chunk
                hazard = stopped / int(open_rows.sum())
            keep = np.flatnonzero(~stops)
            if len(keep):
                acc = _accumulated(acc[keep], seq[1:, keep], np.full(len(keep), k - 1), decay)
            else:
                acc = acc[:0]
            if stopped:
                ids, done = ids[keep], done[keep]
                if len(keep):
                    state = net.select(state, torch.as_tensor(keep, device=self.device))
            done = done + k
        return out


def _accumulated(acc: np.ndarray, ys: np.ndarray, upto: np.ndarray, decay: float) -> np.ndarray:
    """Row ``i`` of ``acc`` after the steps ``ys[0 .. upto[i], i]`` (``acc = decay * acc + y``, in
    the decoder's order, so the scores equal the compiled decoder's bit for bit)."""
    acc = acc.copy()
    for j in range(int(upto.max()) + 1):
        live = upto >= j
        acc[live] = decay * acc[live] + ys[j, live]
    return acc
