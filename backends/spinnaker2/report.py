"""The resource report of an export: PEs, chips, SRAM, routing entries, activity, time and energy.

Activity figures (synaptic events, packets, MACs, cycles) need calibration samples: the
dequantised graph is run in the target's fixed point (bit-identical to the export's executor),
and each pre neuron's events are multiplied by its synapses on each PE. Cycles and energy use the
per-operation constants of :class:`~.target.Target` (estimates; override them for a real board).
"""

from __future__ import annotations


from dataclasses import dataclass, field

import numpy as np


@dataclass
class Report:
    pes: int
    chips: int
    sram: list[dict]  # per PE: population, chip, core, neurons, bytes by part
    data_bytes: int
    routing_before: dict
    routing_after: dict
    layers: list[dict]
    spike_counts: dict = field(default_factory=dict)
    activity: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict) -> "Report":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def sram_summary(self) -> dict:
        totals = [sum(pe["bytes"].values()) for pe in self.sram]
        by_kind: dict[str, list[int]] = {}
        for pe, t in zip(self.sram, totals):
            by_kind.setdefault(pe["model"], []).append(t)
        return {"max": max(totals), "mean": float(np.mean(totals)),
                "by_kind": {k: {"pes": len(v), "max": max(v), "mean": float(np.mean(v))} for k, v in by_kind.items()}}

    def __str__(self) -> str:
        return self.text()

    def text(self) -> str:
        s = self.sram_summary()
        lines = [f"SpiNNaker 2 export: {self.pes} PEs on {self.chips} chip(s)",
                 f"SRAM per PE: max {s['max'] / 1024:.1f} KB, mean {s['mean'] / 1024:.1f} KB of {self.data_bytes / 1024:.0f} KB data"]
        for kind, v in s["by_kind"].items():
            lines.append(f"  {kind:<12} {v['pes']:>5} PEs  max {v['max'] / 1024:6.1f} KB  mean {v['mean'] / 1024:6.1f} KB")
        before, after = sum(self.routing_before.values()), sum(self.routing_after.values())
        lines.append(f"routing entries: {before} before merging, {after} after (busiest chip {max(self.routing_after.values(), default=0)})")
        lines.append("layers (weights):")
        for q in self.layers:
            lines.append(f"  {q['name']:<14} -> {q['post']:<12} {q['bits']}-bit frac {q['frac']:>3} scale {q['scale']:.3f} "
                         f"clip {q['clip']:.4g} clipped {100 * q['clipped']:.2f}% rel.error {100 * q['rel_error']:.2f}%")
        if self.spike_counts:
            lines.append("spikes on the samples (float -> quantised):")
            for k, c in self.spike_counts.items():
                lines.append(f"  {k:<14} {c['float']:>9} -> {c['quantised']:>9}")
        a = self.activity
        if a:
            lines += [f"per inference ({a['ticks']} ticks): {a['synaptic_events']:.4g} synaptic events, {a['packets']:.4g} packets "
                      f"({a['packet_hops']:.4g} chip hops), {a['macs']:.4g} MACs",
                      f"busiest PE {a['busiest_pe']} ({a['busiest_population']}): {a['busiest_cycles']:.4g} cycles per tick "
                      f"of {a['tick_budget']:.4g} ({100 * a['busiest_cycles'] / a['tick_budget']:.1f}%)"
                      + ("  ** OVERRUN **" if a["overrun"] else ""),
                      f"estimates: {a['energy_j'] * 1e6:.3g} uJ and {a['latency_s'] * 1e3:.3g} ms per inference"]
        return "\n".join(lines)


def build(p, samples=None) -> Report:
    sram = [{"pe": s.pe, "population": s.population, "model": p.models[s.population], "chip": s.chip, "core": s.core,
             "neurons": s.size, "bytes": {k: int(v) for k, v in s.memory.items()}} for s in p.slices]
    rep = Report(pes=len(p.slices), chips=max(s.chip for s in p.slices) + 1, sram=sram, data_bytes=p.target.data_bytes,
                 routing_before={str(k): v for k, v in p.entries_before.items()},
                 routing_after={str(k): len(v) for k, v in p.tables.items()}, layers=[q.to_dict() for q in p.layers],
                 spike_counts=p.counts)
    if samples is not None:
        rep.activity = activity(p, samples)
    return rep


