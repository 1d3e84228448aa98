"""Reference executor of an export: reads only the exported folder and runs it PE by PE, tick by tick.

Loading follows the hardware's path for every key: a slice's packets are routed through the
exported per-chip tables (:func:`~.route.deliver`), and each PE they reach finds its synaptic rows
through its master table (key & mask -> sending slice -> row of the pre neuron; convolutions are
expanded from their int8 kernel and geometry). A PE that needs a key the tables do not deliver, a
row without a table entry, or a damaged file is refused with a :class:`~spikeflow.errors.FormatError`.
The tick loop (numba) then runs:

1. the host injects the inputs (quantised to the state format) as packets carrying their value;
2. each PE in execution order reads slot ``t mod L`` of its ring buffers, brings each projection's
   sum back with a rounding shift by its weight fraction, adds its bias and saturates, sums the
   projections (saturating, in the exported order), updates its neurons in the exported integer
   arithmetic and sends one packet per spike (a non-spiking readout sends its nonzero voltage);
3. a packet's synapses add ``weight * payload`` to slot ``(t + delay) mod L`` of their target.

Forward packets arrive in the tick they are sent (delay 0: later PEs of the tick read them), so the
executor computes what ``sf.simulate(prog.graph, x, precision=prog.precision)`` computes, integer
for integer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit

from spikeflow.errors import DataError, FormatError

from ..export_folder import read_manifest
from ..result import SimulationResult
from .route import Entry, deliver
from .synapses import NEURON_FIELDS, conv_triplets, pre_to_input

MODELS = {"lif": 0, "if": 1, "cuba": 2}


@njit(cache=True, inline="always")
def _sat(x, lo, hi, counts):
    if x > hi:
        counts[3] += 1
        return hi
    if x < lo:
        counts[3] += 1
        return lo
    return x


@njit(cache=True, inline="always")
def _shift(x, frac):
    if frac <= 0:
        return x << (-frac)
    return (x + (np.int64(1) << (frac - 1))) >> frac


@njit(cache=True)
def _send(g, val, base, ring, syn_ptr, syn_off, syn_w):
    """One packet: its synapses add ``weight * payload`` to their accumulator ``delay`` ticks ahead
    (``syn_off = delay * n_acc + accumulator``, wrapped around the ring); returns their count."""
    size = ring.shape[0]
    for s in range(syn_ptr[g], syn_ptr[g + 1]):
        at = base + syn_off[s]
        if at >= size:
            at -= size
        ring[at] += syn_w[s] * val
    return syn_ptr[g + 1] - syn_ptr[g]


@njit(cache=True)
def input_entries(flat):
    """The nonzero entries of ``flat[rows, cols]`` as a CSR by row (columns ascending): one pass to
    count (and to find a NaN or inf: then ``ptr[-1]`` is -1), one to fill (``np.nonzero`` on a
    large, sparse input costs several times more)."""
    rows, cols = flat.shape
    ptr = np.zeros(rows + 1, np.int64)
    bad = 0
    for r in range(rows):
        c = 0
        for j in range(cols):
            c += flat[r, j] != 0
            bad += (flat[r, j] - flat[r, j]) != 0
        ptr[r + 1] = ptr[r] + c
    if bad:
        ptr[rows] = -1
        return ptr, np.zeros(0, np.int64), np.zeros(0, flat.dtype)
    idx = np.empty(ptr[rows], np.int64)
    val = np.empty(ptr[rows], flat.dtype)
    for r in range(rows):
        at = ptr[r]
        for j in range(cols):
            if flat[r, j] != 0:
                idx[at] = j
                val[at] = flat[r, j]
                at += 1
    return ptr, idx, val


@njit(cache=True)
def _run(in_ptr, in_idx, in_val, steps, batch, inp_gid, syn_ptr, syn_off, syn_w, L, n_acc, pe_model, pe_spiking, pe_sub, pe_lo,
         pe_n, pe_uniform, pe_pptr, pj_base, pj_frac, pj_bdelay, pj_bias, acc_bias, P, V0, rec_gid, rec_out, v_gid, rec_v, fmt, counts):
    """The tick loop. Inputs: row ``t * batch + b`` of the CSR ``(in_ptr, in_idx, in_val)`` lists the
    nonzero quantised input values of tick ``t`` of sample ``b`` (column = input neuron)."""
    n_gid = P.shape[0]
    lo, hi, cf = fmt[0], fmt[1], fmt[3]
    one = np.int64(1) << fmt[2]
    scale = 1.0 / one
    ring = np.zeros(L * max(n_acc, 1), dtype=np.int64)
    v = np.zeros(n_gid, dtype=np.int64)
    cur = np.zeros(n_gid, dtype=np.int64)
    out = np.zeros(n_gid, dtype=np.int64)
    xin = np.zeros(max(1, pe_n.max() if pe_n.shape[0] else 1), dtype=np.int64)
    events = packets = updates = 0
    for b in range(batch):
        ring[:] = 0
        v[:] = V0  # the initial membrane (zero but for a converted network's IF populations)
        cur[:] = 0
        out[:] = 0
        for t in range(steps):
            slot = t % L
            base = slot * n_acc
            row = t * batch + b
            for e in range(in_ptr[row], in_ptr[row + 1]):  # the host injects the inputs as packets
                g = inp_gid[in_idx[e]]
                events += _send(g, in_val[e], base, ring, syn_ptr, syn_off, syn_w)
                packets += 1
            for pe in range(pe_model.shape[0]):
                model = pe_model[pe]
                spiking, sub = pe_spiking[pe], pe_sub[pe]
                k0, k1 = pe_pptr[pe], pe_pptr[pe + 1]
                g0, n = pe_lo[pe], pe_n[pe]
                updates += n
                for k in range(k0, k1):  # each projection's input, summed in the exported order
                    first, frac, a0 = k == k0, pj_frac[k], pj_base[k]
                    live = t >= pj_bdelay[k]
                    for q in range(n):
                        a = a0 + q
                        y = np.int64(0)
                        if live:
                            y = _shift(ring[base + a], frac)
                            if pj_bias[k]:
                                y += acc_bias[a]
                            y = _sat(y, lo, hi, counts)
                        ring[base + a] = 0
                        xin[q] = y if first else _sat(xin[q] + y, lo, hi, counts)
                uniform = pe_uniform[pe]  # one parameter row for the whole slice: it stays in cache
                for q in range(n):
                    g = g0 + q
                    r = g0 if uniform else g
                    x = xin[q] if k1 > k0 else np.int64(0)
                    if model == 0:
                        v[g] = _sat(_shift(P[r, 0] * v[g], cf) + _shift(P[r, 1] * x, cf) + P[r, 2], lo, hi, counts)
                        thr, reset = P[r, 3], P[r, 4]
                    elif model == 1:
                        v[g] = _sat(v[g] + _shift(P[r, 0] * x, cf), lo, hi, counts)
                        thr, reset = P[r, 1], P[r, 2]
                    else:
                        cur[g] = _sat(_shift(P[r, 0] * cur[g], cf) + _shift(P[r, 1] * x, cf), lo, hi, counts)
                        v[g] = _sat(_shift(P[r, 2] * v[g], cf) + _shift(P[r, 3] * cur[g], cf) + P[r, 4], lo, hi, counts)
                        thr, reset = P[r, 5], P[r, 6]
                    if spiking:
                        if v[g] > thr:
                            out[g] = one
                            v[g] = _sat(v[g] - thr, lo, hi, counts) if sub else reset
                        else:
                            out[g] = 0
                    else:
                        out[g] = v[g]
                    if out[g] != 0:
                        events += _send(g, out[g], base, ring, syn_ptr, syn_off, syn_w)
                        packets += 1
            for r in range(rec_gid.shape[0]):
                rec_out[t, b, r] = out[rec_gid[r]] * scale
            for r in range(v_gid.shape[0]):
                rec_v[t, b, r] = v[v_gid[r]] * scale
    counts[0] += events
    counts[1] += packets
    counts[2] += updates


@dataclass
class _Pop:
    name: str
    kind: str
    shape: tuple
    offset: int
    spiking: bool

    @property
    def size(self) -> int:
        return math.prod(self.shape)


class Program:
    """An exported SpiNNaker 2 program: ``.run(x, record=...)``, ``.graph``, ``.precision``, ``.report``."""

    def __init__(self, path):
        from .report import Report
        from .target import precision

        self.path = Path(path)
        manifest = read_manifest(self.path, target="spinnaker2", max_version=2)
        self.manifest = manifest
        self.precision = "float32" if manifest["meta"].get("precision") == "float32" else _precision(manifest)
        if self.precision != "float32" and self.precision != precision():
            raise FormatError(f"export {self.path}: precision {manifest['meta'].get('precision')} is not this target's arithmetic")
        network = _json(self.path, "network.json")
        self.report = Report.from_dict(_json(self.path, "report.json")) if "report.json" in manifest["files"] else None
        self.graph = _graph(self.path)
        self._build(network, manifest)

    # ----------------------------------------------------------------------------- loading

    def _build(self, network: dict, manifest: dict) -> None:
        where = f"export {self.path}"
        try:
            pops, offset = {}, 0
            for entry in network["populations"]:
                kind = "input" if entry["type"] == "spike_list" else str(entry["type"])
                spiking = kind == "input" or (kind != "egru" and entry["params"]["threshold"] is not None)
                pop = _Pop(str(entry["name"]), kind, tuple(int(s) for s in entry["shape"]), offset, spiking)
                pops[pop.name] = pop
                offset += pop.size
            self.outputs = {str(k): str(v) for k, v in network["outputs"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{where}: network.json is malformed ({type(exc).__name__}: {exc})") from None
        self.pops, n_gid = pops, offset
        tables, chips, bits = _routing(self.path)
        pe_files = sorted(k for k in manifest["files"] if k.startswith("pe_") and k.endswith(".h5"))
        if not pe_files:
            raise FormatError(f"{where}: no PE images (pe_NNNN.h5)")
        images = [_read_pe(self.path / k) for k in pe_files]
        by_pe = {im["pe"]: im for im in images}
        if sorted(by_pe) != list(range(len(images))):
            raise FormatError(f"{where}: PE images are not numbered 0..{len(images) - 1}")
        covered = {k: np.zeros(p.size, bool) for k, p in pops.items()}
        for im in images:
            pop = pops.get(im["population"])
            if pop is None or not 0 <= im["lo"] < im["hi"] <= pop.size:
                raise FormatError(f"{where}: {im['file']} holds neurons {im['lo']}..{im['hi']} of unknown or smaller population {im['population']!r}")
            covered[pop.name][im["lo"]:im["hi"]] = True
            if im["key"] != im["pe"] << bits:
                raise FormatError(f"{where}: {im['file']} sends key {im['key']:#x}, expected {im['pe'] << bits:#x}")
        missing = [k for k, c in covered.items() if not c.all()]
        if missing:
            raise FormatError(f"{where}: population {missing[0]!r} has neurons on no PE")
        # which source slice sends a key, and where the tables deliver it
        slices = {im["pe"]: im for im in images}
        reach = {pe: deliver(tables, im["key"], im["chip"], chips) for pe, im in slices.items()}
        self.routes = {pe: sorted(cores) for pe, cores in reach.items()}
        """Where the routing tables deliver each PE's packets: ``{sending PE: [(chip, core), ...]}``."""
        if self.precision == "float32":
            from . import egru

            for im in images:
                for proj in im["projections"]:
                    pre_pop = pops.get(proj.get("pre"))
                    if pre_pop is None:
                        raise FormatError(f"{where}: {im['file']} projection from unknown population {proj.get('pre')!r}")
                    _verify_delivery(im, proj, slices, reach, pre_pop.name, np.asarray(proj.get("row_pre", []), np.int64), where)
            egru.load(self, network, images, pops, n_gid, where)
            return
        P = np.zeros((n_gid, 7), np.int64)
        lo_state, hi_state = self.precision.state_range
        V0 = np.zeros(n_gid, np.int64)
        inp_gid = []
        pe_rows, src_all, acc_all, w_all, d_all, bias_parts, n_acc = [], [], [], [], [], [], 0
        for pe in sorted(by_pe):
            im = by_pe[pe]
            pop = pops[im["population"]]
            lo, hi = im["lo"], im["hi"]
            if pop.kind == "input":
                inp_gid.append(np.arange(pop.offset + lo, pop.offset + hi))
                continue
            model = im["model"]
            if model not in MODELS:
                raise FormatError(f"{where}: {im['file']} has unknown neuron model {model!r}")
            for c, k in enumerate(NEURON_FIELDS[model]):
                if k not in im["neurons"] or im["neurons"][k].shape != (hi - lo,) or im["neurons"][k].dtype.kind != "i":
                    raise FormatError(f"{where}: {im['file']} neuron field {k!r} missing or not {hi - lo} integers")
                P[pop.offset + lo:pop.offset + hi, c] = im["neurons"][k]
            v_init = im["neurons"].get("v_init")  # format version 2; absent: the membrane starts at zero
            if v_init is not None:
                if v_init.shape != (hi - lo,) or v_init.dtype.kind != "i" or np.any(v_init < lo_state) or np.any(v_init > hi_state):
                    raise FormatError(f"{where}: {im['file']} neuron field 'v_init' is not {hi - lo} integers in the state range")
                V0[pop.offset + lo:pop.offset + hi] = v_init
            projs = []
            for proj in im["projections"]:
                pre_pop = pops.get(proj["pre"])
                if pre_pop is None:
                    raise FormatError(f"{where}: {im['file']} projection {proj['name']!r} from unknown population {proj['pre']!r}")
                pre, tgt, w, d = _rows(proj, pre_pop, lo, hi, im["file"], where)
                _verify_delivery(im, proj, slices, reach, pre_pop.name, pre, where)
                src_all.append(pre_pop.offset + pre)
                acc_all.append(n_acc + tgt)
                w_all.append(w)
                d_all.append(d)
                bias = proj.get("bias")
                if bias is not None and np.shape(bias) != (hi - lo,):
                    raise FormatError(f"{where}: {im['file']} projection {proj['name']!r}: bias has shape {np.shape(bias)}, expected ({hi - lo},)")
                bias_parts.append(np.asarray(bias, np.int64) if bias is not None else np.zeros(hi - lo, np.int64))
                projs.append((n_acc, int(proj["frac"]), int(proj["bias_delay"]), int(bias is not None)))
                n_acc += hi - lo
            rows = P[pop.offset + lo:pop.offset + hi]
            pe_rows.append((MODELS[model], pop.spiking, im["subtract"], pop.offset + lo, hi - lo, projs, bool(np.all(rows == rows[0]))))
        src = np.concatenate(src_all) if src_all else np.zeros(0, np.int64)
        order = np.argsort(src, kind="stable")
        acc = np.concatenate(acc_all)[order] if acc_all else np.zeros(0, np.int64)
        delay = np.concatenate(d_all)[order].astype(np.int64) if d_all else np.zeros(0, np.int64)
        self._L = int(delay.max(initial=0)) + 1
        if self._L * max(n_acc, 1) >= 2**31:
            raise FormatError(f"{where}: {n_acc} accumulators x {self._L} ring slots exceed what this executor indexes")
        # 6 bytes per synapse streamed per packet: the scatter is memory-bound
        self._syn = ((delay * n_acc + acc).astype(np.int32), (np.concatenate(w_all)[order] if w_all else np.zeros(0)).astype(np.int16))
        self._syn_ptr = np.zeros(n_gid + 1, np.int64)
        np.cumsum(np.bincount(src, minlength=n_gid), out=self._syn_ptr[1:])
        self._n_acc = n_acc
        self._acc_bias = np.concatenate(bias_parts).astype(np.int64) if bias_parts else np.zeros(1, np.int64)
        self._P = P
        self._V0 = V0
        self._inp_gid = np.concatenate(inp_gid).astype(np.int64) if inp_gid else np.zeros(0, np.int64)
        self._pe = (np.array([r[0] for r in pe_rows], np.int64), np.array([r[1] for r in pe_rows], np.bool_),
                    np.array([r[2] for r in pe_rows], np.bool_), np.array([r[3] for r in pe_rows], np.int64),
                    np.array([r[4] for r in pe_rows], np.int64), np.array([r[6] for r in pe_rows], np.bool_),
                    np.cumsum([0] + [len(r[5]) for r in pe_rows]).astype(np.int64))
        flat = [pj for r in pe_rows for pj in r[5]]
        self._pj = tuple(np.array([pj[i] for pj in flat], np.int64) for i in range(4))

    # --------------------------------------------------------------------------------- run

    def run(self, x, record=()) -> SimulationResult:
        """Run the export on inputs ``[T, B, ...]`` (or a dict by Input name): outputs, recorded
        populations' spikes and membrane potentials (dequantised), and counts of the work done."""
        import time

        from ..inputs import prepare_inputs
        from ..numba.fixed_point import quantise

        record = list(record)
        unknown = [k for k in record if k not in self.pops or self.pops[k].kind == "input"]
        if unknown:
            raise DataError(f"argument 'record': {unknown[0]!r} is not a neuron population of this export; "
                            f"populations are {sorted(k for k, p in self.pops.items() if p.kind != 'input')}")
        inputs = {k: p for k, p in self.pops.items() if p.kind == "input"}
        shapes = {k: p.shape for k, p in inputs.items()}
        if (len(inputs) == 1 and isinstance(x, np.ndarray) and x.dtype == np.float64 and x.ndim == len(next(iter(shapes.values()))) + 2
                and x.shape[2:] == next(iter(shapes.values()))):
            checked = {next(iter(inputs)): x}  # what prepare_inputs returns, without its copy (finiteness: below)
        else:
            checked = prepare_inputs(x, shapes, dt=self.graph.dt)
        first = next(iter(checked.values()))
        steps, batch = first.shape[:2]
        parts = [checked[k].reshape(steps, batch, -1) for k in inputs]  # population order = gid order
        packed = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)
        if self.precision == "float32":
            return self._run_egru(packed, record)
        f = self.precision
        in_ptr, cols, values = input_entries(packed.reshape(steps * batch, -1))  # each tick's inputs in ascending order
        if in_ptr[-1] < 0:
            prepare_inputs(x, shapes, dt=self.graph.dt)  # raises, naming the first NaN or inf
        in_val, saturated = quantise(values, f.state_bits, f.state_frac)  # zeros stay zeros
        names = list(dict.fromkeys(list(self.outputs.values()) + record))
        rec_gid = np.concatenate([np.arange(self.pops[k].offset, self.pops[k].offset + self.pops[k].size) for k in names]).astype(np.int64)
        v_gid = np.concatenate([np.zeros(0, np.int64)] + [np.arange(self.pops[k].offset, self.pops[k].offset + self.pops[k].size)
                                                          for k in record]).astype(np.int64)
        rec_out = np.empty((steps, batch, rec_gid.size))  # dequantised as they are recorded (exact: 32-bit integers)
        rec_v = np.empty((steps, batch, v_gid.size))
        counts = np.zeros(4, np.int64)
        start = time.perf_counter()
        _run(in_ptr, cols, in_val, steps, batch, self._inp_gid, self._syn_ptr, *self._syn, self._L, self._n_acc, *self._pe, *self._pj, self._acc_bias, self._P, self._V0,
             rec_gid, rec_out, v_gid, rec_v, f.kernel_format(), counts)
        wall = time.perf_counter() - start
        at_out, at_v, i, j = {}, {}, 0, 0
        for k in names:
            at_out[k] = slice(i, i + self.pops[k].size)
            i += self.pops[k].size
        for k in record:
            at_v[k] = slice(j, j + self.pops[k].size)
            j += self.pops[k].size
        shape = lambda k: (steps, batch) + self.pops[k].shape  # noqa: E731
        result = SimulationResult(outputs={}, backend="spinnaker2-executor",
                                  stats={"synaptic_events": int(counts[0]), "packets": int(counts[1]), "neuron_updates": int(counts[2]),
                                         "overflows": int(counts[3]), "saturated_inputs": saturated, "steps": int(steps), "wall_time": wall})
        for out_name, pop in self.outputs.items():
            result.outputs[out_name] = rec_out[:, :, at_out[pop]].reshape(shape(pop))
        for k in record:
            if self.pops[k].spiking:
                result.spikes[k] = (rec_out[:, :, at_out[k]] > 0).astype(np.float64).reshape(shape(k))
            result.traces[k] = rec_v[:, :, at_v[k]].reshape(shape(k))
        return result


