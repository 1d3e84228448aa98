"""The numba engine: a lowered program plus per-sample memory, stepped chunk by chunk."""

from __future__ import annotations

import math
import time
from typing import Iterable

import numpy as np

from spikeflow.errors import BackendError, DataError

from ..result import SimulationResult
from . import kernels as K
from .fixed_point import as_fixed_point, dequantise, quantise
from .program import Program, lower

PRECISIONS = ("float64", "float32", "fixed")


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
        self.backend, self.event = backend, bool(event)
        self.fixed = as_fixed_point(precision)
        if self.fixed is None and precision not in PRECISIONS:
            raise BackendError(f"argument 'precision': expected one of {PRECISIONS} or a FixedPoint, got {precision!r}")
        self.precision = "fixed" if self.fixed is not None else precision
        if program is None:
            graph.validate()
            dtype = np.float32 if precision == "float32" else np.float64
            program = lower(graph, backend=backend, dtype=dtype, event=self.event, sparse=sparse, fixed=self.fixed)
        self.program = program
        self._table, self._slots = self._record_table(list(record))
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

    def reset(self) -> None:
        """Forget all state: the next call starts from rest."""
        self.mem = self.tcount = None

    def run(self, inputs: dict[str, np.ndarray]) -> SimulationResult:
        """Advance by one chunk of float64 inputs ``{Input name: [T, B, ...]}`` (already checked)."""
        p = self.program
        first = next(iter(inputs.values()))
        steps, batch = first.shape[:2]
        if self.mem is None:
            self.mem = np.zeros((batch, p.mem_size), dtype=p.dtype)
            self.tcount = np.zeros(batch, dtype=np.int64)
        elif self.mem.shape[0] != batch:
            raise DataError(f"argument 'inputs': batch size {batch} differs from the {self.mem.shape[0]} of earlier steps; call reset() first")
        if len(p.inputs) == 1 and p.n_input > 0:  # one input: a view, no copy
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
