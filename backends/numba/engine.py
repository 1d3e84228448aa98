"""The numba engine: a lowered program plus per-sample memory, stepped chunk by chunk."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from spikeflow.errors import BackendError, DataError

from ..result import SimulationResult
from . import kernels as K
from .fixed_point import as_fixed_point, dequantise, quantise
from .program import Program, lower

PRECISIONS = ("float64", "float32", "fixed")


@dataclass
class SparseSteps:
    """One Input's values as nonzero entries: row ``t * batch + b`` of the CSR ``(indptr,
    indices, values)`` lists the flat per-sample indices (ascending, no repeats) and values of step
    ``t`` of sample ``b``. The streaming simulator bins event input into this form, so a large
    sparse input never exists as a dense ``[T, B, ...]`` array."""

    steps: int
    batch: int
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray

    def dense(self, size: int) -> np.ndarray:
        """The values as a dense float64 ``[T, B, size]`` array."""
        out = np.zeros((self.steps * self.batch, size))
        out[np.repeat(np.arange(self.steps * self.batch), np.diff(self.indptr)), self.indices] = self.values
        return out.reshape(self.steps, self.batch, size)


class Engine:
    """Runs a graph with the numba interpreter; memory persists between :meth:`run` calls.

    Args:
        graph: the graph (validated and flattened here).
        backend: name used in messages and results.
        event: scatter only nonzero inputs (event-driven) instead of dense gathers (clock).
        precision: "float64", "float32", "fixed" or a :class:`~.fixed_point.FixedPoint`.
        sparse: weight storage: "auto" (CSR when sparse enough), True (always CSR), False (dense).
        record: node names whose spikes / traces are returned.
        program: an already lowered program (the benchmark builds CSR networks directly).
    """

    def __init__(self, graph=None, *, backend: str, event: bool, precision="float64", sparse="auto",
                 record: Iterable[str] = (), program: Program | None = None):
        record = list(record)
        self.backend, self.event = backend, bool(event)
        self.fixed = as_fixed_point(precision)
        if self.fixed is None and precision not in PRECISIONS:
            raise BackendError(f"argument 'precision': expected one of {PRECISIONS} or a FixedPoint, got {precision!r}")
        self.precision = "fixed" if self.fixed is not None else precision
        if program is None:
            graph = graph.checked()
            dtype = np.float32 if precision == "float32" else np.float64
            program = lower(graph, backend=backend, dtype=dtype, event=self.event, sparse=sparse, fixed=self.fixed, keep=record)
        self.program = program
        self._table, self._slots = self._record_table(record)
        self.mem: np.ndarray | None = None
        self.tcount: np.ndarray | None = None

    def _record_table(self, record: list[str]):
        p = self.program
        unknown = [k for k in record if k not in p.outputs]
        if unknown:
            raise DataError(f"argument 'record': unknown node {unknown[0]!r}; nodes are {sorted(p.outputs)}")
        slots, rows, col = [], [], 0
        wanted = [(k, "outputs", p.outputs[k]) for k in p.output_names]
        for k in record:
            if k in p.spiking:
                wanted.append((k, "spikes", p.outputs[k]))
            wanted.append((k, "traces", p.traces.get(k, p.outputs[k])))
        for name, kind, (off, shape) in wanted:
            size = math.prod(shape)
            rows.append((off, size, col))
            slots.append((name, kind, col, shape))
            col += size
        return np.array(rows, dtype=np.int64).reshape(-1, 3), slots

    def _entries(self, inputs: dict, rows: int):
        """All Inputs' nonzero entries as one CSR over rows ``t * B + b`` in packed-input columns."""
        if len(inputs) == 1:  # one Input: its entries already are the rows, in order
            v = next(iter(inputs.values()))
            if isinstance(v, SparseSteps) and np.all(v.values != 0):
                return np.asarray(v.indptr, np.int64), np.asarray(v.indices, np.int64), np.asarray(v.values, np.float64)
        parts = []
        for name, (col, shape) in self.program.inputs.items():
            v = inputs[name]
            if isinstance(v, SparseSteps):
                r, c, x = np.repeat(np.arange(rows), np.diff(v.indptr)), np.asarray(v.indices, np.int64), np.asarray(v.values, np.float64)
            else:
                flat = v.reshape(rows, -1)
                r, c = np.nonzero(flat)
                x = flat[r, c]
            keep = x != 0  # the lists hold exactly the nonzero inputs, as a dense scan would find
            parts.append((r[keep], c[keep] + col, x[keep]))
        r, c, x = (np.concatenate(a) for a in zip(*parts))
        order = np.lexsort((c, r))
        ptr = np.zeros(rows + 1, np.int64)
        np.cumsum(np.bincount(r, minlength=rows), out=ptr[1:])
        return ptr, c[order].astype(np.int64), x[order]

    def reset(self) -> None:
        """Forget all state: the next call starts from rest."""
        self.mem = self.tcount = None

    def run(self, inputs: dict) -> SimulationResult:
        """Advance by one chunk of float64 inputs ``{Input name: [T, B, ...]}`` (already checked)
        or :class:`SparseSteps`."""
        p = self.program
        first = next(iter(inputs.values()))
        steps, batch = (first.steps, first.batch) if isinstance(first, SparseSteps) else first.shape[:2]
        sparse = any(isinstance(v, SparseSteps) for v in inputs.values())
        lists = bool(p.inputs) and all(p.ops[p.ops[:, 0] == K.OP_INPUT][:, 4] >= 0)
        if sparse and not (lists and self.fixed is None):  # only event-mode float programs read entries
            inputs = {k: v.dense(math.prod(p.inputs[k][1])) if isinstance(v, SparseSteps) else v for k, v in inputs.items()}
            sparse = False
        if self.mem is None:
            self.mem = np.zeros((batch, p.mem_size), dtype=p.dtype)
            self.tcount = np.zeros(batch, dtype=np.int64)
        elif self.mem.shape[0] != batch:
            raise DataError(f"argument 'inputs': batch size {batch} differs from the {self.mem.shape[0]} of earlier steps; call reset() first")
        if sparse:
            packed = None
        elif len(p.inputs) == 1 and p.n_input > 0:  # one input: a view, no copy
            packed = np.ascontiguousarray(inputs[next(iter(p.inputs))]).reshape(steps, batch, p.n_input)
        else:
            packed = np.zeros((steps, batch, max(p.n_input, 1)), dtype=np.float64)
            for name, (col, shape) in p.inputs.items():
                packed[:, :, col : col + math.prod(shape)] = inputs[name].reshape(steps, batch, -1)
        counts = np.zeros(3, dtype=np.int64)
        rec = np.zeros((steps, batch, max(int(self._table[:, 1].sum()) if len(self._table) else 0, 1)), dtype=p.dtype)
        stats: dict = {}
        start = time.perf_counter()
        if self.fixed is not None:
            packed, saturated = quantise(packed, self.fixed.state_bits, self.fixed.state_frac)
            K._run_fixed(p.ops, p.params, p.iparams, self.mem, self.tcount, packed, self._table, rec, self.event, counts, self.fixed.kernel_format())
            stats.update(overflows=int(counts[2]), saturated_inputs=saturated, saturated_params=p.saturated_params)
        elif sparse:
            ptr, idx, val = self._entries(inputs, steps * batch)
            K._run_float_sparse(p.ops, p.params, p.iparams, self.mem, self.tcount, steps, ptr, idx, val.astype(p.dtype), self._table, rec, self.event, counts)
        else:
            K._run_float(p.ops, p.params, p.iparams, self.mem, self.tcount, packed.astype(p.dtype, copy=False), self._table, rec, self.event, counts)
        wall = time.perf_counter() - start
        stats = {"synaptic_events": int(counts[0]), "neuron_updates": int(counts[1]), "steps": int(steps), "wall_time": wall, **stats}
        result = SimulationResult(outputs={}, stats=stats, backend=self.backend)
        for name, kind, col, shape in self._slots:
            values = rec[:, :, col : col + math.prod(shape)].reshape((steps, batch) + tuple(shape))
            if self.fixed is not None:
                values = (values > 0).astype(np.float64) if kind == "spikes" else dequantise(values, self.fixed.state_frac)
            getattr(result, kind)[name] = values.astype(np.float64 if self.fixed is not None else p.dtype, copy=False)
        return result