def _run_egru(self, packed: np.ndarray, record: list) -> SimulationResult:
    """The FP32 tick loop of an EGRU export (see :mod:`.egru`)."""
    import time

    from .egru import run_kernel

    steps, batch = packed.shape[:2]
    in_ptr, cols, values = input_entries(packed.reshape(steps * batch, -1).astype(np.float32))
    if in_ptr[-1] < 0:
        raise DataError("argument 'inputs': contains NaN or inf")
    e = self._egru
    names = list(dict.fromkeys(list(self.outputs.values()) + record))
    rec_gid = np.concatenate([np.arange(self.pops[k].offset, self.pops[k].offset + self.pops[k].size) for k in names]).astype(np.int64)
    rec = np.zeros((steps, batch, rec_gid.size), np.float32)
    counts = np.zeros(2, np.int64)
    start = time.perf_counter()
    run_kernel(in_ptr, cols, values, steps, batch, e["inp_gid"], e["syn_ptr"], *e["syn"], e["n_acc"],
               e["acc_bias"], *e["pe"], e["theta"], rec_gid, rec, counts)
    wall = time.perf_counter() - start
    at, i = {}, 0
    for k in names:
        at[k] = slice(i, i + self.pops[k].size)
        i += self.pops[k].size
    result = SimulationResult(outputs={}, backend="spinnaker2-executor", stats={"synaptic_events": int(counts[0]), "packets": int(counts[1]),
                                                                              "steps": int(steps), "wall_time": wall})
    for out_name, pop in self.outputs.items():
        result.outputs[out_name] = rec[:, :, at[pop]].reshape((steps, batch) + self.pops[pop].shape)
    for k in record:
        result.traces[k] = rec[:, :, at[k]].reshape((steps, batch) + self.pops[k].shape)
    return result


