"""The hardware sections: each export folder is reloaded (``load_export`` verifies it) and drawn.

SpiNNaker 2: the SRAM per PE and the PE map, the routing tables and where they deliver packets,
the quantisation of each layer. RRAM: the programmed conductances of every tile as histograms and
the crossbar resources. Any target: the robustness table when the run measured one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from spikeflow.errors import DataError
from spikeflow.report.page import Figure, Section, Table, Text
from spikeflow.report.sections import file_safe, fmt, not_run, part

TILES_SHOWN = 6  # RRAM tiles drawn as conductance histograms


def _as_dict(report) -> dict:
    """A target's report as a plain dict (SpiNNaker 2 returns a Report object)."""
    if report is None:
        return {}
    if hasattr(report, "to_dict"):
        return report.to_dict()
    if not isinstance(report, Mapping):
        raise DataError(f"export report: expected a dict, got {type(report).__name__}")
    return dict(report)


def spinnaker2(prog, stem: str, out: Path) -> list:
    """Tables and figures of a SpiNNaker 2 export (``prog``: its reloaded program)."""
    from spikeflow.backends.spinnaker2.report import pe_map_png, routing_png, sram_png

    rep = prog.report
    if rep is None:
        return [Text("The export folder holds no report.json: nothing to draw.", "note")]
    s = rep.sram_summary()
    rows = [("PEs", rep.pes), ("chips", rep.chips),
            ("SRAM per PE (KB)", f"max {s['max'] / 1024:.1f}, mean {s['mean'] / 1024:.1f} of {rep.data_bytes / 1024:.0f} data"),
            ("routing entries", f"{sum(rep.routing_before.values())} before merging, {sum(rep.routing_after.values())} after")]
    a = rep.activity
    if a:
        rows += [("synaptic events / inference", fmt(a["synaptic_events"])), ("packets / inference", fmt(a["packets"])),
                 ("busiest PE", f"{a['busiest_pe']} ({a['busiest_population']}): {100 * a['busiest_cycles'] / a['tick_budget']:.1f}% "
                                f"of the tick's cycles" + (" (overrun)" if a["overrun"] else "")),
                 ("energy / inference (estimate)", f"{a['energy_j'] * 1e6:.3g} µJ"), ("latency / inference", f"{a['latency_s'] * 1e3:.3g} ms")]
    blocks: list = [Table(["field", "value"], rows, "resources of the export (from its report.json)")]
    if rep.layers:
        blocks.append(Table(["layer", "into", "bits", "scale", "clipped (%)", "rel. error (%)"],
                            [(q["name"], q["post"], q["bits"], fmt(q["scale"], ".3f"), fmt(100 * q["clipped"], ".2f"),
                              fmt(100 * q["rel_error"], ".2f")) for q in rep.layers], "weight quantisation per layer"))
    sram_png(rep, out / f"{stem}-sram.png")
    pe_map_png(rep, out / f"{stem}-pe-map.png")
    routing_png(rep, prog.routes, out / f"{stem}-routing.png")
    return blocks + [Figure(out / f"{stem}-pe-map.png", "PE map: where each population's slices sit, and how full each PE's SRAM is"),
                     Figure(out / f"{stem}-sram.png", "SRAM per PE by part, against the data budget"),
                     Figure(out / f"{stem}-routing.png", "routing table entries per chip, and which PEs receive each PE's packets")]


