"""A memory planner for training on long sequences: how much memory and time one training step
will take, before running it, and the chunk size that fits a memory budget.

:func:`plan` measures a few short probe steps of the graph in a fresh subprocess and extrapolates.
The peak memory of a step is modelled as

    peak(T, k) = c0 + c1 * k + c2 * T + S * ceil(T / k)

(``k``: chunk size; ``S``: bytes of one checkpoint of the network state, counted exactly), which is
how the strategies of :mod:`spikeflow.train.long_sequences` allocate: activations of one chunk,
outputs and their gradient over ``T`` steps (``"full"``, ``"bptt"``), one checkpoint per chunk
(``"bptt"``); ``"tbptt"`` and ``"ottt"`` keep nothing per step (``c2 = 0``). ``"full"`` keeps everything: ``peak(T) = c0 + c2 * T``. The probes run at
``k`` in {16, 48} and ``T`` in {192, 768} (``"full"``: ``T`` in {128, 512}); time per step is
modelled as ``t0 + t1 * T + t2 * T / k`` (a cost per step and one per chunk), a rough figure: the
probes are short.

How memory is measured (:func:`peak_rss_above`): the resident-set high-water mark of a fresh
process (``VmHWM``, reset through ``/proc/self/clear_refs`` just before the step) minus the
resident set before it, with glibc's dynamic mmap threshold off (``MALLOC_MMAP_THRESHOLD_``) so
that memory freed by an earlier step cannot hide a later peak. This sees every allocator (torch,
NumPy, numba; ``tracemalloc`` sees none of torch's) and counts memory that was really touched. It
needs Linux's ``/proc``. The input tensor is allocated before the step, so the figure is the peak
above the input (and the weights).

Example:
    >>> p = plan(graph, T=4000, batch=32, strategy="bptt", memory_budget="64MB")  # doctest: +SKIP
    >>> p.chunk, p.peak_bytes / 2**20, p.step_seconds  # doctest: +SKIP
"""

from __future__ import annotations

import gc
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from spikeflow.errors import DataError

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
PROBE_CHUNKS = (16, 48)
PROBE_LENGTHS = (192, 768)
FULL_PROBE_LENGTHS = (128, 512)
PROBE_REPEATS = 3
CHUNK_CANDIDATES = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