def activity(p, samples) -> dict:
    """Mean per-inference work on ``samples``, from the fixed-point run of the dequantised graph."""
    from .. import simulate
    from .route import deliver
    from .target import precision

    net, t = p.network, p.target
    pops = [k for k, v in net.populations.items() if v.kind != "input"]
    res = simulate(p.graph, samples, backend="numba-event", record=pops, precision=precision())
    x = np.asarray(samples if not isinstance(samples, dict) else next(iter(samples.values())), dtype=np.float64)
    ticks, batch = x.shape[:2]
    events = {}
    for name, pop in net.populations.items():
        if pop.kind == "input":
            ev = (x.reshape(ticks, batch, -1) != 0)
        elif pop.spiking:
            ev = res.spikes[name].reshape(ticks, batch, -1) > 0
        else:
            ev = res.traces[name].reshape(ticks, batch, -1) != 0
        events[name] = ev.sum(axis=0).astype(np.float64)  # [B, n]: events per inference
    per_pe_syn = np.zeros(len(p.slices))
    first = {}
    for s in p.slices:
        first.setdefault(s.population, s.pe)
    syn_total = macs = 0.0
    per_pe_packets = np.zeros(len(p.slices))
    for i, proj in enumerate(net.projections):
        pre, post, _, _ = p.synapses[i]
        ev_pre = events[proj.pre].mean(axis=0)  # mean events per inference per pre neuron
        pe_of = first[proj.post] + post // p.slice_of[proj.post]
        contrib = np.bincount(pe_of, weights=ev_pre[pre], minlength=len(p.slices))
        per_pe_syn += contrib
        syn_total += contrib.sum()
        if proj.conv:
            macs += contrib.sum()
        pairs = np.unique(np.stack([pre, pe_of]), axis=1)  # each pre event reaches each PE once
        per_pe_packets += np.bincount(pairs[1], weights=ev_pre[pairs[0]], minlength=len(p.slices))
    packets = sum(events[s.population].mean(axis=0)[s.lo:s.hi].sum() for s in p.slices)
    hops = 0.0
    for s in p.slices:
        key = p.keys[s.pe][0]
        reached = deliver(p.tables, key, s.chip, t.chips)
        chips = {c for c, _ in reached}
        n_ev = events[s.population].mean(axis=0)[s.lo:s.hi].sum()
        hops += n_ev * sum(abs(c - s.chip) > 0 for c in chips)
    neurons = np.array([s.size if p.models[s.population] != "input" else 0 for s in p.slices], np.float64)
    cycles = (per_pe_syn * t.cycles_per_synapse + per_pe_packets * t.cycles_per_packet) / ticks + neurons * t.cycles_per_neuron
    busiest = int(np.argmax(cycles))
    budget = t.clock_hz * t.tick_s
    total_cycles = float(cycles.sum() * ticks)
    energy = total_cycles * t.energy_per_cycle_j + hops * t.energy_per_packet_hop_j + t.static_power_per_pe_w * len(p.slices) * ticks * t.tick_s
    overrun = bool(cycles[busiest] > budget)
    return {"ticks": int(ticks), "synaptic_events": float(syn_total), "packets": float(packets), "packet_hops": float(hops), "macs": float(macs),
            "busiest_pe": busiest, "busiest_population": p.slices[busiest].population, "busiest_cycles": float(cycles[busiest]),
            "tick_budget": float(budget), "overrun": overrun, "energy_j": float(energy),
            "latency_s": float(ticks * t.tick_s * (max(1.0, cycles[busiest] / budget)))}


def sram_png(rep: Report, path) -> None:
    """A bar chart of SRAM use per PE, stacked by part, with the data budget as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spikeflow._atomic import atomic_path

    parts = sorted({k for pe in rep.sram for k in pe["bytes"]})
    fig, ax = plt.subplots(figsize=(max(6, min(20, 0.08 * rep.pes + 4)), 3.5))
    bottom = np.zeros(rep.pes)
    for part in parts:
        vals = np.array([pe["bytes"].get(part, 0) for pe in rep.sram]) / 1024
        ax.bar(np.arange(rep.pes), vals, bottom=bottom, label=part, width=1.0)
        bottom += vals
    ax.axhline(rep.data_bytes / 1024, color="k", ls="--", lw=1, label="data budget")
    ax.set_xlabel("PE")
    ax.set_ylabel("KB")
    ax.set_title("SRAM per PE")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)



def _population_colours(rep: Report) -> dict[str, tuple]:
    """One colour per population, in the order the PEs list them."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    names = list(dict.fromkeys(pe["population"] for pe in rep.sram))
    return {name: cmap(k % 10) for k, name in enumerate(names)}


