"""Slow, obvious reference of a SpiNNaker 2 export: Python integers, one packet at a time.

Reads the export folder by itself (PE images, routing tables, network.json) and runs it tick by
tick: the host's input packets and each PE's spikes are routed chip by chip through the tables
(first matching entry), each receiving PE looks the key up in its master table, walks the synaptic
row of the pre neuron (convolutions: the kernel applied loop by loop, through the pool window) and
adds ``weight * payload`` to its ring buffer ``delay`` ticks ahead. Then PEs update their neurons in
PE order with rounding shifts and saturation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np

LINKS = [(1, 0), (1, 1), (0, 1), (-1, 0), (-1, -1), (0, -1)]


def shift(x: int, frac: int) -> int:
    return x << -frac if frac <= 0 else (x + (1 << (frac - 1))) >> frac


def run(folder, x: np.ndarray):
    """Outputs ``{Output name: [T, B, size] float}`` and spikes ``{population: [T, B, size]}`` of ``x``."""
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    prec = manifest["meta"]["precision"]
    sf, cf, bits = prec["state_frac"], prec["coef_frac"], prec["state_bits"]
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    sat = lambda v: min(max(v, lo), hi)  # noqa: E731
    net = json.loads((folder / "network.json").read_text())
    pes = []
    for name in sorted(k for k in manifest["files"] if k.startswith("pe_")):
        with h5py.File(folder / name, "r") as f:
            pe = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            pe["neurons"] = {k: [int(a) for a in v[()]] for k, v in f["neurons"].items()}
            pe["projections"] = []
            for g in sorted(k for k in f if k.startswith("projection_")):
                proj = dict(f[g].attrs)
                proj.update({k: f[g][k][()] for k in f[g]})
                pe["projections"].append(proj)
        pes.append(pe)
    with h5py.File(folder / "routing.h5", "r") as f:
        width = max(1, math.ceil(math.sqrt(int(f.attrs["chips"]))))
        tables = {}
        for name, grp in f.items():
            tables[int(name.split("_")[1])] = [(int(k), int(m), int(li), [int(c) for c in grp["pes"][grp["pe_ptr"][i]:grp["pe_ptr"][i + 1]]])
                                               for i, (k, m, li) in enumerate(zip(grp["key"][()], grp["mask"][()], grp["links"][()]))]
    at = {(int(p["chip"]), int(p["core"])): i for i, p in enumerate(pes)}

    def route(key: int, chip: int) -> list[int]:
        out, todo, seen = [], [chip], set()
        while todo:
            c = todo.pop()
            if c in seen:
                continue
            seen.add(c)
            for k, m, links, cores in tables.get(c, []):
                if key & m == k:
                    out += [at[(c, core)] for core in cores]
                    cx, cy = c % width, c // width
                    todo += [(cy + LINKS[b][1]) * width + cx + LINKS[b][0] for b in range(6) if links >> b & 1]
                    break
        return out

    steps, batch = x.shape[:2]
    xq = np.floor(x.reshape(steps, batch, -1) * 2.0**sf + 0.5).astype(np.int64)
    pops = {p["name"]: p for p in net["populations"]}
    outputs = {name: np.zeros((steps, batch, pops[pop]["size"])) for name, pop in net["outputs"].items()}
    spikes = {p["name"]: np.zeros((steps, batch, p["size"])) for p in net["populations"] if p["type"] != "spike_list"}
    for b in range(batch):
        state = [{"v": list(p.get("neurons", {}).get("v_init", [0] * (p["hi"] - p["lo"]))), "i": [0] * (p["hi"] - p["lo"]), "out": [0] * (p["hi"] - p["lo"]),
                  "ring": [dict() for _ in p["projections"]]} for p in pes]

        def deliver(src: int, neuron: int, payload: int, t: int):
            key = int(pes[src]["key"]) | neuron
            pre_neuron = int(pes[src]["lo"]) + neuron
            for dst in route(key, int(pes[src]["chip"])):
                for q, proj in enumerate(pes[dst]["projections"]):
                    if proj["pre"] != pes[src]["population"]:
                        continue
                    if not any(key & int(m) == int(k) for k, m in zip(proj["table_key"], proj["table_mask"])):
                        continue
                    for tgt, w, d in synapses(proj, pre_neuron, pes[dst]):
                        ring = state[dst]["ring"][q]
                        ring[(t + d, tgt)] = ring.get((t + d, tgt), 0) + w * payload

        input_pes = [i for i, p in enumerate(pes) if p["model"] == "input"]
        for t in range(steps):
            col = 0
            for i in input_pes:
                for j in range(int(pes[i]["hi"]) - int(pes[i]["lo"])):
                    val = int(xq[t, b, col])
                    col += 1
                    if val:
                        deliver(i, j, val, t)
            for i, pe in enumerate(pes):
                if pe["model"] == "input":
                    continue
                s, nrn = state[i], pe["neurons"]
                for j in range(int(pe["hi"]) - int(pe["lo"])):
                    xin = 0
                    for q, proj in enumerate(pe["projections"]):
                        acc = s["ring"][q].pop((t, j), 0)
                        bias = int(proj["bias"][j]) if "bias" in proj else 0
                        y = sat(shift(acc, int(proj["frac"])) + bias) if t >= int(proj["bias_delay"]) else 0
                        xin = y if q == 0 else sat(xin + y)
                    if pe["model"] == "lif":
                        s["v"][j] = sat(shift(nrn["a"][j] * s["v"][j], cf) + shift(nrn["c"][j] * xin, cf) + nrn["b"][j])
                    elif pe["model"] == "if":
                        s["v"][j] = sat(s["v"][j] + shift(nrn["c"][j] * xin, cf))
                    else:
                        s["i"][j] = sat(shift(nrn["a_syn"][j] * s["i"][j], cf) + shift(nrn["c_syn"][j] * xin, cf))
                        s["v"][j] = sat(shift(nrn["a_mem"][j] * s["v"][j], cf) + shift(nrn["c_mem"][j] * s["i"][j], cf) + nrn["b_mem"][j])
                    if pe["spiking"]:
                        fire = s["v"][j] > nrn["v_threshold"][j]
                        s["out"][j] = (1 << sf) if fire else 0
                        if fire:
                            s["v"][j] = sat(s["v"][j] - nrn["v_threshold"][j]) if pe["subtract"] else nrn["v_reset"][j]
                    else:
                        s["out"][j] = s["v"][j]
                    if s["out"][j]:
                        deliver(i, j, s["out"][j], t)
                    glob = int(pe["lo"]) + j
                    if pe["population"] in spikes:
                        spikes[pe["population"]][t, b, glob] = s["out"][j] > 0
                    for name, pop in net["outputs"].items():
                        if pop == pe["population"]:
                            outputs[name][t, b, glob] = s["out"][j] / 2.0**sf
    return outputs, spikes


def synapses(proj, pre_neuron: int, pe) -> list[tuple[int, int, int]]:
    """``(target within the PE's slice, weight, delay)`` of one pre neuron's row."""
    lo, hi = int(pe["lo"]), int(pe["hi"])
    if proj["kind"] != "conv":
        rows = [int(r) for r in proj["row_pre"]]
        if pre_neuron not in rows:
            return []
        r = rows.index(pre_neuron)
        a, b = int(proj["row_ptr"][r]), int(proj["row_ptr"][r + 1])
        return [(int(proj["target"][s]), int(proj["weight"][s]), int(proj["delay"][s])) for s in range(a, b)]
    geo = json.loads(proj["geometry"])
    kernel = proj["kernel"].astype(np.int64)
    if geo["type"] == "Conv1d":
        kernel = kernel[:, :, None, :]
        c_in, w_in = geo["in_shape"]
        h_in, stride, pad, dil = 1, [1, *geo["stride"]], [0, *geo["padding"]], [1, *geo["dilation"]]
    else:
        c_in, h_in, w_in = geo["in_shape"]
        stride, pad, dil = geo["stride"], geo["padding"], geo["dilation"]
    pos = pre_neuron
    if "pool" in geo:  # the pre neuron's pool window is one input element of the convolution
        pc, ph, pw = geo["pool"]["in_shape"]
        (kh, kw), (py, px) = geo["pool"]["kernel_size"], geo["pool"]["padding"]
        c, y, xx = pos // (ph * pw), pos // pw % ph, pos % pw
        oy, ox = (y + py) // kh, (xx + px) // kw
        if oy >= h_in or ox >= w_in:
            return []
        pos = (c * h_in + oy) * w_in + ox
    ci, iy, ix = pos // (h_in * w_in), pos // w_in % h_in, pos % w_in
    c_out, cin_g, kh, kw = kernel.shape
    groups = int(geo["groups"])
    oh = (h_in + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w_in + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = []
    for co in range(c_out):
        if co // (c_out // groups) != ci // cin_g:
            continue
        for ky in range(kh):
            for kx in range(kw):
                ny, nx = iy + pad[0] - ky * dil[0], ix + pad[1] - kx * dil[1]
                if ny % stride[0] or nx % stride[1]:
                    continue
                oy, ox = ny // stride[0], nx // stride[1]
                w = int(kernel[co, ci % cin_g, ky, kx])
                post = (co * oh + oy) * ow + ox
                if 0 <= oy < oh and 0 <= ox < ow and w and lo <= post < hi:
                    out.append((post - lo, w, int(geo["delay"])))
    return out
