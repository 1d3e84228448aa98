"""Sparse, event-driven EGRU inference with numba: work proportional to the events.

Each step touches only the weight rows of inputs and units that are nonzero (``y`` is zero for
units without an event), from dense or CSR (pruned) weights. The float operations are those of
the torch module's fused scan (:mod:`spikeflow.backends.numba.egru_kernels`) in the same order, so in
float64 the events equal the torch forward's bit for bit.

Example::

    stream = EGRUStream(node)                  # batch 1, one token or frame at a time
    out = stream.step(x_t)
    res = run_egru_events([node1, node2], x)   # whole sequence (T, in) or (T, B, in)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from spikeflow.errors import DataError, GraphError
from spikeflow.ir.egru import EGRU

from .egru_kernels import _accumulate, _accumulate_csr, _cell

WEIGHT_MODES = ("auto", "dense", "csr")
AUTO_CSR_SPARSITY = 0.5
"""``weights="auto"`` stores a matrix as CSR when at least this fraction of it is zero."""


def to_csr(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of ``weight.T``: row ``j`` lists the outputs that input ``j`` reaches (the event fan-out)."""
    wt = np.ascontiguousarray(weight.T)
    rows, cols = np.nonzero(wt)
    indptr = np.zeros(wt.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=wt.shape[0]), out=indptr[1:])
    return indptr, cols.astype(np.int64), wt[rows, cols]


class _Weights:
    """One weight matrix prepared for event-driven accumulation: dense ``W.T`` or CSR of ``W.T``."""

    def __init__(self, weight: np.ndarray, mode: str, dtype):
        sparsity = 1.0 - np.count_nonzero(weight) / weight.size
        self.csr = mode == "csr" or (mode == "auto" and sparsity >= AUTO_CSR_SPARSITY)
        # work per input event: the stored weights of its row (every row is full when dense)
        self.fan_out = np.count_nonzero(weight, axis=0) if self.csr else np.full(weight.shape[1], weight.shape[0])
        self.fan_out = self.fan_out.astype(np.int64)
        if self.csr:
            indptr, indices, data = to_csr(weight)
            self.indptr, self.indices, self.data = indptr, indices, data.astype(dtype)
            self.wt = np.zeros((0, 0), dtype=dtype)
        else:
            self.wt = np.ascontiguousarray(weight.T, dtype=dtype)
            self.indptr = self.indices = np.zeros(0, dtype=np.int64)
            self.data = np.zeros(0, dtype=dtype)

    @property
    def nbytes(self) -> int:
        return self.wt.nbytes + self.indptr.nbytes + self.indices.nbytes + self.data.nbytes


@njit(cache=True)
def _project(acc, bias, x, csr, wt, indptr, indices, data, fan_out):
    acc[:] = bias
    if csr:
        _accumulate_csr(acc, indptr, indices, data, x)
    else:
        _accumulate(acc, wt, x)
    ops = 0
    for j in range(x.shape[0]):
        if x[j] != 0:
            ops += fan_out[j]
    return ops


@njit(cache=True)
def _layer_step(x, c, y, theta, keep, xp, hp, work,
                csr_ih, wt_ih, ip_ih, ix_ih, d_ih, fo_ih, b_ih,
                csr_hh, wt_hh, ip_hh, ix_hh, d_hh, fo_hh, b_hh):
    """One step of one layer for one sample; updates ``c`` and ``y`` in place.

    Returns (events emitted, synaptic operations).
    """
    ops = _project(xp, b_ih, x, csr_ih, wt_ih, ip_ih, ix_ih, d_ih, fo_ih)
    ops += _project(hp, b_hh, y, csr_hh, wt_hh, ip_hh, ix_hh, d_hh, fo_hh)
    events = _cell(xp, hp, c, theta, keep, work[0], work[1], work[2], work[3], y, c)
    return events, ops


@njit(cache=True)
def _layer_sequence(x, c, y, out, theta, keep, xp, hp, work,
                    csr_ih, wt_ih, ip_ih, ix_ih, d_ih, fo_ih, b_ih,
                    csr_hh, wt_hh, ip_hh, ix_hh, d_hh, fo_hh, b_hh):
    events, ops = 0, 0
    for t in range(x.shape[0]):
        ev, op = _layer_step(x[t], c, y, theta, keep, xp, hp, work,
                             csr_ih, wt_ih, ip_ih, ix_ih, d_ih, fo_ih, b_ih,
                             csr_hh, wt_hh, ip_hh, ix_hh, d_hh, fo_hh, b_hh)
        out[t] = y
        events += ev
        ops += op
    return events, ops


class _Layer:
    def __init__(self, node: EGRU, weights: str, dtype):
        n = node.hidden_size
        self.n, self.input_size = n, node.input_size
        self.ih = _Weights(node.weight_ih, weights, dtype)
        self.hh = _Weights(node.weight_hh, weights, dtype)
        self.b_ih = node.bias_ih.astype(dtype)
        self.b_hh = node.bias_hh.astype(dtype)
        self.theta = node.threshold.astype(dtype)
        self.keep = np.zeros(n, dtype=np.uint8)
        self.xp, self.hp = np.empty(3 * n, dtype), np.empty(3 * n, dtype)
        self.work = np.empty((4, n), dtype)
        self.c, self.y = np.zeros(n, dtype), np.zeros(n, dtype)

    def args(self):
        ih, hh = self.ih, self.hh
        return (self.theta, self.keep, self.xp, self.hp, self.work,
                ih.csr, ih.wt, ih.indptr, ih.indices, ih.data, ih.fan_out, self.b_ih,
                hh.csr, hh.wt, hh.indptr, hh.indices, hh.data, hh.fan_out, self.b_hh)


