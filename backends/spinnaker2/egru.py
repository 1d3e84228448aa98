"""EGRU layers on SpiNNaker 2: value-event populations with CSR rows, in FP32 as on the M4F.

An EGRU graph (``Input -> EGRU [-> EGRU ...] -> Output``) exports in float32, the arithmetic of the
EGRU language model on SpiNNaker 2 (Nazeer et al.): each slice of units keeps, for its three gates,
the CSR rows of its input weights and of its recurrent weights (only nonzero weights: a pruned layer
is small), the biases, the thresholds and the state ``c``. A unit whose state crosses its threshold
sends a packet carrying its value ``y``; the recurrent packets arrive one tick later. A PE's gate
accumulators start from the biases and add ``weight * payload`` per packet in the order the packets
come (ascending source index), then the cell of :func:`spikeflow.backends.numba.kernels._egru_cell`
(the same function) updates the slice: so the executor reproduces ``sf.simulate(graph,
precision="float32")`` event for event.

Memory of a slice of ``n`` units: 72 bytes per unit (``c``, ``y``, threshold, six biases, three input
accumulators and a two-slot ring of three recurrent ones), per sending neuron with weights here a
4-byte row header and 6 bytes per nonzero weight (16-bit target, FP32 weight), 12 bytes of master
table per sending slice, and an event bitmap per recorded tick.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from numba import njit

from spikeflow.errors import FormatError
from spikeflow.ir import nodes as n
from spikeflow.ir.egru import EGRU

from ..numba.kernels import _egru_cell
from .check import DesignRuleError
from .partition import PlacementError, Slice, place
from .route import index_bits, route, slice_key

UNIT_BYTES = 72
ROW_HEADER, SYNAPSE, TABLE_ENTRY, HEADER = 4, 6, 12, 64


def is_egru_graph(graph) -> bool:
    return any(isinstance(v, EGRU) for v in graph.flatten().nodes.values())


def check(graph) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """``(populations in order, EGRU -> its source, Output -> EGRU)``; refuses anything else."""
    g = graph.validate().flatten()
    order = g.order()
    src = {k: sorted(a for a, b in g.edges if b == k) for k in g.nodes}
    feeds, outputs = {}, {}
    for name in order:
        node = g.nodes[name]
        if isinstance(node, n.Input):
            continue
        if not isinstance(node, (EGRU, n.Output)):
            raise DesignRuleError(f"node {name!r} of type {type(node).__name__}: an EGRU export (FP32) holds only Input, EGRU and "
                                  "Output nodes; export spiking layers separately")
        if len(src[name]) != 1 or not isinstance(g.nodes[src[name][0]], (n.Input, EGRU)):
            raise DesignRuleError(f"node {name!r}: must have exactly one source, an Input or an EGRU; got {src[name]}")
        if isinstance(node, EGRU):
            if np.any(np.asarray(node.trace_decay) != 0):
                raise DesignRuleError(f"node {name!r}: EGRU with an output trace (trace_decay != 0) is not supported on SpiNNaker 2")
            feeds[name] = src[name][0]
        else:
            if not isinstance(g.nodes[src[name][0]], EGRU):
                raise DesignRuleError(f"node {name!r}: an output must show an EGRU layer")
            outputs[name] = src[name][0]
    pops = [k for k in order if isinstance(g.nodes[k], (n.Input, EGRU))]
    return pops, feeds, outputs


def _csr_by_pre(weight: np.ndarray, hidden: int):
    """Nonzero weights of a ``[3H, n_pre]`` matrix as ``(pre, gate, unit, w)``, sorted by pre."""
    rows, cols = np.nonzero(weight)
    order = np.lexsort((rows, cols))
    rows, cols = rows[order], cols[order]
    return cols.astype(np.int64), (rows // hidden).astype(np.int64), (rows % hidden).astype(np.int64), weight[rows, cols].astype(np.float32)


def slice_bytes(units: int, rows: list, record_ticks: int) -> dict:
    """Bytes of a slice of ``units`` units; ``rows``: ``(senders, synapses, sending slices)`` per projection."""
    mem = {"header": HEADER, "neurons": UNIT_BYTES * units, "synapses": 0, "table": 0, "recording": math.ceil(units / 8) * record_ticks}
    for senders, synapses, slices in rows:
        mem["synapses"] += senders * ROW_HEADER + synapses * SYNAPSE
        mem["table"] += slices * TABLE_ENTRY
    return mem


def plan(graph, target, record_ticks: int):
    """Slices, placement and routing of an EGRU graph; returns a dict the writer and report use."""
    g = graph.flatten()
    pops, feeds, outputs = check(graph)
    shapes = graph.shapes()
    sizes = {k: math.prod(shapes[k]) for k in pops}
    proj = {}  # (post, part) -> (pre, synapses)
    for name, pre in feeds.items():
        node = g.nodes[name]
        proj[(name, "ih")] = (pre, _csr_by_pre(np.asarray(node.weight_ih, np.float64), node.hidden_size))
        proj[(name, "hh")] = (name, _csr_by_pre(np.asarray(node.weight_hh, np.float64), node.hidden_size))
    slice_of = {k: min(sizes[k], target.max_atoms_per_core) for k in pops}

    def memory(name, lo, hi, slices):
        rows = []
        for part in ("ih", "hh"):
            pre, (p, _gate, unit, _w) = proj[(name, part)]
            here = (unit >= lo) & (unit < hi)
            senders = np.unique(p[here])
            rows.append((senders.size, int(here.sum()), np.unique(senders // slices[pre]).size if senders.size else 0))
        return slice_bytes(hi - lo, rows, record_ticks)

    def input_memory(name, lo, hi):
        return {"header": HEADER, "recording": math.ceil((hi - lo) / 8) * record_ticks}

    for name in feeds:
        def worst(k):
            slices = {**slice_of, name: k}
            return max(sum(memory(name, lo, min(lo + k, sizes[name]), slices).values()) for lo in range(0, sizes[name], k))
        k = slice_of[name]
        if worst(1) > target.data_bytes:
            raise PlacementError(f"layer {name!r}: one unit needs {worst(1) / 1024:.1f} KB, a PE has {target.data_bytes / 1024:.0f} KB "
                                 "of data memory; prune its weights further")
        lo_k, hi_k = 1, k
        if worst(hi_k) <= target.data_bytes:
            lo_k = hi_k
        while hi_k - lo_k > 1:
            mid = (lo_k + hi_k) // 2
            if worst(mid) <= target.data_bytes:
                lo_k = mid
            else:
                hi_k = mid
        slice_of[name] = lo_k
    slices = place(pops, sizes, slice_of, lambda k, lo, hi: memory(k, lo, hi, slice_of) if k in feeds else input_memory(k, lo, hi), target)
    bits = index_bits(max(slice_of.values()))
    keys = {s.pe: slice_key(s.pe, bits) for s in slices}
    first = {}
    for s in slices:
        first.setdefault(s.population, s.pe)
    sources = []
    for s in slices:
        dests = set()
        for (post, _part), (pre, (p, _gate, unit, _w)) in proj.items():
            if pre != s.population:
                continue
            a, b = np.searchsorted(p, s.lo), np.searchsorted(p, s.hi)
            for k in np.unique(unit[a:b] // slice_of[post]):
                t = slices[first[post] + int(k)]
                dests.add((t.chip, t.core))
        sources.append((keys[s.pe][0], keys[s.pe][1], s.chip, sorted(dests)))
    tables, before = route(sources, target)
    return {"graph": g, "pops": pops, "feeds": feeds, "outputs": outputs, "sizes": sizes, "proj": proj, "slices": slices,
            "slice_of": slice_of, "keys": keys, "bits": bits, "tables": tables, "before": before, "first": first, "shapes": shapes}


def write(p: dict, tmp: Path) -> None:
    """PE images and network.json of an EGRU plan (routing.h5 and graph.h5 as for spiking exports)."""
    import h5py

    g = p["graph"]
    for s in p["slices"]:
        key, mask = p["keys"][s.pe]
        with h5py.File(tmp / f"pe_{s.pe:04d}.h5", "w") as f:
            f.attrs.update(population=s.population, model="egru" if s.population in p["feeds"] else "input", lo=s.lo, hi=s.hi,
                           chip=s.chip, core=s.core, pe=s.pe, key=key, mask=mask, memory=json.dumps(s.memory), subtract=True)
            nrn = f.create_group("neurons")
            if s.population not in p["feeds"]:
                continue
            node = g.nodes[s.population]
            h = node.hidden_size
            units = np.arange(s.lo, s.hi)
            nrn.create_dataset("threshold", data=np.broadcast_to(np.asarray(node.threshold, np.float32), (h,))[units])
            for part in ("ih", "hh"):
                bias = np.asarray(getattr(node, f"bias_{part}"), np.float32).reshape(3, h)[:, units]
                nrn.create_dataset(f"bias_{part}", data=bias)
                pre, (pp, gate, unit, w) = p["proj"][(s.population, part)]
                here = (unit >= s.lo) & (unit < s.hi)
                grp = f.create_group(f"projection_{part}")
                grp.attrs.update(name=f"{s.population}:weight_{part}", pre=pre, delay=int(part == "hh"))
                senders = np.unique(pp[here] // p["slice_of"][pre])
                grp.create_dataset("table_key", data=np.array([p["keys"][p["first"][pre] + int(k)][0] for k in senders], np.int64))
                grp.create_dataset("table_mask", data=np.array([p["keys"][p["first"][pre] + int(k)][1] for k in senders], np.int64))
                rows_pre, start = np.unique(pp[here], return_index=True)
                grp.create_dataset("row_pre", data=rows_pre.astype(np.int64))
                grp.create_dataset("row_ptr", data=np.append(start, int(here.sum())).astype(np.int64))
                grp.create_dataset("target", data=(gate[here] * (s.hi - s.lo) + unit[here] - s.lo).astype(np.uint16))
                grp.create_dataset("weight", data=w[here])
    pops = [{"name": k, "type": "spike_list" if k not in p["feeds"] else "egru", "size": p["sizes"][k], "shape": list(p["shapes"][k]),
             "max_atoms_per_core": p["slice_of"][k]} for k in p["pops"]]
    projs = [{"pre": pre, "post": post, "layer": f"{post}:weight_{part}", "type": "csr_fp32", "synapses": int(syn[3].size),
              "delay": int(part == "hh")} for (post, part), (pre, syn) in p["proj"].items()]
    (tmp / "network.json").write_text(json.dumps({"format": "py-spinnaker2-style", "precision": "float32", "dt": g.dt, "populations": pops,
                                                  "projections": projs, "outputs": p["outputs"], "index_bits": p["bits"]}, indent=1))


# ------------------------------------------------------------------------------ the executor


@njit(cache=True)
def _send(g, val, slot, ring, L, n_acc, syn_ptr, syn_acc, syn_w, syn_d):
    for s in range(syn_ptr[g], syn_ptr[g + 1]):
        at = slot + syn_d[s]
        if at >= L:
            at -= L
        ring[at * n_acc + syn_acc[s]] += syn_w[s] * val
    return syn_ptr[g + 1] - syn_ptr[g]


@njit(cache=True)
def run_kernel(in_ptr, in_idx, in_val, steps, batch, inp_gid, syn_ptr, syn_acc, syn_w, syn_d, n_acc, acc_bias, pe_lo, pe_n, pe_ih, pe_hh,
               theta, rec_gid, rec, counts):
    """Ticks of an EGRU export (float32). ``pe_ih``/``pe_hh``: each PE's first accumulator of its three
    input / recurrent gate blocks (``3 * n`` each); the ring holds two slots (recurrent delay 1)."""
    L = 2
    n_gid = theta.shape[0]
    ring = np.empty(L * max(n_acc, 1), dtype=np.float32)
    c = np.zeros(n_gid, dtype=np.float32)
    y = np.zeros(n_gid, dtype=np.float32)
    out = np.zeros(n_gid, dtype=np.float32)
    events = packets = 0
    for b in range(batch):
        for s in range(L):
            ring[s * n_acc : (s + 1) * n_acc] = acc_bias  # accumulators start from the biases
        c[:] = 0
        y[:] = 0
        out[:] = 0
        for t in range(steps):
            slot = t % L
            base = slot * n_acc
            row = t * batch + b
            for e in range(in_ptr[row], in_ptr[row + 1]):  # the host injects the inputs as packets
                g = inp_gid[in_idx[e]]
                events += _send(g, in_val[e], slot, ring, L, n_acc, syn_ptr, syn_acc, syn_w, syn_d)
                packets += 1
            for pe in range(pe_lo.shape[0]):
                g0, n = pe_lo[pe], pe_n[pe]
                xp = ring[base + pe_ih[pe] : base + pe_ih[pe] + 3 * n].copy()
                hp = ring[base + pe_hh[pe] : base + pe_hh[pe] + 3 * n].copy()
                ring[base + pe_ih[pe] : base + pe_ih[pe] + 3 * n] = acc_bias[pe_ih[pe] : pe_ih[pe] + 3 * n]
                ring[base + pe_hh[pe] : base + pe_hh[pe] + 3 * n] = acc_bias[pe_hh[pe] : pe_hh[pe] + 3 * n]
                _egru_cell(xp, hp, c[g0 : g0 + n], theta[g0 : g0 + n], y[g0 : g0 + n])
                for q in range(n):
                    g = g0 + q
                    out[g] = y[g]
                    if y[g] != 0:
                        events += _send(g, y[g], slot, ring, L, n_acc, syn_ptr, syn_acc, syn_w, syn_d)
                        packets += 1
            for r in range(rec_gid.shape[0]):
                rec[t, b, r] = out[rec_gid[r]]
    counts[0] += events
    counts[1] += packets


def load(program, network: dict, images: list, pops: dict, n_gid: int, where: str) -> None:
    """Fill ``program`` with the arrays :func:`run_kernel` needs, from the PE images."""
    theta = np.zeros(n_gid, np.float32)
    inp_gid, src_all, acc_all, w_all, d_all, bias, pe_rows, n_acc = [], [], [], [], [], [], [], 0
    for im in sorted(images, key=lambda im: im["pe"]):
        pop = pops[im["population"]]
        lo, hi = im["lo"], im["hi"]
        if pop.kind == "input":
            inp_gid.append(np.arange(pop.offset + lo, pop.offset + hi))
            continue
        k = hi - lo
        try:
            theta[pop.offset + lo:pop.offset + hi] = im["neurons"]["threshold"]
            blocks = {}
            for part in ("ih", "hh"):
                proj = next(pj for pj in im["projections"] if pj["name"].endswith(f":weight_{part}"))
                b = np.asarray(im["neurons"][f"bias_{part}"], np.float32)
                if b.shape != (3, k):
                    raise ValueError(f"bias_{part} has shape {b.shape}, expected (3, {k})")
                pre_pop = pops[proj["pre"]]
                row_pre, ptr = np.asarray(proj["row_pre"], np.int64), np.asarray(proj["row_ptr"], np.int64)
                tgt, w = np.asarray(proj["target"], np.int64), np.asarray(proj["weight"], np.float32)
                if ptr.shape != (row_pre.size + 1,) or ptr[-1] != tgt.size or tgt.size != w.size or np.any(tgt >= 3 * k):
                    raise ValueError("row pointers and synapse arrays disagree")
                blocks[part] = n_acc
                src_all.append(pre_pop.offset + np.repeat(row_pre, np.diff(ptr)))
                acc_all.append(n_acc + tgt)
                w_all.append(w)
                d_all.append(np.full(tgt.size, int(proj["delay"]), np.int64))
                bias.append(b.reshape(-1))
                n_acc += 3 * k
        except (KeyError, ValueError, TypeError, StopIteration) as exc:
            raise FormatError(f"{where}: {im['file']}: EGRU image is malformed ({type(exc).__name__}: {exc})") from None
        pe_rows.append((pop.offset + lo, k, blocks["ih"], blocks["hh"]))
    src = np.concatenate(src_all) if src_all else np.zeros(0, np.int64)
    order = np.argsort(src, kind="stable")
    program._egru = {
        "syn": (np.concatenate(acc_all)[order], np.concatenate(w_all)[order], np.concatenate(d_all)[order]),
        "syn_ptr": np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n_gid))]).astype(np.int64),
        "n_acc": n_acc, "acc_bias": np.concatenate(bias).astype(np.float32),
        "pe": tuple(np.array([r[i] for r in pe_rows], np.int64) for i in range(4)), "theta": theta,
        "inp_gid": np.concatenate(inp_gid).astype(np.int64),
    }