def pe_map_png(rep: Report, path, columns: int = 16, max_chips: int = 4):
    """The placement as a map: each chip's used PEs as a grid of cells (colour: population; the
    dark bar inside each cell: its SRAM use against the data budget, with the KB written when
    the grid is small). Returns the path written."""
    from matplotlib.patches import Patch, Rectangle

    from spikeflow.plots import new_figure, save_png

    colours = _population_colours(rep)
    chips = sorted({pe["chip"] for pe in rep.sram})[:max_chips]
    rows = max(1, -(-(max(pe["core"] for pe in rep.sram) + 1) // columns))
    fig = new_figure(min(1.0 + 0.55 * columns, 11.0), 0.9 + (0.6 * rows + 0.3) * len(chips))
    axes = fig.subplots(len(chips), 1, squeeze=False)[:, 0]
    label = len(rep.sram) <= 64
    for ax, chip in zip(axes, chips):
        for pe in (p for p in rep.sram if p["chip"] == chip):
            r, c = divmod(pe["core"], columns)
            fill = min(sum(pe["bytes"].values()) / rep.data_bytes, 1.0)
            ax.add_patch(Rectangle((c, r), 0.92, 0.92, facecolor=colours[pe["population"]], edgecolor="black", lw=0.5))
            ax.add_patch(Rectangle((c + 0.06, r + 0.86 - 0.8 * fill), 0.12, 0.8 * fill, facecolor="black", lw=0))
            if label:
                ax.text(c + 0.55, r + 0.46, f"{sum(pe['bytes'].values()) / 1024:.0f}", ha="center", va="center", fontsize=7)
        ax.set_xlim(-0.1, columns)
        ax.set_ylim(rows, -0.1)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"chip {chip}: {sum(p['chip'] == chip for p in rep.sram)} PEs used", fontsize=9)
    fig.legend(handles=[Patch(facecolor=c, edgecolor="black", label=k) for k, c in colours.items()], loc="outside lower center",
               fontsize=8, ncol=min(len(colours), 6))
    fig.suptitle(f"PE map ({'KB of ' if label else ''}{rep.data_bytes / 1024:.0f} KB data per PE; bar: SRAM fill)", fontsize=10)
    return save_png(fig, path)


def routing_png(rep: Report, routes: dict, path):
    """Routing: the multicast table entries per chip before and after merging (left), and where the
    tables deliver each PE's packets (right: sending PE against receiving PE, coloured by the
    sending population). ``routes`` maps a sending PE to the ``(chip, core)`` pairs its key reaches
    (:attr:`~.executor.Program.routes`). Returns the path written."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    from spikeflow.plots import new_figure, save_png

    colours = _population_colours(rep)
    pe_at = {(pe["chip"], pe["core"]): pe["pe"] for pe in rep.sram}
    population = {pe["pe"]: pe["population"] for pe in rep.sram}
    fig = new_figure(10.0, 4.2)
    ax_tab, ax_map = fig.subplots(1, 2, width_ratios=[1, 1.6])
    chips = sorted(rep.routing_after, key=int)
    x = np.arange(len(chips))
    ax_tab.bar(x - 0.2, [rep.routing_before.get(c, 0) for c in chips], width=0.4, label="before merging", color="tab:gray")
    ax_tab.bar(x + 0.2, [rep.routing_after[c] for c in chips], width=0.4, label="after merging", color="tab:blue")
    ax_tab.set_xticks(x, [f"chip {c}" for c in chips])
    ax_tab.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_tab.set_ylabel("routing table entries")
    ax_tab.set_title("multicast routing tables", fontsize=10)
    ax_tab.legend(fontsize=8)
    for src in sorted(routes):
        dests = [pe_at[d] for d in routes[src] if d in pe_at]
        if dests:
            ax_map.scatter(dests, [src] * len(dests), s=max(6.0, min(40.0, 4000.0 / rep.pes**2 * 4)), marker="s",
                           color=colours.get(population.get(src), "black"), lw=0)
    ax_map.set_xlim(-0.5, rep.pes - 0.5)
    ax_map.set_ylim(rep.pes - 0.5, -0.5)
    ax_map.set_xlabel("receiving PE")
    ax_map.set_ylabel("sending PE")
    ax_map.set_title("packet delivery", fontsize=10)
    ax_map.grid(alpha=0.3)
    ax_map.legend(handles=[Patch(color=c, label=k) for k, c in colours.items()], fontsize=7, loc="upper right")
    return save_png(fig, path)