def _prepare(nodes, weights: str, dtype) -> list[_Layer]:
    nodes = [nodes] if isinstance(nodes, EGRU) else list(nodes)
    if weights not in WEIGHT_MODES:
        raise GraphError(f"EGRU runner: weights must be one of {WEIGHT_MODES}, got {weights!r}")
    if not nodes:
        raise GraphError("EGRU runner: no EGRU nodes given")
    for i, node in enumerate(nodes):
        if not isinstance(node, EGRU):
            raise GraphError(f"EGRU runner: layer {i} is a {type(node).__name__}, not an EGRU node")
        if i and node.input_size != nodes[i - 1].hidden_size:
            raise GraphError(f"EGRU runner: layer {i} expects {node.input_size} inputs, layer {i - 1} gives {nodes[i - 1].hidden_size}")
        if i < len(nodes) - 1 and node.trace_decay != 0:
            raise GraphError(f"EGRU runner: layer {i} has an output trace; only the last layer may")
    return [_Layer(node, weights, dtype) for node in nodes]


@dataclass
class EGRUStats:
    """Work done: steps, events per layer, synaptic operations (weight rows touched x fan-out)."""

    steps: int = 0
    events: list[int] = field(default_factory=list)
    synaptic_ops: int = 0
    neuron_updates: int = 0


class EGRUStream:
    """Batch-1 streaming EGRU stack: feed one input vector per :meth:`step`.

    Args:
        nodes: an EGRU node or a list of stacked EGRU nodes.
        weights: ``"dense"``, ``"csr"`` or ``"auto"`` (CSR for matrices at least half zero).
        dtype: float64 (bit-identical to torch) or float32.
    """

    def __init__(self, nodes, weights: str = "auto", dtype=np.float64):
        self.dtype = np.dtype(dtype)
        self.layers = _prepare(nodes, weights, self.dtype)
        self.trace_decay = float((nodes if isinstance(nodes, EGRU) else nodes[-1]).trace_decay)
        self.reset()

    def reset(self) -> None:
        """Zero the state and the statistics."""
        for layer in self.layers:
            layer.c[:] = 0
            layer.y[:] = 0
        self.trace = np.zeros(self.layers[-1].n, self.dtype)
        self.stats = EGRUStats(events=[0] * len(self.layers))

    def step(self, x: np.ndarray) -> np.ndarray:
        """Advance one step with input ``x`` (input_size,); returns the output (a copy)."""
        h = np.asarray(x, dtype=self.dtype)
        if h.shape != (self.layers[0].input_size,):
            raise DataError(f"EGRUStream.step: expected input shape ({self.layers[0].input_size},), got {h.shape}")
        for i, layer in enumerate(self.layers):
            events, ops = _layer_step(h, layer.c, layer.y, *layer.args())
            self.stats.events[i] += events
            self.stats.synaptic_ops += ops
            self.stats.neuron_updates += layer.n
            h = layer.y
        self.stats.steps += 1
        if self.trace_decay:
            a = self.trace_decay
            self.trace = a * self.trace + (1 - a) * h
            return self.trace.copy()
        return h.copy()


@dataclass
class EGRUResult:
    """Output (T, [B,] H), the events ``y`` of every layer, and the work done."""

    output: np.ndarray
    events: list[np.ndarray]
    stats: EGRUStats


def run_egru_events(nodes, x: np.ndarray, weights: str = "auto", dtype=np.float64) -> EGRUResult:
    """Run an EGRU stack over a whole sequence ``x`` (T, in) or (T, B, in), state starting at zero."""
    x = np.asarray(x)
    batched = x.ndim == 3
    stream = EGRUStream(nodes, weights, dtype)
    first = stream.layers[0]
    if x.ndim not in (2, 3) or x.shape[-1] != first.input_size:
        raise DataError(f"run_egru_events: expected input (T, [B,] {first.input_size}), got {x.shape}")
    xb = (x if batched else x[:, None]).astype(stream.dtype)
    T, B = xb.shape[:2]
    events = [np.zeros((T, B, layer.n), stream.dtype) for layer in stream.layers]
    stats = EGRUStats(steps=T, events=[0] * len(stream.layers))
    for b in range(B):
        stream.reset()
        h = np.ascontiguousarray(xb[:, b])
        for i, layer in enumerate(stream.layers):
            out = np.zeros((T, layer.n), stream.dtype)
            ev, ops = _layer_sequence(h, layer.c, layer.y, out, *layer.args())
            events[i][:, b] = out
            stats.events[i] += ev
            stats.synaptic_ops += ops
            stats.neuron_updates += T * layer.n
            h = out
    output = events[-1]
    if stream.trace_decay:
        a, trace = stream.trace_decay, np.zeros((B, stream.layers[-1].n), stream.dtype)
        output = np.empty_like(output)
        for t in range(T):
            trace = a * trace + (1 - a) * events[-1][t]
            output[t] = trace
    if not batched:
        output, events = output[:, 0], [e[:, 0] for e in events]
    return EGRUResult(output, events, stats)
