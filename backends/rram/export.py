"""Export to the rram-lsm target, a pipeline of named stages:

1. ``check``: every node is a matrix (Affine/Linear) or a convolution (Conv1d/Conv2d, its im2col
   matrix) on the crossbar, or a LIF-family neuron, Scale, Flatten, SumPool2d, AvgPool2d, Input or
   Output (digital periphery); anything else is an impossible mapping.
2. ``quantise``: the converters' fixed-point format (:meth:`Crossbar.precision`) and each row
   tile's integer levels (:func:`~.crossbar.split_rows`); the hardware graph whose weights are
   exactly those levels (a row tile of a convolution is a convolution whose kernel is zero outside
   the tile's input channels).
3. ``map``: tiles on the chip (``max_tiles``), cells (once per matrix), reads, ADC conversions and
   rows driven per step (once per output position of a convolution), energy per step (the report).
4. ``program``: the device model samples the chip (programming noise, stuck cells, drift exponents)
   once, seeded; its conductances are saved so a readout is trained against the chip it runs on.
5. ``write``: ``program.json`` (ops, formats, the programming plan), ``arrays.h5`` (integer
   parameters, target levels and sampled conductances), ``graph.h5`` (the hardware graph), in a
   versioned export folder (manifest with hashes, atomic).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import numpy as np

from spikeflow.errors import BackendError
from spikeflow.ir import Graph
from spikeflow.ir import nodes as n
from spikeflow.ir.discretise import coefficients

from ..export_folder import writing
from .crossbar import (CONV_NODES, ENERGY_PJ, MATRIX_NODES, NEURON_NODES, PLAIN_NODES, Crossbar, TileMap, conv_row_step, kernel_matrix,
                       physical_cells, split_rows)
from .device import Device

TARGET = "rram-lsm"
VERSION = 3
"""2: an IF op may carry ``v_init`` (its initial membrane, a converted network's half-threshold
pulse); 3: Conv ops (a convolution's row tile) and SumPool2d/AvgPool2d ops. Older exports still load."""
#: Integer parameters of each neuron type and their fixed-point roles (as the numba lowering quantises them).
NEURON_ROLES = {
    "LIF": (("a", "coef"), ("b", "state"), ("c", "coef")),
    "CUBA": (("a_syn", "coef"), ("c_syn", "coef"), ("a_mem", "coef"), ("c_mem", "coef"), ("b_mem", "state")),
    "IF": (("c", "coef"),),
}


def _kind(node) -> str:
    if isinstance(node, CONV_NODES):
        return "Conv"
    if isinstance(node, (n.LIF, n.LI)):
        return "LIF"
    if isinstance(node, (n.CubaLIF, n.CubaLI)):
        return "CUBA"
    if isinstance(node, (n.IF, n.I)):
        return "IF"
    return type(node).__name__


def _dense(weight) -> np.ndarray:
    if hasattr(weight, "toarray"):
        return np.asarray(weight.toarray(), np.float64)
    return np.asarray(weight, np.float64)


def check(graph: Graph) -> Graph:
    """Stage 1: the flattened graph (a converted network's pulse split off), or a BackendError
    naming the node that cannot be mapped."""
    return split_check(graph)[0]


def split_check(graph: Graph):
    """Stage 1: ``(flattened graph without the pulse, pulse or None)``. A converted network's
    half-threshold pulse (:mod:`spikeflow.backends.pulse`) becomes the IF layers' initial membranes:
    no tiles, no converters."""
    from ..pulse import split

    if not isinstance(graph, Graph):
        raise BackendError(f"argument 'graph': expected a spikeflow.Graph, got {type(graph).__name__}")
    graph.validate()
    flat, pulse = split(graph.flatten(), BackendError)
    for name, node in flat.nodes.items():
        if not isinstance(node, MATRIX_NODES + CONV_NODES + NEURON_NODES + PLAIN_NODES):
            raise BackendError(
                f"node {name!r} of type {type(node).__name__} cannot be mapped onto target {TARGET!r}: the crossbar runs "
                "Affine/Linear matrices and Conv1d/Conv2d kernels, the periphery the LIF family (LIF, LI, IF, I, CubaLIF, "
                "CubaLI), Scale, Flatten, SumPool2d, AvgPool2d"
            )
    return flat, pulse


def quantise_graph(flat: Graph, crossbar: Crossbar, device: Device):
    """Stage 2: ``(hardware graph, FixedPoint, {matrix node: [TileMap]})``."""
    rename = {k: k.replace(".", "__") for k in flat.nodes}
    if len(set(rename.values())) != len(rename):
        raise BackendError("node names collide after replacing '.' of nested graphs by '__'; rename the nested nodes")
    thresholds = [np.asarray(getattr(node, "v_threshold", getattr(node, "threshold", 0.0))) for node in flat.nodes.values() if node.spiking]
    fixed = crossbar.precision(device, thresholds)
    shapes = flat.shapes()
    nodes: dict[str, n.Node] = {}
    tiles: dict[str, list[TileMap]] = {}
    for name, node in flat.nodes.items():
        new = rename[name]
        if isinstance(node, CONV_NODES):  # the im2col matrix, read once per output position
            weight, step, reads = kernel_matrix(node), conv_row_step(node, crossbar), math.prod(shapes[name][1:])
        elif isinstance(node, MATRIX_NODES):
            weight, step, reads = _dense(node.weight), None, 1
        else:
            nodes[new] = node
            continue
        bias = getattr(node, "bias", None)
        if bias is not None:
            q_bias, _ = fixed.quantise_role(np.broadcast_to(np.asarray(bias, np.float64), (weight.shape[0],)), "state")
            bias = q_bias * 2.0 ** -fixed.state_frac
        tiles[new] = split_rows(new, weight, bias, crossbar, device, fixed, step, reads)
        for t in tiles[new]:
            full = np.zeros_like(weight)
            full[:, t.rows[0] : t.rows[1]] = t.levels * 2.0 ** -t.frac
            nodes[t.name] = _tile_node(node, full, t.bias)
    ends = {k: [t.name for t in tiles[k]] if k in tiles else [k] for k in rename.values()}
    edges = [(a2, b2) for a, b in flat.edges for a2 in ends[rename[a]] for b2 in ends[rename[b]]]
    hw = Graph(nodes, edges, dt=flat.dt, integration=flat.integration, metadata={"target": TARGET})
    hw.validate()
    return hw, fixed, tiles


def _tile_node(node, weight: np.ndarray, bias):
    """The hardware graph's node of one row tile: the matrix (or kernel) zero outside its rows."""
    if isinstance(node, CONV_NODES):
        kernel = weight.reshape((weight.shape[0], -1) + node.weight.shape[2:])
        return replace(node, weight=kernel, bias=np.zeros(weight.shape[0]) if bias is None else bias, groups=1)
    return n.Affine(weight=weight, bias=bias) if bias is not None else n.Linear(weight=weight)


def conv_geometry(node, in_shape, out_shape) -> dict[str, list[int]]:
    """A convolution's or pooling's geometry as a 2-d one (a Conv1d has height 1)."""
    if isinstance(node, n.Conv1d):
        return {"in_shape": [in_shape[0], 1, in_shape[1]], "out_shape": [out_shape[0], 1, out_shape[1]],
                "kernel": [1, node.weight.shape[2]], "stride": [1, *node.stride], "padding": [0, *node.padding],
                "dilation": [1, *node.dilation]}
    kernel = node.weight.shape[2:] if isinstance(node, n.Conv2d) else node.kernel_size
    return {"in_shape": list(in_shape), "out_shape": list(out_shape), "kernel": [int(k) for k in kernel],
            "stride": list(node.stride), "padding": list(node.padding), "dilation": list(getattr(node, "dilation", (1, 1)))}


def plan(hw: Graph, tiles: dict[str, list[TileMap]], crossbar: Crossbar, device: Device, fixed) -> dict[str, Any]:
    """Stage 3: the programming plan and the resource report."""
    arrays, cells, conversions, rows_driven, reads, cells_read = [], 0, 0, 0, 0, 0
    for node, parts in tiles.items():
        for t in parts:  # cells once; reads, conversions and rows driven once per output position
            n_out, n_rows = t.levels.shape
            for c in range(t.col_tiles):
                lo, hi = c * crossbar.weights_per_tile, min((c + 1) * crossbar.weights_per_tile, n_out)
                arrays.append({"node": node, "tile_node": t.name, "rows": list(t.rows), "outputs": [lo, hi], "adc_shift": t.frac,
                               "cells": physical_cells(hi - lo, n_rows, crossbar), "reads_per_step": t.reads})
            cells += physical_cells(n_out, n_rows, crossbar)
            cells_read += physical_cells(n_out, n_rows, crossbar) * t.reads
            conversions += n_out * t.reads
            rows_driven += n_rows * t.col_tiles * t.reads
            reads += t.col_tiles * t.reads
    if crossbar.max_tiles is not None and len(arrays) > crossbar.max_tiles:
        biggest = max(tiles.items(), key=lambda kv: sum(t.col_tiles for t in kv[1]))[0]
        raise BackendError(
            f"target {TARGET!r}: the graph needs {len(arrays)} tiles of {crossbar.tile_rows}x{crossbar.tile_cols} cells, the chip has "
            f"{crossbar.max_tiles} (largest matrix: node {biggest!r}); use fewer or smaller matrices, or raise max_tiles"
        )
    neurons = sum(math.prod(hw.shapes()[k]) for k, v in hw.nodes.items() if isinstance(v, NEURON_NODES))
    e = ENERGY_PJ
    energy_adc = conversions * e["adc_per_level"] * 2**crossbar.adc_bits
    return {
        "target": TARGET,
        "tiles": len(arrays),
        "tile_shape": [crossbar.tile_rows, crossbar.tile_cols],
        "cells": int(cells),
        "utilisation": cells / max(len(arrays) * crossbar.tile_rows * crossbar.tile_cols, 1),
        "encoding": crossbar.encoding,
        "levels": device.levels,
        "adc_bits": crossbar.adc_bits,
        "dac_bits": crossbar.dac_bits,
        "adc_conversions_per_step": int(conversions),
        "tile_reads_per_step": int(reads),
        "rows_driven_per_step_max": int(rows_driven),
        "neurons": int(neurons),
        "energy_per_step_pj_max": energy_adc + rows_driven * e["row_drive"] + cells_read * device.g_max * e["cell_read_per_us"] / 2
        + neurons * e["neuron_update"],
        "energy_constants_pj": dict(e),
        "precision": {"weight_bits": fixed.weight_bits, "state_bits": fixed.state_bits, "state_frac": fixed.state_frac,
                      "coef_bits": fixed.coef_bits, "coef_frac": fixed.coef_frac},
        "arrays": arrays,
    }


def _map(graph: Graph, device, options: dict):
    """Stages 1-3: ``(device, crossbar, pulse, hardware graph, FixedPoint, tiles, report)``."""
    options = dict(options)
    dev = Device.preset(device, **(options.pop("device_overrides", None) or {}))
    crossbar = Crossbar.from_options(**options)
    flat, pulse = split_check(graph)
    hw, fixed, tiles = quantise_graph(flat, crossbar, dev)
    return dev, crossbar, pulse, hw, fixed, tiles, plan(hw, tiles, crossbar, dev, fixed)


def mapping(graph: Graph, *, device: Any = "default", seed: int = 0, **options: Any) -> dict[str, Any]:
    """The report :func:`export` would return, without programming or writing anything (cheap: the
    pipeline checks a model with it before training); a BackendError names what cannot be mapped."""
    return _map(graph, device, options)[-1]


def export(graph: Graph, path, *, device: Any = "default", seed: int = 0, **options: Any) -> dict[str, Any]:
    """Export ``graph`` to the rram-lsm target folder ``path``; returns the report.

    Args:
        graph: any graph of matrices and LIF-family neurons (a reservoir, a trained SNN, ...).
        path: the export folder (replaced atomically).
        device: "default", "ideal", a dict of :class:`Device` fields or a Device.
        seed: seeds the sampled chip (programming noise, stuck cells, drift exponents).
        **options: :class:`Crossbar` fields (``tile_rows``, ``encoding``, ``adc_bits``, ...) and
            ``device_overrides`` (a dict of Device fields applied on top of ``device``).
    """
    dev, crossbar, pulse, hw, fixed, tiles, report = _map(graph, device, options)
    initial, graph_out = {}, hw
    if pulse is not None:  # the hardware graph keeps the pulse, so sf.simulate(prog.graph) runs it; the chip starts from it
        from ..pulse import initial_values, restore

        graph_out = restore(hw, pulse, {})
        initial = initial_values(graph_out, pulse, fixed, BackendError)
    arrays_plan = report.pop("arrays")
    rng = np.random.default_rng(seed)
    chips = {t.name: dev.program(t.levels, crossbar.encoding, rng) for parts in tiles.values() for t in parts}
    shapes = hw.shapes()
    ops, arrays = [], {}
    for name in hw.order():
        node = hw.nodes[name]
        sources = sorted(a for a, b in hw.edges if b == name)
        op = {"name": name, "kind": _kind(node), "sources": sources, "shape": list(shapes[name])}
        size = math.prod(shapes[name])
        if isinstance(node, MATRIX_NODES + CONV_NODES):
            t = next(t for parts in tiles.values() for t in parts if t.name == name)
            op.update(rows=list(t.rows), frac=t.frac, n_in=int(math.prod(node.weight.shape[1:])), bias=t.bias is not None)
            if isinstance(node, CONV_NODES):
                op.update(conv=conv_geometry(node, shapes[sources[0]], shapes[name]))
            chip = chips[name]
            arrays[f"{name}/target"] = chip.target
            arrays[f"{name}/g_plus"], arrays[f"{name}/g_minus"], arrays[f"{name}/nu"] = chip.g_plus, chip.g_minus, chip.nu
            if t.bias is not None:
                arrays[f"{name}/bias"] = fixed.quantise_role(t.bias, "state")[0]
        elif isinstance(node, (n.SumPool2d, n.AvgPool2d)):  # digital periphery: window sums (and a rounded division)
            op.update(pool=conv_geometry(node, shapes[sources[0]], shapes[name]))
        elif isinstance(node, n.Scale):
            arrays[f"{name}/scale"] = fixed.quantise_role(np.broadcast_to(np.asarray(node.scale, np.float64), shapes[name]).reshape(-1), "coef")[0]
        elif isinstance(node, n.Threshold):
            op.update(spiking=True)
            arrays[f"{name}/threshold"] = fixed.quantise_role(np.broadcast_to(np.asarray(node.threshold, np.float64), shapes[name]).reshape(-1), "threshold")[0]
        elif isinstance(node, NEURON_NODES):
            coef = {k: np.broadcast_to(np.asarray(v, np.float64), shapes[name]).reshape(-1)
                    for k, v in coefficients(node, hw.dt, hw.integration, where=f"node {name!r}: ").items()}
            for key, role in NEURON_ROLES[op["kind"]]:
                arrays[f"{name}/{key}"] = fixed.quantise_role(coef[key], role)[0]
            op.update(spiking=bool(node.spiking), subtract=getattr(node, "reset", "zero") == "subtract")
            if node.spiking:
                arrays[f"{name}/v_threshold"] = fixed.quantise_role(coef["v_threshold"], "threshold")[0]
                arrays[f"{name}/v_reset"] = fixed.quantise_role(coef["v_reset"], "state")[0]
            if name in initial:
                op.update(v_init=True)
                arrays[f"{name}/v_init"] = initial[name]
        op["size"] = size
        ops.append(op)
    program = {
        "ops": ops, "inputs": hw.inputs, "outputs": hw.outputs, "dt": hw.dt,
        "precision": report["precision"], "crossbar": crossbar.to_dict(), "device": dev.to_dict(),
        "device_ideal": dev.ideal, "seed": int(seed), "report": report, "plan": arrays_plan,
    }
    from spikeflow.io.hdf5 import save

    with writing(path, target=TARGET, version=VERSION, meta={"tiles": report["tiles"], "cells": report["cells"]}) as tmp:
        (tmp / "program.json").write_text(json.dumps(program, indent=1, sort_keys=True))
        _write_arrays(tmp / "arrays.h5", arrays)
        save(graph_out, tmp / "graph.h5")
    return report


def _write_arrays(path, arrays: dict[str, np.ndarray]) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["format"] = "spikeflow-rram-arrays"
        f.attrs["version"] = VERSION
        for key, value in arrays.items():
            f.create_dataset(key, data=np.ascontiguousarray(value))
