"""Partitioner and placer: slices sized by the memory they really need, placed on PEs and chips.

Memory of one slice of ``n`` neurons on a PE (bytes; every figure is in :data:`BYTES`):

* neuron state: 4 per state variable per neuron (``v``; ``v`` and ``i`` for ``lif_curr_exp``) and the
  parameters (4 each), once if uniform over the population, else per neuron;
* per incoming projection: a header, a ring buffer of ``(max delay + 1) * n`` 4-byte input
  accumulators, the bias (4 per neuron, when nonzero), and the synaptic rows: a convolution keeps
  its int8 kernel and geometry (targets are computed from the kernel); a dense projection keeps
  for each pre neuron with synapses here either a dense row (one byte per neuron of the slice:
  4-bit weight, 3-bit delay) or a CSR row (a 4-byte header and one 4-byte word per synapse:
  16-bit target, weight, delay), whichever is smaller;
* the master population table: 12 per pre slice that sends here (key, mask, row address);
* recording: ``ceil(n / 8)`` bytes of spikes (voltage readouts: 4 per neuron) per recorded tick.

Each population is cut into equal slices of the largest size (at most ``max_atoms_per_core``) whose
every slice fits ``data_bytes``; slices take PEs in execution order, ``app_pes_per_chip`` per chip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spikeflow.errors import BackendError

from .target import Target

BYTES = {"word": 4, "projection_header": 32, "conv_geometry": 64, "csr_row_header": 4, "csr_synapse": 4, "dense_synapse": 1,
         "table_entry": 12, "population_header": 64}


class PlacementError(BackendError):
    """The network does not fit the PEs or chips given (the message names the layer and the bytes)."""


@dataclass
class Slice:
    population: str
    lo: int
    hi: int
    pe: int  # global PE index
    chip: int
    core: int  # PE index on its chip
    memory: dict  # bytes by part

    @property
    def size(self) -> int:
        return self.hi - self.lo

    @property
    def bytes(self) -> int:
        return int(sum(self.memory.values()))


def _state_words(model: str) -> int:
    return {"lif": 1, "if": 1, "cuba": 2, "input": 0}[model]


def slice_memory(pop, model: str, params: dict, incoming: list, n_pre_slices: dict, lo: int, hi: int, record_ticks: int,
                 uniform: bool | None = None) -> dict:
    """Bytes of the slice ``[lo, hi)`` of a population, by part (see the module docstring).

    ``incoming``: ``(projection, frac, pre, post, weight, max delay, bias)`` per projection, its
    synapses sorted by post; ``n_pre_slices``: pre population -> its slice size; ``uniform``: whether
    the population's parameters are uniform (None: look at ``params``).
    """
    n = hi - lo
    mem = {"header": BYTES["population_header"]}
    if model == "input":
        mem["recording"] = math.ceil(n / 8) * record_ticks
        return mem
    if uniform is None:
        uniform = all(np.all(v == v[0]) for v in params.values())
    mem["neurons"] = n * BYTES["word"] * _state_words(model) + BYTES["word"] * len(params) * (1 if uniform else n)
    rings = rows = tables = 0
    for proj, _frac, pre, post, _w, d, bias in incoming:
        a, b = np.searchsorted(post, lo, "left"), np.searchsorted(post, hi, "left")
        rings += BYTES["projection_header"] + (d + 1) * n * BYTES["word"] + (n * BYTES["word"] if bias is not None else 0)
        here_pre = pre[a:b]
        if proj.conv:
            rows += proj.node.weight.size * 1 + BYTES["conv_geometry"]
        senders = np.unique(here_pre)
        if not proj.conv and senders.size:
            csr = senders.size * BYTES["csr_row_header"] + here_pre.size * BYTES["csr_synapse"]
            dense = senders.size * n * BYTES["dense_synapse"]
            rows += min(csr, dense)
        if senders.size:
            tables += np.unique(senders // n_pre_slices[proj.pre]).size * BYTES["table_entry"]
    mem.update(inputs=rings, synapses=rows, table=tables)
    mem["recording"] = (math.ceil(n / 8) if pop.spiking else n * BYTES["word"]) * record_ticks
    return mem


def slice_size(name: str, pop, model: str, params: dict, incoming: list, n_pre_slices: dict, target: Target, record_ticks: int) -> int:
    """The largest slice size whose every slice fits a PE's data memory."""
    size = pop.size
    uniform = all(np.all(v == v[0]) for v in params.values())

    def fits(k: int) -> tuple[bool, int, dict]:
        worst, parts = 0, {}
        pre_slices = {**n_pre_slices, name: k}  # a recurrent population sends in slices of the size being tried
        for lo in range(0, size, k):
            mem = slice_memory(pop, model, params, incoming, pre_slices, lo, min(lo + k, size), record_ticks, uniform)
            total = sum(mem.values())
            if total > worst:
                worst, parts = total, mem
        return worst <= target.data_bytes, worst, parts

    hi = min(size, target.max_atoms_per_core)
    ok, _, _ = fits(hi)
    if ok:
        return hi
    ok, worst, parts = fits(1)
    if not ok:
        biggest = max(parts, key=parts.get)
        raise PlacementError(
            f"layer {name!r}: one neuron needs {worst / 1024:.1f} KB ({biggest} {parts[biggest] / 1024:.1f} KB), "
            f"a PE has {target.data_bytes / 1024:.0f} KB of data memory; prune its fan-in or shorten its delays")
    lo = 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid)[0]:
            lo = mid
        else:
            hi = mid
    return lo


def place(order: list[str], sizes: dict[str, int], slice_of: dict[str, int], memory_of, target: Target) -> list[Slice]:
    """Give every slice a PE in execution order; ``memory_of(name, lo, hi)`` returns its bytes by part."""
    need = {k: math.ceil(sizes[k] / slice_of[k]) for k in order}
    total = sum(need.values())
    if total > target.pes:
        big = max(order, key=lambda k: need[k])
        raise PlacementError(
            f"network needs {total} PEs but {target.chips} chip(s) x {target.app_pes_per_chip} give {target.pes}: "
            f"layer {big!r} alone needs {need[big]} PEs ({sizes[big]} neurons, {slice_of[big]} per PE); "
            f"pass chip={{'chips': {math.ceil(total / target.app_pes_per_chip)}}} or shrink the network")
    out, pe = [], 0
    for k in order:
        for lo in range(0, sizes[k], slice_of[k]):
            hi = min(lo + slice_of[k], sizes[k])
            memory = memory_of(k, lo, hi)
            if sum(memory.values()) > target.data_bytes:  # only a recurrent source's final slicing can tip it over
                raise PlacementError(f"layer {k!r}: slice {lo}..{hi} needs {sum(memory.values())} bytes, a PE has {target.data_bytes}")
            out.append(Slice(k, lo, hi, pe, pe // target.app_pes_per_chip, pe % target.app_pes_per_chip, memory))
            pe += 1
    return out