def conductance_histograms(prog, path: Path, tiles: list[str]) -> Path:
    """Histograms of the programmed conductances (G+ and G-, µS) of each RRAM tile in ``tiles``."""
    from spikeflow.plots import new_figure, save_png

    cols = min(3, len(tiles))
    rows = -(-len(tiles) // cols)
    fig = new_figure(3.6 * cols + 0.6, 2.8 * rows + 0.6)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    second = "G- (offset)" if prog.crossbar.encoding == "offset" else "G-"
    for ax, name in zip(axes, tiles):
        chip = prog.chip(name)
        bins = np.linspace(0.0, max(float(chip.g_plus.max()), float(chip.g_minus.max()), prog.device.g_max) * 1.02, 60)
        ax.hist(chip.g_plus.ravel(), bins=bins, histtype="stepfilled", alpha=0.55, color="tab:red", label="G+")
        ax.hist(chip.g_minus.ravel(), bins=bins, histtype="stepfilled", alpha=0.55, color="tab:blue", label=second)
        ax.set_yscale("log")
        ax.set_title(f"{name} ({chip.g_plus.shape[0]}x{chip.g_plus.shape[1]})", fontsize=9)
        ax.set_xlabel("conductance (µS)")
        ax.set_ylabel("cells")
        ax.legend(fontsize=7)
    for ax in axes[len(tiles):]:
        ax.set_axis_off()
    fig.suptitle(f"programmed RRAM conductances ({prog.crossbar.encoding} encoding, {prog.device.levels} levels, "
                 f"window {prog.device.g_min:g}-{prog.device.g_max:g} µS)", fontsize=10)
    return save_png(fig, path)


def rram(prog, stem: str, out: Path) -> list:
    """Tables and figures of an rram-lsm export (``prog``: its reloaded program)."""
    r = prog.report
    rows = [("tiles", f"{r['tiles']} of {r['tile_shape'][0]}x{r['tile_shape'][1]} cells"), ("cells used", r["cells"]),
            ("utilisation (%)", fmt(100 * r["utilisation"], ".2f")), ("weight encoding", r["encoding"]), ("conductance levels", r["levels"]),
            ("ADC / DAC bits", f"{r['adc_bits']} / {r['dac_bits']}"), ("ADC conversions / step", r["adc_conversions_per_step"]),
            ("tile reads / step (a kernel: one per output position)", r.get("tile_reads_per_step", r["tiles"])), ("neurons (digital periphery)", r["neurons"]), ("energy / step, upper bound (pJ)", fmt(r["energy_per_step_pj_max"], ".4g"))]
    blocks: list = [Table(["field", "value"], rows, "resources of the export (from its program.json)")]
    tiles = [op["name"] for op in prog.ops if op["kind"] in ("Affine", "Linear", "Conv")]
    if not tiles:
        return blocks + [Text("The export holds no crossbar tile to draw.", "note")]
    conductance_histograms(prog, out / f"{stem}-conductances.png", tiles[:TILES_SHOWN])
    more = f" (the first {TILES_SHOWN} of {len(tiles)} tiles)" if len(tiles) > TILES_SHOWN else ""
    blocks.append(Figure(out / f"{stem}-conductances.png", f"programmed conductances of each crossbar tile{more}"))
    return blocks


#: target name -> the drawing of its reloaded export
DRAWINGS = {"spinnaker2": spinnaker2, "rram-lsm": rram}


def robustness(rob) -> list:
    """The robustness table (accuracy under device effects, ...) when the run measured one:
    ``{"rows": [{"case", "accuracy"}, ...]}`` beside the export's report (or inside it)."""
    if not rob:
        return []
    if not isinstance(rob, Mapping):
        raise DataError(f"export 'robustness': expected a dict with 'rows', got {type(rob).__name__}")
    rows = part(rob, "rows", list, "export ['robustness']") or []
    return [Table(["case", "accuracy (%)"], [(r.get("case", "n/a"), fmt(None if r.get("accuracy") is None else 100 * r["accuracy"], ".2f"))
                                              for r in rows], "robustness")]


def export_sections(run: Mapping, out: Path, draw) -> list[Section]:
    """One section per exported target (``draw(section, builder)`` fills it, catching problems)."""
    exports = run.get("exports")
    if not isinstance(exports, (Mapping, type(None))):
        return [draw(Section("export", "Hardware export"), lambda: part(run, "exports"))]  # shows the type error
    if not exports:
        return [draw(Section("export", "Hardware export"), lambda: [not_run("export", "no [[export]] table in the pipeline file")])]
    sections = []
    for target, entry in exports.items():
        stem = f"export-{file_safe(target)}"
        section = Section(stem, f"Hardware export: {target}")
        draw(section, lambda target=target, entry=entry, stem=stem: _export(target, entry, stem, out))
        sections.append(section)
    return sections


def _export(target: str, entry: Mapping, stem: str, out: Path) -> list:
    from spikeflow.backends import load_export

    if not isinstance(entry, Mapping):
        raise DataError(f"run['exports'][{target!r}]: expected a dict with 'path' and 'report', got {type(entry).__name__}")
    report = _as_dict(entry.get("report"))
    blocks: list = [Text(f"export folder: {entry.get('path', 'n/a')}", "meta")]
    drawing = DRAWINGS.get(target)
    if entry.get("path") is None:
        blocks.append(Text("The run names no export folder to reload: no figures.", "note"))
    elif drawing is None:
        scalars = [(k, v if isinstance(v, str) else fmt(v)) for k, v in report.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)]
        blocks += [Table(["field", "value"], scalars, "the target's report"), Text(f"The report draws no figures for target {target!r}.", "note")]
    else:
        blocks += drawing(load_export(entry["path"]), stem, out)
    return blocks + robustness(entry.get("robustness") or report.get("robustness"))
