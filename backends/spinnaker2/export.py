"""The export pipeline: check -> quantise -> partition and place -> route -> write the folder.

The folder (format version :data:`VERSION`, see :mod:`spikeflow.backends.export_folder`) holds:

* ``pe_NNNN.h5``: one image per PE: its slice, neuron parameters (int64; ``v_init``, the initial
  membrane, for a converted network's IF populations), and per incoming
  projection the master-table entries (key, mask of each sending slice), the synaptic rows (dense
  projections: CSR by pre neuron, target index within the slice, weight, delay) or the int8 kernel
  and geometry (convolutions), the bias, the weight fraction and the ring length;
* ``routing.h5``: the merged routing table of every chip;
* ``network.json``: a py-spinnaker2-style description (populations with their parameters,
  ``max_atoms_per_core`` and scale, projections with their fractions; the ``[pre, post, weight,
  delay]`` lists in ``projections.h5``);
* ``graph.h5``: the dequantised graph (spikeflow's own format);
* ``report.json``: the resource report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikeflow.ir import nodes as n

from ..export_folder import writing
from . import report as report_mod
from .partition import Slice, place, slice_memory, slice_size
from .quantise import quantise
from .route import index_bits, route, slice_key
from .synapses import neuron_params, post_bias, projection_synapses
from .target import Target, make_target, precision

TARGET = "spinnaker2"
VERSION = 2
"""2: optional ``neurons/v_init`` per PE (initial membrane, integers; absent: zero). Version 1 exports still load."""


@dataclass
class Plan:
    """Everything the export decided, before it is written."""

    target: Target
    network: object
    graph: object
    layers: list
    counts: dict
    models: dict = field(default_factory=dict)  # population -> model
    params: dict = field(default_factory=dict)  # population -> {field: ints}
    synapses: dict = field(default_factory=dict)  # projection index -> (pre, post, w, d) sorted by pre
    biases: dict = field(default_factory=dict)
    fracs: dict = field(default_factory=dict)
    slices: list = field(default_factory=list)
    slice_of: dict = field(default_factory=dict)
    keys: dict = field(default_factory=dict)  # global PE -> (key, mask)
    tables: dict = field(default_factory=dict)
    entries_before: dict = field(default_factory=dict)
    bits: int = 0
    post_order: dict = field(default_factory=dict)  # projection index -> (synapse order by post, posts in that order)


def plan(graph, *, chip=None, samples=None, percentile: float = 100.0, population_scale: bool = True, silent: str = "error",
         record_ticks: int = 100) -> Plan:
    """Run every stage but the writing."""
    target = make_target(chip)
    fixed = precision()
    net, qgraph, layers, counts = quantise(graph, target, fixed, samples=samples, percentile=percentile,
                                           population_scale=population_scale, silent=silent)
    p = Plan(target, net, qgraph, layers, counts)
    p.fracs = {q.name: q.frac for q in layers}
    g = net.graph
    for name, pop in net.populations.items():
        if pop.kind == "input":
            p.models[name], p.params[name] = "input", {}
        else:
            p.models[name], p.params[name] = neuron_params(pop.node, pop.shape, g.dt, g.integration, fixed)
    if net.pulse is not None:  # a converted network: the pulse becomes each IF population's initial membrane
        from ..pulse import initial_values
        from .check import DesignRuleError

        for name, v0 in initial_values(qgraph, net.pulse, fixed, DesignRuleError).items():
            p.params[name]["v_init"] = v0
    for i, proj in enumerate(net.projections):
        n_pre, n_post = net.populations[proj.pre].size, net.populations[proj.post].size
        p.synapses[i] = projection_synapses(proj, n_pre, p.fracs[proj.name])
        p.biases[i] = post_bias(proj, fixed.state_frac, n_post)
    # slice sizes in execution order (a pre population is sized before its targets need its slice size)
    by_post: dict[str, list] = {}
    for i, proj in enumerate(net.projections):
        pre, post, w, d = p.synapses[i]
        order = np.argsort(post, kind="stable")
        p.post_order[i] = (order, post[order])
        by_post.setdefault(proj.post, []).append((proj, p.fracs[proj.name], pre[order], post[order], w[order], int(d.max(initial=0)),
                                                  p.biases[i]))
    for name, pop in net.populations.items():  # provisional sizes: recurrent sources are sized after their targets
        p.slice_of[name] = min(pop.size, target.max_atoms_per_core)
    for _ in range(4):  # a population fed back from a later one is sized against its provisional slices: repeat until stable
        before = dict(p.slice_of)
        for name, pop in net.populations.items():
            if pop.kind != "input":
                p.slice_of[name] = slice_size(name, pop, p.models[name], p.params[name], by_post.get(name, []), p.slice_of, target,
                                              record_ticks)
        if p.slice_of == before:
            break

    def memory_of(name, lo, hi):
        pop = net.populations[name]
        params = p.params[name]
        uniform = all(np.all(v == v[0]) for v in params.values())
        return slice_memory(pop, p.models[name], params, by_post.get(name, []), p.slice_of, lo, hi, record_ticks, uniform)

    sizes = {k: v.size for k, v in net.populations.items()}
    p.slices = place(list(net.populations), sizes, p.slice_of, memory_of, target)
    p.bits = index_bits(max(p.slice_of.values()))
    p.keys = {s.pe: slice_key(s.pe, p.bits) for s in p.slices}
    sources = []
    first_pe = {}
    for s in p.slices:
        first_pe.setdefault(s.population, s.pe)
    for s in p.slices:
        dests = set()
        for i, proj in enumerate(net.projections):
            if proj.pre != s.population:
                continue
            pre, post, _, _ = p.synapses[i]
            a, b = np.searchsorted(pre, s.lo), np.searchsorted(pre, s.hi)
            for k in np.unique(post[a:b] // p.slice_of[proj.post]):
                t = p.slices[first_pe[proj.post] + int(k)]
                dests.add((t.chip, t.core))
        key, mask = p.keys[s.pe]
        sources.append((key, mask, s.chip, sorted(dests)))
    p.tables, p.entries_before = route(sources, target)
    return p


def export(graph, path, *, chip=None, samples=None, percentile: float = 100.0, population_scale: bool = True,
           silent: str = "error", record_ticks: int = 100, picture: bool = True):
    """Export ``graph`` for SpiNNaker 2 into the folder ``path``; returns the :class:`~.report.Report`.

    Args:
        chip: a :class:`~.target.Target` or a dict overriding its fields (e.g. ``{"chips": 4}``).
        samples: calibration inputs ``[T, B, ...]``: activity-weighted clipping, the silence
            pre-flight, and the activity figures of the report.
        percentile: clipping percentile of ``|w|`` per layer (100: the largest weight).
        population_scale: stretch each spiking population's weights to the full integer range.
        silent: "error" (default) or "warn" when a layer falls silent after quantisation.
        record_ticks: ticks of recording buffer reserved on every PE.
        picture: also write ``sram.png`` (SRAM per PE) beside the folder's data.
    """
    from . import egru

    if egru.is_egru_graph(graph):
        return _export_egru(graph, path, make_target(chip), record_ticks, picture)
    p = plan(graph, chip=chip, samples=samples, percentile=percentile, population_scale=population_scale, silent=silent,
             record_ticks=record_ticks)
    rep = report_mod.build(p, samples)
    meta = {"precision": _precision_dict(), "pes": len(p.slices), "chips": max(s.chip for s in p.slices) + 1}
    with writing(path, target=TARGET, version=VERSION, meta=meta) as tmp:
        _write(p, tmp, rep)
        if picture:
            report_mod.sram_png(rep, tmp / "sram.png")
    return rep


def _precision_dict() -> dict:
    f = precision()
    return {k: getattr(f, k) for k in ("weight_bits", "state_bits", "state_frac", "threshold_bits", "coef_bits", "coef_frac")}


def _write(p: Plan, tmp: Path, rep) -> None:
    import h5py

    from spikeflow.io.hdf5 import save

    net, target = p.network, p.target
    save(p.graph, tmp / "graph.h5")
    (tmp / "report.json").write_text(json.dumps(rep.to_dict(), indent=1))
    (tmp / "network.json").write_text(json.dumps(_network_json(p), indent=1))
    with h5py.File(tmp / "projections.h5", "w") as f:
        for i, proj in enumerate(net.projections):
            f.create_dataset(f"{i:03d}_{proj.name}", data=np.stack(p.synapses[i], axis=1).astype(np.int32), compression="gzip")
    _write_routing(tmp, p.tables, p.entries_before, target.chips, p.bits)
    first_pe = {}
    for s in p.slices:
        first_pe.setdefault(s.population, s.pe)
    for s in p.slices:
        _write_pe(p, s, tmp / f"pe_{s.pe:04d}.h5", first_pe)


def _export_egru(graph, path, target: Target, record_ticks: int, picture: bool):
    """An EGRU graph: FP32 value-event populations (see :mod:`.egru`)."""
    from spikeflow.io.hdf5 import save

    from . import egru

    p = egru.plan(graph, target, record_ticks)
    sram = [{"pe": s.pe, "population": s.population, "model": "egru" if s.population in p["feeds"] else "input", "chip": s.chip,
             "core": s.core, "neurons": s.size, "bytes": {k: int(v) for k, v in s.memory.items()}} for s in p["slices"]]
    rep = report_mod.Report(pes=len(p["slices"]), chips=max(s.chip for s in p["slices"]) + 1, sram=sram, data_bytes=target.data_bytes,
                            routing_before={str(k): v for k, v in p["before"].items()},
                            routing_after={str(k): len(v) for k, v in p["tables"].items()}, layers=[])
    meta = {"precision": "float32", "pes": rep.pes, "chips": rep.chips}
    with writing(path, target=TARGET, version=VERSION, meta=meta) as tmp:
        save(graph, tmp / "graph.h5")
        (tmp / "report.json").write_text(json.dumps(rep.to_dict(), indent=1))
        _write_routing(tmp, p["tables"], p["before"], target.chips, p["bits"])
        egru.write(p, tmp)
        if picture:
            report_mod.sram_png(rep, tmp / "sram.png")
    return rep


def _write_routing(tmp: Path, tables: dict, before: dict, chips: int, bits: int) -> None:
    import h5py

    with h5py.File(tmp / "routing.h5", "w") as f:
        f.attrs["chips"] = chips
        f.attrs["index_bits"] = bits
        for chip, entries in tables.items():
            grp = f.create_group(f"chip_{chip:04d}")
            grp.create_dataset("key", data=np.array([e.key for e in entries], np.int64))
            grp.create_dataset("mask", data=np.array([e.mask for e in entries], np.int64))
            grp.create_dataset("links", data=np.array([sum(1 << k for k in e.links) for e in entries], np.int64))
            grp.create_dataset("pe_ptr", data=np.cumsum([0] + [len(e.pes) for e in entries]).astype(np.int64))
            grp.create_dataset("pes", data=np.array([c for e in entries for c in e.pes], np.int64))
            grp.attrs["entries_before_merge"] = before[chip]


def _write_pe(p: Plan, s: Slice, file: Path, first_pe: dict) -> None:
    import h5py

    net = p.network
    pop = net.populations[s.population]
    key, mask = p.keys[s.pe]
    with h5py.File(file, "w") as f:
        a = f.attrs
        a.update(population=s.population, model=p.models[s.population], lo=s.lo, hi=s.hi, chip=s.chip, core=s.core, pe=s.pe,
                 key=key, mask=mask, spiking=pop.spiking, subtract=getattr(pop.node, "reset", "zero") == "subtract",
                 memory=json.dumps(s.memory), population_size=pop.size)
        nrn = f.create_group("neurons")
        for k, v in p.params[s.population].items():
            nrn.create_dataset(k, data=v[s.lo:s.hi])
        for i, proj in enumerate(net.projections):
            if proj.post != s.population:
                continue
            pre, post, w, d = p.synapses[i]
            order, sorted_post = p.post_order[i]
            here = np.sort(order[np.searchsorted(sorted_post, s.lo):np.searchsorted(sorted_post, s.hi)])  # keeps the (pre, post) order
            grp = f.create_group(f"projection_{len([k for k in f if k.startswith('projection_')]):02d}")
            grp.attrs.update(name=proj.name, pre=proj.pre, frac=p.fracs[proj.name], bias_delay=proj.bias_delay, source=proj.source,
                             kind="conv" if proj.conv else "dense", ring=int(d.max(initial=0)) + 1)
            pre_step = p.slice_of[proj.pre]
            senders = np.unique(pre[here] // pre_step)
            grp.create_dataset("table_key", data=np.array([p.keys[first_pe[proj.pre] + int(k)][0] for k in senders], np.int64))
            grp.create_dataset("table_mask", data=np.array([p.keys[first_pe[proj.pre] + int(k)][1] for k in senders], np.int64))
            bias = p.biases[i]
            if bias is not None:
                grp.create_dataset("bias", data=bias[s.lo:s.hi])
            if proj.conv:
                node = proj.node
                grp.create_dataset("kernel", data=np.rint(np.asarray(node.weight) * 2.0 ** p.fracs[proj.name]).astype(np.int8))
                geo = {"type": type(node).__name__, "in_shape": list(proj.in_shape), "stride": list(node.stride),
                       "padding": list(node.padding), "dilation": list(node.dilation), "groups": int(node.groups),
                       "delay": int(proj.delayed), "pre_size": net.populations[proj.pre].size}
                if proj.pool is not None:
                    geo["pool"] = {"kernel_size": list(proj.pool.kernel_size), "padding": list(proj.pool.padding), "in_shape": list(proj.pool_in)}
                grp.attrs["geometry"] = json.dumps(geo)
            else:
                rows_pre, start = np.unique(pre[here], return_index=True)
                grp.create_dataset("row_pre", data=rows_pre.astype(np.int64))
                grp.create_dataset("row_ptr", data=np.append(start, here.size).astype(np.int64))
                grp.create_dataset("target", data=(post[here] - s.lo).astype(np.uint16))
                grp.create_dataset("weight", data=w[here].astype(np.int8))
                grp.create_dataset("delay", data=d[here].astype(np.uint8))


def _network_json(p: Plan) -> dict:
    net, f = p.network, precision()
    scale = {q.post: q.scale for q in p.layers}
    pops = []
    for name, pop in net.populations.items():
        entry = {"name": name, "type": "spike_list" if pop.kind == "input" else ("lif_conv2d" if _conv_fed(net, name) else pop.kind),
                 "size": pop.size, "shape": list(pop.shape), "ir_type": type(pop.node).__name__,
                 "max_atoms_per_core": p.slice_of[name], "scale": scale.get(name, 1.0)}
        params = p.params[name]
        if params:
            first = {k: int(v[0]) for k, v in params.items()}
            uniform = all(np.all(v == v[0]) for v in params.values())
            entry["params"] = {
                "threshold": first["v_threshold"] / 2.0**f.state_frac if pop.spiking else None,
                "alpha_decay": first.get("a", first.get("a_mem", 1 << f.coef_frac)) / 2.0**f.coef_frac,
                "i_offset": first.get("b", first.get("b_mem", 0)) / 2.0**f.state_frac,
                "v_reset": first["v_reset"] / 2.0**f.state_frac, "v_init": first.get("v_init", 0) / 2.0**f.state_frac,
                "reset": "reset_by_subtraction" if getattr(pop.node, "reset", "zero") == "subtract" else "reset_to_v_reset",
                "uniform": bool(uniform),
            }
            if "a_syn" in first:
                entry["params"]["exc_decay"] = entry["params"]["inh_decay"] = first["a_syn"] / 2.0**f.coef_frac
                entry["params"]["t_refrac"] = 0
        pops.append(entry)
    projs = []
    for i, proj in enumerate(net.projections):
        pre, post, w, d = p.synapses[i]
        projs.append({"pre": proj.pre, "post": proj.post, "layer": proj.name, "type": "conv2d" if proj.conv else ("one_to_one" if proj.one_to_one else "dense"),
                      "weight_frac": p.fracs[proj.name], "synapses": int(w.size), "max_delay": int(d.max(initial=0)),
                      "conns": f"projections.h5:{i:03d}_{proj.name}"})
    return {"format": "py-spinnaker2-style", "dt": net.graph.dt, "populations": pops, "projections": projs,
            "outputs": net.outputs, "index_bits": p.bits}


def _conv_fed(net, name) -> bool:
    return any(q.conv for q in net.incoming(name))