def parse_bytes(value: Any) -> int:
    """Bytes from ``"2GB"``, ``"512 MiB"``, ``"1.5gb"`` or a number of bytes.

    Raises:
        DataError: anything else, or a value that is not positive.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number, unit = float(value), ""
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
        if match is None or match.group(2).lower() not in _UNITS:
            raise DataError(f"memory budget: expected a size like '2GB' or '512MiB' (units {sorted(k for k in _UNITS if k)}), got {value!r}")
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise DataError(f"memory budget: expected a size like '2GB' or a number of bytes, got {type(value).__name__}")
    size = number * _UNITS[unit]
    if not math.isfinite(size) or size <= 0:
        raise DataError(f"memory budget: must be positive, got {value!r}")
    return int(size)


@dataclass
class Plan:
    """A prediction for one training step.

    Attributes:
        strategy, chunk, T, batch: what was planned (``chunk`` None for ``"full"``).
        peak_bytes: predicted peak memory above the input.
        step_seconds: predicted time per step (rough).
        budget_bytes: the budget asked for (None: none).
        fits: the prediction is within the budget (True without a budget).
        checkpoint_bytes: bytes of one state checkpoint.
    """

    strategy: str
    chunk: int | None
    T: int
    batch: int
    peak_bytes: float
    step_seconds: float
    budget_bytes: int | None
    fits: bool
    checkpoint_bytes: int
    model: dict

    def peak_at(self, T: int, chunk: int | None = None) -> float:
        """Predicted peak bytes for another ``T`` (and chunk size) from the same probes."""
        return _peak(self.model, self.strategy, T, chunk or self.chunk)

    def __str__(self) -> str:
        chunk = f", chunk {self.chunk}" if self.chunk else ""
        budget = f" (budget {self.budget_bytes / 2**20:.0f} MiB: {'fits' if self.fits else 'does not fit'})" if self.budget_bytes else ""
        return (f"{self.strategy}{chunk}, T={self.T}, batch {self.batch}: peak {self.peak_bytes / 2**20:.1f} MiB above the input, "
                f"~{self.step_seconds:.2f} s per step{budget}")


def _peak(model: dict, strategy: str, T: int, chunk: int | None) -> float:
    if strategy == "full":
        return model["c0"] + model["c2"] * T
    return model["c0"] + model["c1"] * chunk + model["c2"] * T + model["S"] * math.ceil(T / chunk)


def choose_chunk(model: dict, strategy: str, T: int, budget: int) -> int:
    """The largest chunk size (of :data:`CHUNK_CANDIDATES` and ``T``) whose predicted peak fits.

    Raises:
        DataError: not even the smallest chunk fits.
    """
    fitting = [k for k in sorted({min(k, T) for k in CHUNK_CANDIDATES} | {T}) if _peak(model, strategy, T, k) <= budget]
    if not fitting:
        smallest = min(CHUNK_CANDIDATES[0], T)
        raise DataError(f"plan: no chunk size fits {budget / 2**20:.1f} MiB for {strategy} at T={T}; the smallest chunk ({smallest}) "
                        f"needs {_peak(model, strategy, T, smallest) / 2**20:.1f} MiB: lower the batch or raise the budget")
    return fitting[-1]


def _seconds(model: dict, T: int, chunk: int | None) -> float:
    per_chunk = model["t2"] * T / chunk if chunk else 0.0
    return max(model["t0"], 0.0) + model["t1"] * T + per_chunk


def plan(
    graph: Any, T: int, batch: int, strategy: str = "bptt", chunk: int | None = None, memory_budget: Any = None,
    input_density: float = 0.05, dtype: str = "float32", threads: int | None = None,
) -> Plan:
    """Predict peak memory and time of one training step, and pick a chunk size for a budget.

    Args:
        graph: a spikeflow Graph or a GraphModule (single Input and Output).
        T, batch: sequence length and batch size.
        strategy: ``"full"``, ``"bptt"``, ``"tbptt"`` or ``"ottt"`` (see
            :mod:`spikeflow.train.long_sequences`).
        chunk: chunk size; None: the largest that fits ``memory_budget`` (without a budget, 128).
        memory_budget: e.g. ``"2GB"``; the plan says whether the step fits.
        input_density: fraction of non-zero inputs of the probes (sparse kernels depend on it).
        dtype: ``"float32"`` or ``"float64"``.
        threads: torch/numba threads of the probes (default: torch's current count).

    Raises:
        DataError: bad arguments, or no chunk size fits the budget.
    """
    from spikeflow.io.hdf5 import save
    from spikeflow.ir.graph import Graph
    from spikeflow.train.long_sequences import STRATEGIES

    if strategy not in STRATEGIES:
        raise DataError(f"plan: unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    for name, v in (("T", T), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise DataError(f"plan: {name} must be an integer >= 1, got {v!r}")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise DataError(f"plan: chunk must be an integer >= 1, got {chunk!r}")
    if dtype not in ("float32", "float64"):
        raise DataError(f"plan: dtype must be 'float32' or 'float64', got {dtype!r}")
    budget = parse_bytes(memory_budget) if memory_budget is not None else None
    import torch

    threads = threads or torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "graph.h5"
        if isinstance(graph, Graph):
            save(graph, path)
        elif hasattr(graph, "to_graph"):
            save(graph.to_graph(), path)
        else:
            raise DataError(f"plan: expected a spikeflow Graph or GraphModule, got {type(graph).__name__}")
        model = _probe(path, strategy, batch, input_density, dtype, threads)
    if strategy == "full":
        chunk = None
    elif chunk is None:
        chunk = min(128, T) if budget is None else choose_chunk(model, strategy, T, budget)
    peak = _peak(model, strategy, T, chunk)
    seconds = _seconds(model, T, chunk)
    return Plan(strategy, chunk, T, batch, peak, seconds, budget, budget is None or peak <= budget, int(model["S"]), model)


# ------------------------------------------------------------------------------ measurement


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise DataError(f"memory measurement: no {field} in /proc/self/status (needs Linux)")


def peak_rss_above(fn: Callable[[], Any]) -> tuple[int, float, Any]:
    """Run ``fn()``; return (peak resident bytes above the resident set before it, seconds, result).

    Meaningful in a process started with ``MALLOC_MMAP_THRESHOLD_`` set (see the module docstring).
    """
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set
    base = _status("VmRSS")
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    return _status("VmHWM") - base, seconds, result


def measure_env() -> dict[str, str]:
    """The environment of a measuring subprocess: glibc gives every allocation of 64 KiB or more
    back to the OS when freed."""
    return dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")


def _probe(path: Path, strategy: str, batch: int, density: float, dtype: str, threads: int) -> dict:
    cmd = [sys.executable, "-m", "spikeflow.train.planner", str(path), strategy, str(batch), repr(density), dtype, str(threads)]
    proc = subprocess.run(cmd, env=measure_env(), capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise DataError(f"plan: the probe run failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _probe_main(path: str, strategy: str, batch: int, density: float, dtype: str, threads: int) -> dict:
    """In the probe subprocess: measure short steps and fit the model of :func:`plan`."""
    import torch

    from spikeflow.io.hdf5 import load
    from spikeflow.torch.lowering import to_torch
    from spikeflow.train.long_sequences import state_bytes, train_step

    from spikeflow._threads import set_threads

    set_threads(threads)
    net = to_torch(load(path), dtype=getattr(torch, dtype))
    shape = net.shapes[net.inputs[0]]
    gen = torch.Generator().manual_seed(0)
    loss = lambda y: (y.sum(0) ** 2).mean()  # noqa: E731  # any loss on all outputs: the same buffers as cross-entropy

    def step(T, chunk):
        # the median of PROBE_REPEATS steps: a single resident-set peak of a few MB is noisy, and the
        # fit extrapolates it to long sequences
        x = (torch.rand((T, batch) + shape, generator=gen) < density).to(getattr(torch, dtype))
        runs = []
        for _ in range(PROBE_REPEATS):
            net.zero_grad(set_to_none=True)
            runs.append(peak_rss_above(lambda: train_step(net, x, loss, strategy=strategy, chunk=chunk))[:2])
        peaks, seconds = zip(*runs)
        return float(np.median(peaks)), float(np.median(seconds))

    with torch.no_grad():
        S = state_bytes(net.initial_state(batch))
    if strategy == "full":
        step(FULL_PROBE_LENGTHS[0], 1)  # warm-up: kernels compiled or loaded, allocator caches
        (m0, s0), (m1, s1) = (step(T, 1) for T in FULL_PROBE_LENGTHS)
        c2 = (m1 - m0) / (FULL_PROBE_LENGTHS[1] - FULL_PROBE_LENGTHS[0])
        t1 = (s1 - s0) / (FULL_PROBE_LENGTHS[1] - FULL_PROBE_LENGTHS[0])
        return {"c0": m0 - c2 * FULL_PROBE_LENGTHS[0], "c1": 0.0, "c2": c2, "S": S, "t0": s0 - t1 * FULL_PROBE_LENGTHS[0], "t1": t1, "t2": 0.0}
    (k0, k1), (T0, T1) = PROBE_CHUNKS, PROBE_LENGTHS
    step(T0, k0)  # warm-up
    points = [(k0, T0), (k1, T0), (k0, T1), (k1, T1)]
    measured = [step(T, k) for k, T in points]
    peaks = np.array([m - (S * math.ceil(T / k) if strategy == "bptt" else 0.0) for (k, T), (m, _) in zip(points, measured)])
    if strategy == "bptt":
        c0, c1, c2 = np.linalg.lstsq(np.array([[1.0, k, T] for k, T in points]), peaks, rcond=None)[0]
    else:  # truncated and online strategies keep nothing per step: no T term by construction
        (c0, c1), c2 = np.linalg.lstsq(np.array([[1.0, k] for k, _ in points]), peaks, rcond=None)[0], 0.0
    t0, t1, t2 = np.linalg.lstsq(np.array([[1.0, T, T / k] for k, T in points]), np.array([s for _, s in measured]), rcond=None)[0]
    return {"c0": float(c0), "c1": float(c1), "c2": float(max(c2, 0.0)), "S": S if strategy == "bptt" else 0,
            "t0": float(t0), "t1": float(max(t1, 0.0)), "t2": float(max(t2, 0.0))}


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(_probe_main(args[0], args[1], int(args[2]), float(args[3]), args[4], int(args[5]))))