Program._run_egru = _run_egru


def load_export(path) -> Program:
    """The program in a SpiNNaker 2 export folder (verified by its manifest before anything is parsed)."""
    return Program(path)


# ------------------------------------------------------------------------------ file readers


def _precision(manifest: dict):
    from ..numba.fixed_point import FixedPoint

    try:
        return FixedPoint(**manifest["meta"]["precision"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"manifest meta 'precision' is missing or malformed ({exc})") from None


def _json(folder: Path, name: str) -> dict:
    try:
        value = json.loads((folder / name).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"export {folder}: {name} is missing or not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise FormatError(f"export {folder}: {name} must hold a JSON object")
    return value


def _graph(folder: Path):
    from spikeflow.io.hdf5 import load

    return load(folder / "graph.h5")


def _h5(file: Path):
    import h5py

    try:
        return h5py.File(file, "r")
    except OSError as exc:
        raise FormatError(f"{file}: not a readable HDF5 file ({exc})") from None


def _routing(folder: Path):
    file = folder / "routing.h5"
    tables = {}
    with _h5(file) as f:
        try:
            chips, bits = int(f.attrs["chips"]), int(f.attrs["index_bits"])
            for name, grp in f.items():
                chip = int(name.split("_")[1])
                key, mask, links = grp["key"][()], grp["mask"][()], grp["links"][()]
                ptr, pes = grp["pe_ptr"][()], grp["pes"][()]
                if not (key.shape == mask.shape == links.shape and ptr.shape == (key.size + 1,) and ptr[-1] == pes.size):
                    raise ValueError("entry arrays disagree in length")
                tables[chip] = [Entry(int(key[i]), int(mask[i]), tuple(b for b in range(6) if links[i] >> b & 1),
                                      tuple(int(c) for c in pes[ptr[i]:ptr[i + 1]])) for i in range(key.size)]
        except (KeyError, ValueError, IndexError, TypeError) as exc:
            raise FormatError(f"{file}: routing tables are malformed ({type(exc).__name__}: {exc})") from None
    return tables, chips, bits


def _read_pe(file: Path) -> dict:
    with _h5(file) as f:
        try:
            a = f.attrs
            im = {"file": file.name, "population": str(a["population"]), "model": str(a["model"]), "lo": int(a["lo"]), "hi": int(a["hi"]),
                  "chip": int(a["chip"]), "core": int(a["core"]), "pe": int(a["pe"]), "key": int(a["key"]), "mask": int(a["mask"]),
                  "subtract": bool(a["subtract"]), "neurons": {k: np.asarray(v[()]) for k, v in f["neurons"].items()},
                  "projections": []}
            for name in sorted(k for k in f if k.startswith("projection_")):
                g = f[name]
                proj = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in g.attrs.items()}
                for k in g:
                    proj[k] = g[k][()]
                im["projections"].append(proj)
        except (KeyError, ValueError, TypeError, OSError) as exc:
            raise FormatError(f"{file}: PE image is malformed ({type(exc).__name__}: {exc})") from None
    return im


def _rows(proj: dict, pre_pop: _Pop, lo: int, hi: int, file: str, where: str):
    """``(pre, target within the slice, weight, delay)`` of one incoming projection of a PE."""
    try:
        if proj["kind"] == "conv":
            return _conv_rows(proj, pre_pop, lo, hi)
        row_pre, ptr = np.asarray(proj["row_pre"], np.int64), np.asarray(proj["row_ptr"], np.int64)
        tgt, w, d = (np.asarray(proj[k], np.int64) for k in ("target", "weight", "delay"))
        if ptr.shape != (row_pre.size + 1,) or ptr[0] != 0 or np.any(np.diff(ptr) < 0) or ptr[-1] != tgt.size or not tgt.size == w.size == d.size:
            raise ValueError("row pointers and synapse arrays disagree")
        if np.any((row_pre < 0) | (row_pre >= pre_pop.size)) or np.any((tgt < 0) | (tgt >= hi - lo)):
            raise ValueError("a row names a neuron outside its population or slice")
        return np.repeat(row_pre, np.diff(ptr)), tgt, w, d
    except (KeyError, ValueError, TypeError) as exc:
        raise FormatError(f"{where}: {file} projection {proj.get('name')!r}: synaptic rows are malformed ({exc})") from None


def _conv_rows(proj: dict, pre_pop: _Pop, lo: int, hi: int):
    from spikeflow.ir import nodes as n

    geo = json.loads(proj["geometry"])
    kernel = np.asarray(proj["kernel"], np.int64)
    cls = {"Conv1d": n.Conv1d, "Conv2d": n.Conv2d}[geo["type"]]
    node = cls(weight=kernel.astype(np.float64), bias=np.zeros(kernel.shape[0]), stride=tuple(geo["stride"]), padding=tuple(geo["padding"]),
               dilation=tuple(geo["dilation"]), groups=int(geo["groups"]))
    src, dst, kidx = conv_triplets(node, tuple(geo["in_shape"]), kernel)
    pool = None
    if "pool" in geo:
        pool = n.SumPool2d(kernel_size=tuple(geo["pool"]["kernel_size"]), stride=tuple(geo["pool"]["kernel_size"]),
                           padding=tuple(geo["pool"]["padding"]))
    to_in = pre_to_input(pre_pop.size, pool, tuple(geo["pool"]["in_shape"]) if pool is not None else None)
    keep = (dst >= lo) & (dst < hi)
    src, dst, kidx = src[keep], dst[keep], kidx[keep]
    valid = np.nonzero(to_in >= 0)[0]
    order = np.argsort(to_in[valid], kind="stable")
    sorted_in = to_in[valid][order]
    a, b = np.searchsorted(sorted_in, src, "left"), np.searchsorted(sorted_in, src, "right")
    reps = b - a
    from .synapses import _ranges

    pre = valid[order][np.repeat(a, reps) + _ranges(reps)]
    return pre, np.repeat(dst, reps) - lo, np.repeat(kernel.reshape(-1)[kidx], reps), np.full(pre.size, int(geo["delay"]), np.int64)


def _verify_delivery(im: dict, proj: dict, slices: dict, reach: dict, population: str, pre: np.ndarray, where: str) -> None:
    """Every row must be reachable: its key matches a master-table entry and the tables deliver it here."""
    if pre.size and (pre.min() < 0 or pre.max() >= max(s["hi"] for s in slices.values() if s["population"] == population)):
        raise FormatError(f"{where}: {im['file']} has a row for a neuron outside population {population!r}")
    for s in np.unique(_sender(slices, population, pre)):
        key = slices[int(s)]["key"]
        if not np.any((key & np.asarray(proj["table_mask"], np.int64)) == np.asarray(proj["table_key"], np.int64)):
            raise FormatError(f"{where}: {im['file']} has rows for key {key:#x} but no master-table entry for it")
        if (im["chip"], im["core"]) not in reach[int(s)]:
            raise FormatError(f"{where}: routing tables do not deliver key {key:#x} (slice {int(s)}) to chip {im['chip']} "
                              f"core {im['core']}, whose synaptic rows need it")


def _sender(slices: dict, population: str, pre: np.ndarray) -> np.ndarray:
    """The PE (slice) that holds each pre neuron of ``population``."""
    own = sorted((im["lo"], pe) for pe, im in slices.items() if im["population"] == population)
    los = np.array([lo for lo, _ in own], np.int64)
    pes = np.array([pe for _, pe in own], np.int64)
    return pes[np.searchsorted(los, pre, "right") - 1]
