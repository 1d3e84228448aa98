"""The crossbar reference simulation of an rram-lsm export; it reads only the export folder.

Each step, in the exported op order: inputs pass the DAC (codes in the neurons' state format);
a matrix tile reads its sampled conductances ``(G+ - G-) / step`` (after drift, its compensation
and IR drop) against the input codes, adds read noise (per read: the column current's σ is the
root sum of each cell's ``read_noise * G * x``), and its ADC rounds half up by ``2**frac`` and
saturates; a convolution's tile is read like that once per output position, with that position's
input patch (im2col, zero padding) on its rows. The digital periphery adds sources (saturating, in
name order), pools (window sums; an average divides by the window, rounding half up) and updates
the neurons in integer arithmetic (``v = sat(shift(a v) + shift(c x) + b)``, spike when
``v > threshold``).
With an ideal device every read returns the programmed levels, and this is bit for bit the numba
fixed-point interpreter running ``program.graph`` at ``program.precision``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from spikeflow.errors import DataError, FormatError

from ..export_folder import read_manifest
from ..inputs import prepare_inputs
from ..numba.fixed_point import FixedPoint
from ..result import SimulationResult
from .crossbar import ENERGY_PJ, Crossbar, effective_levels
from .device import Chip, Device
from .export import NEURON_ROLES, TARGET, VERSION

MATRIX_KINDS = ("Affine", "Linear", "Conv")
POOL_KINDS = ("SumPool2d", "AvgPool2d")
_KINDS = ("Input", "Output", "Flatten", "Scale", "Threshold", "LIF", "CUBA", "IF") + MATRIX_KINDS + POOL_KINDS


def _shift(x: np.ndarray, frac: int) -> np.ndarray:
    """Divide int64 ``x`` by ``2**frac`` rounding half up (the interpreter's arithmetic shift)."""
    if frac <= 0:
        return x << -frac
    return (x + (np.int64(1) << (frac - 1))) >> frac


def patch_index(geo: dict) -> np.ndarray:
    """int64 ``[positions, channels * kh * kw]``: the input element each output position reads at
    each (channel, ky, kx) tap (im2col); ``channels * height * width`` (one past the input) where
    the tap falls on the zero padding."""
    c, h, w = geo["in_shape"]
    _, oh, ow = geo["out_shape"]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = geo["kernel"], geo["stride"], geo["padding"], geo["dilation"]
    oy, ox = np.divmod(np.arange(oh * ow), ow)
    ky, kx = np.divmod(np.arange(kh * kw), kw)
    iy, ix = oy[:, None] * sh - ph + ky * dh, ox[:, None] * sw - pw + kx * dw
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    index = np.arange(c)[None, :, None] * (h * w) + (iy * w + ix)[:, None, :]
    return np.where(inside[:, None, :], index, c * h * w).reshape(oh * ow, c * kh * kw)


def _check_geometry(geo, size: int, source_size: int, pool: bool, where: str) -> dict:
    """A Conv/pool op's geometry, or a FormatError (a damaged export must not index out of bounds)."""
    keys = {"in_shape": 3, "out_shape": 3, "kernel": 2, "stride": 2, "padding": 2, "dilation": 2}
    if not isinstance(geo, dict) or set(geo) != set(keys):
        raise FormatError(f"{where}: expected geometry fields {sorted(keys)}, got {geo!r}")
    for key, length in keys.items():
        v = geo[key]
        if not (isinstance(v, list) and len(v) == length and all(isinstance(i, int) and i >= (0 if key == "padding" else 1) for i in v)):
            raise FormatError(f"{where}: geometry field {key!r} is not {length} positive integers: {v!r}")
    c, h, w = geo["in_shape"]
    spatial = [(s + 2 * p - d * (k - 1) - 1) // st + 1 for s, k, st, p, d in zip((h, w), geo["kernel"], geo["stride"], geo["padding"], geo["dilation"])]
    if (spatial != geo["out_shape"][1:] or math.prod(geo["out_shape"]) != size or c * h * w != source_size
            or (pool and geo["out_shape"][0] != c)):
        raise FormatError(f"{where}: geometry {geo} does not fit the op's size {size} and its source's size {source_size}")
    return geo


class RramProgram:
    """An exported program: ``run(x)`` simulates the crossbar; ``graph``, ``precision``, ``report``.

    ``graph`` is the hardware graph (weights are the programmed levels times ``2**-frac``) and
    ``precision`` the matching :class:`FixedPoint`: with an ideal device,
    ``sf.simulate(prog.graph, x, precision=prog.precision)`` gives the spikes ``prog.run(x)`` gives.
    """

    def __init__(self, path):
        self.path = Path(path)
        manifest = read_manifest(self.path, target=TARGET, max_version=VERSION)
        if set(manifest["files"]) != {"program.json", "arrays.h5", "graph.h5"}:
            raise FormatError(f"export {self.path}: expected program.json, arrays.h5 and graph.h5, the manifest lists {sorted(manifest['files'])}")
        try:
            prog = json.loads((self.path / "program.json").read_text(encoding="utf-8"))
            self.ops = list(prog["ops"])
            self.inputs, self.outputs, self.dt = list(prog["inputs"]), list(prog["outputs"]), float(prog["dt"])
            self.precision = FixedPoint(**prog["precision"])
            self.crossbar = Crossbar(**prog["crossbar"])
            self.device = Device(**prog["device"])
            self.report = dict(prog["report"])
            self.plan = list(prog["plan"])
            """The programming plan: one entry per tile (node, rows, outputs, ADC shift, cells)."""
            self.seed = int(prog["seed"])
        except FormatError:
            raise
        except Exception as exc:  # any malformed field: name the file, not a numpy internal
            raise FormatError(f"export {self.path}: program.json is malformed ({type(exc).__name__}: {exc})") from None
        self._index = self._read_geometry()
        self._arrays = self._read_arrays()
        self._graph = None

    def _read_arrays(self) -> dict[str, dict[str, np.ndarray]]:
        import h5py

        where = f"export {self.path}: arrays.h5"
        out: dict[str, dict[str, np.ndarray]] = {}
        try:
            with h5py.File(self.path / "arrays.h5", "r") as f:
                if f.attrs.get("format") != "spikeflow-rram-arrays":
                    raise FormatError(f"{where}: not an rram-lsm array file")
                for op in self.ops:
                    name, kind, size = op["name"], op["kind"], int(op["size"])
                    if kind not in _KINDS:
                        raise FormatError(f"{where}: op {name!r} has unknown kind {kind!r}")
                    want = {}
                    if kind in MATRIX_KINDS:
                        lo, hi = op["rows"]
                        n_out = op["conv"]["out_shape"][0] if kind == "Conv" else size
                        shape = (n_out, hi - lo)
                        want = {"target": shape, "g_plus": shape, "g_minus": shape, "nu": (2, *shape)}
                        if op["bias"]:
                            want["bias"] = (n_out,)
                    elif kind == "Scale":
                        want = {"scale": (size,)}
                    elif kind == "Threshold":
                        want = {"threshold": (size,)}
                    elif kind in NEURON_ROLES:
                        want = {k: (size,) for k, _ in NEURON_ROLES[kind]}
                        if op["spiking"]:
                            want.update(v_threshold=(size,), v_reset=(size,))
                        if op.get("v_init"):  # format version 2: the initial membrane
                            want["v_init"] = (size,)
                    out[name] = {}
                    for key, shape in want.items():
                        if f"{name}/{key}" not in f:
                            raise FormatError(f"{where}: missing dataset {name}/{key}")
                        value = f[f"{name}/{key}"][()]
                        if value.shape != shape:
                            raise FormatError(f"{where}: dataset {name}/{key} has shape {value.shape}, expected {shape}")
                        if not np.all(np.isfinite(value)):
                            raise FormatError(f"{where}: dataset {name}/{key} holds non-finite values")
                        if key == "v_init" and (value.dtype.kind != "i" or np.any(value < self.precision.state_range[0])
                                                or np.any(value > self.precision.state_range[1])):
                            raise FormatError(f"{where}: dataset {name}/v_init is not integers in the state range")
                        out[name][key] = value
        except FormatError:
            raise
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{where}: unreadable ({type(exc).__name__}: {exc})") from None
        return out

    def _read_geometry(self) -> dict[str, np.ndarray]:
        """Each Conv and pool op's im2col index (:func:`patch_index`), its geometry checked first."""
        index = {}
        try:
            sizes = {op["name"]: int(op["size"]) for op in self.ops}
            for op in self.ops:
                if op["kind"] not in ("Conv",) + POOL_KINDS:
                    continue
                where = f"export {self.path}: program.json op {op['name']!r}"
                sources, pool = op["sources"], op["kind"] != "Conv"
                if not sources or any(s not in sizes for s in sources):
                    raise FormatError(f"{where}: sources {sources!r} are not ops of the program")
                geo = _check_geometry(op.get("pool" if pool else "conv"), sizes[op["name"]], sizes[sources[0]], pool, where)
                index[op["name"]] = patch_index(geo)
                if not pool and not 0 <= op["rows"][0] < op["rows"][1] <= index[op["name"]].shape[1]:
                    raise FormatError(f"{where}: rows {op['rows']} exceed the kernel's {index[op['name']].shape[1]} taps")
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise FormatError(f"export {self.path}: program.json is malformed ({type(exc).__name__}: {exc})") from None
        return index

    @property
    def graph(self):
        """The hardware graph (loaded on first use from ``graph.h5``)."""
        if self._graph is None:
            from spikeflow.io.hdf5 import load

            self._graph = load(self.path / "graph.h5")
        return self._graph

    def chip(self, name: str) -> Chip:
        """The sampled array of matrix tile ``name``, as programmed."""
        a = self._arrays[name]
        return Chip(self.device, self.crossbar.encoding, a["g_plus"], a["g_minus"], a["nu"], a["target"])

    def levels(self, name: str, age_s: float | None = None) -> np.ndarray:
        """What a noiseless read of tile ``name`` returns, in levels: exact targets on an ideal
        device, else the drifted (and compensated) conductances through IR drop."""
        if self.device.ideal and self.crossbar.ir_drop_ohm == 0:
            return self._arrays[name]["target"].astype(np.float64)
        chip = self.chip(name)
        gp, gm = chip.conductances(age_s)
        gain = chip.compensation(gp, gm)
        return effective_levels(gp * gain, gm * gain, self.device, self.crossbar)

    def run(self, x: Any, record: Iterable[str] = (), *, age_s: float | None = None, seed: int | None = None,
            bin_width: float | None = None, sensor_size=None) -> SimulationResult:
        """Simulate the crossbar on ``x`` (``[T, B, ...]``, a dict by Input name, or events).

        Args:
            record: op names whose spikes and membrane potentials (or values) are returned.
            age_s: seconds since programming (drift); default the device's ``age_s``.
            seed: seed of the read noise (default: the export's seed).
        """
        record = list(record)
        names = [op["name"] for op in self.ops]
        unknown = [k for k in record if k not in names]
        if unknown:
            raise DataError(f"argument 'record': unknown node {unknown[0]!r}; nodes are {sorted(names)}")
        shapes = {op["name"]: tuple(op["shape"]) for op in self.ops if op["name"] in self.inputs}
        xs = prepare_inputs(x, shapes, dt=self.dt, bin_width=bin_width, sensor_size=sensor_size)
        steps, batch = next(iter(xs.values())).shape[:2]
        fx = self.precision
        lo, hi = fx.state_range
        dac = (1 << (self.crossbar.dac_bits - 1))
        rng = np.random.default_rng(self.seed if seed is None else seed)
        ops = self.ops
        reads = {op["name"]: self.levels(op["name"], age_s) for op in ops if op["kind"] in MATRIX_KINDS}
        sigma2 = {}
        if self.device.read_noise:
            for op in ops:
                if op["kind"] in MATRIX_KINDS:
                    gp, gm = self.chip(op["name"]).conductances(age_s)
                    sigma2[op["name"]] = ((self.device.read_noise / self.device.step) ** 2 * (gp**2 + gm**2)).T
        weights_t = {k: np.ascontiguousarray(v.T) for k, v in reads.items()}
        codes = {k: np.clip(np.floor(v.reshape(steps, batch, math.prod(shapes[k])) * 2.0**fx.state_frac + 0.5), -dac, dac - 1).astype(np.int64)
                 for k, v in xs.items()}
        out = {op["name"]: np.zeros((batch, op["size"]), np.int64) for op in ops}
        state = {op["name"]: [np.zeros((batch, op["size"]), np.int64) for _ in range(2)] for op in ops if op["kind"] in NEURON_ROLES}
        for op in ops:  # a converted network's IF layers start from their initial membrane
            if op.get("v_init"):
                state[op["name"]][0][:] = np.asarray(self._arrays[op["name"]]["v_init"], np.int64)
        rec = {k: [] for k in record}
        rec_v = {k: [] for k in record}
        outs = {k: [] for k in self.outputs}
        counts = {"saturations": 0, "adc_conversions": 0, "rows_driven": 0, "synaptic_events": 0, "neuron_updates": 0}
        start = time.perf_counter()
        for t in range(steps):
            for op in ops:
                name, kind = op["name"], op["kind"]
                par = self._arrays.get(name, {})
                if kind == "Input" and name in codes:
                    out[name][:] = codes[name][t]
                    continue
                xin = self._input_sum(op, out, lo, hi, counts)
                if kind in ("Output", "Flatten", "Input"):
                    out[name][:] = xin
                elif kind in MATRIX_KINDS:
                    r0, r1 = op["rows"]
                    if kind == "Conv":  # one read per output position: [batch, positions, rows] patches
                        padded = np.concatenate([xin, np.zeros((batch, 1), np.int64)], axis=1)
                        xr = padded[:, self._index[name][:, r0:r1]].astype(np.float64)
                    else:
                        xr = xin[:, None, r0:r1].astype(np.float64)
                    acc = xr @ weights_t[name]
                    if name in sigma2:
                        acc += np.sqrt(xr**2 @ sigma2[name]) * rng.standard_normal(acc.shape)
                    # the ADC: round half up at 2**frac level units (exact for the integer sums of an ideal read)
                    y = np.floor(acc * 2.0 ** -op["frac"] + 0.5).astype(np.int64)
                    if op["bias"]:
                        y += par["bias"]
                    out[name][:] = self._sat(y.transpose(0, 2, 1).reshape(batch, -1), lo, hi, counts)  # channel-major
                    active = int(np.count_nonzero(xr))
                    counts["adc_conversions"] += acc.size
                    counts["rows_driven"] += active
                    counts["synaptic_events"] += active * acc.shape[2]
                elif kind in POOL_KINDS:  # digital periphery: window sums, an average rounded half up
                    padded = np.concatenate([xin, np.zeros((batch, 1), np.int64)], axis=1)
                    index = self._index[name]
                    y = padded[:, index].reshape(batch, index.shape[0], op["shape"][0], -1).sum(axis=3)
                    if kind == "AvgPool2d":
                        taps = index.shape[1] // op["shape"][0]
                        y = (2 * y + taps) // (2 * taps)
                    out[name][:] = self._sat(y.transpose(0, 2, 1).reshape(batch, -1), lo, hi, counts)
                elif kind == "Scale":
                    out[name][:] = self._sat(_shift(xin * par["scale"], fx.coef_frac), lo, hi, counts)
                elif kind == "Threshold":
                    out[name][:] = np.where(xin > par["threshold"], np.int64(1) << fx.state_frac, 0)
                else:
                    self._neuron(op, par, xin, out[name], state[name], fx, lo, hi, counts)
                    counts["neuron_updates"] += op["size"] * batch
            for k in record:
                rec[k].append(out[k].copy())
                rec_v[k].append(state[k][0].copy() if k in state else out[k].copy())
            for k in self.outputs:
                outs[k].append(out[k].copy())
        wall = time.perf_counter() - start
        shape = {op["name"]: tuple(op["shape"]) for op in ops}
        spiking = {op["name"] for op in ops if op.get("spiking")}

        def stack(values, name):
            return np.stack(values).reshape((steps, batch) + shape[name]) if values else np.zeros((0, batch) + shape[name], np.int64)

        deq = 2.0 ** -fx.state_frac
        result = SimulationResult(outputs={k: stack(v, k) * deq for k, v in outs.items()}, backend=TARGET)
        for k in record:
            if k in spiking:
                result.spikes[k] = (stack(rec[k], k) > 0).astype(np.float64)
            result.traces[k] = stack(rec_v[k], k) * deq
        e = ENERGY_PJ
        energy = (counts["adc_conversions"] * e["adc_per_level"] * 2**self.crossbar.adc_bits + counts["rows_driven"] * e["row_drive"]
                  + counts["neuron_updates"] * e["neuron_update"])
        result.stats = {"synaptic_events": counts["synaptic_events"], "neuron_updates": counts["neuron_updates"], "steps": int(steps),
                        "wall_time": wall, "overflows": counts["saturations"], "adc_conversions": counts["adc_conversions"],
                        "rows_driven": counts["rows_driven"], "energy_pj_per_sample": energy / max(batch, 1)}
        return result

    @staticmethod
    def _sat(y, lo, hi, counts):
        counts["saturations"] += int(np.count_nonzero((y < lo) | (y > hi)))
        return np.clip(y, lo, hi)

    def _input_sum(self, op, out, lo, hi, counts):
        sources = op["sources"]
        if not sources:
            return np.zeros((next(iter(out.values())).shape[0], op["size"]), np.int64)
        acc = out[sources[0]].copy()
        for s in sources[1:]:
            acc = self._sat(acc + out[s], lo, hi, counts)
        return acc

    def _neuron(self, op, par, x, z, st, fx, lo, hi, counts):
        v, cur = st
        cf = fx.coef_frac
        kind = op["kind"]
        if kind == "LIF":
            v[:] = self._sat(_shift(par["a"] * v, cf) + _shift(par["c"] * x, cf) + par["b"], lo, hi, counts)
        elif kind == "CUBA":
            cur[:] = self._sat(_shift(par["a_syn"] * cur, cf) + _shift(par["c_syn"] * x, cf), lo, hi, counts)
            v[:] = self._sat(_shift(par["a_mem"] * v, cf) + _shift(par["c_mem"] * cur, cf) + par["b_mem"], lo, hi, counts)
        else:
            v[:] = self._sat(v + _shift(par["c"] * x, cf), lo, hi, counts)
        if not op["spiking"]:
            z[:] = v
            return
        fired = v > par["v_threshold"]
        z[:] = np.where(fired, np.int64(1) << fx.state_frac, 0)
        if op["subtract"]:
            v[fired] = self._sat((v - par["v_threshold"])[fired], lo, hi, counts)
        else:
            v[:] = np.where(fired, par["v_reset"], v)


def load_export(path) -> RramProgram:
    """The program in an rram-lsm export folder (manifest and hashes verified first)."""
    return RramProgram(path)
