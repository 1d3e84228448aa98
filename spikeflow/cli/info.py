"""``spikeflow info``: a graph file's nodes, shapes and parameter counts; without a file, what this
installation offers (backends and targets with their capabilities, the model zoo)."""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from spikeflow.cli._common import load_graph

HELP = "print a graph file's nodes, shapes and parameter counts (no file: the backends, targets and models)"


def add_arguments(parser) -> None:
    parser.add_argument("path", nargs="?", default=None, help="graph file (.h5 or .nir); omit to list backends, targets and models")
    parser.add_argument("--dt", type=float, default=None, help="time step for NIR files that do not store one")


def run(args) -> int:
    print(registry_info() if args.path is None else graph_info(load_graph(args.path, args.dt)))
    return 0


def registry_info() -> str:
    """The registered backends and targets with their capabilities, and the model zoo."""
    from spikeflow.backends import available_backends, backend_names, capabilities, target_names
    from spikeflow.models import MODELS

    available = available_backends()
    rows = [{"name": name, "available": "yes" if available[name] else "no", **capabilities(name).as_row()} for name in backend_names()]
    rows += [{"name": name, "available": "-", **capabilities(name).as_row()} for name in target_names()]
    head = list(rows[0])
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in head}
    lines = ["backends and targets:", "  " + "  ".join(k.ljust(widths[k]) for k in head)]
    lines += ["  " + "  ".join(r[k].ljust(widths[k]) for k in head) for r in rows]
    lines.append("models: " + ", ".join(sorted(MODELS)))
    return "\n".join(line.rstrip() for line in lines)


def graph_info(graph) -> str:
    """A table of the graph's nodes: name, type, output shape and number of parameter values."""
    from spikeflow.ir import nodes as n

    flat = graph.flatten()
    shapes = graph.shapes()
    rows = [("node", "type", "output shape", "params")]
    total = 0
    for name in flat.order():
        node = flat.nodes[name]
        values = [getattr(node, f.name) for f in fields(node)]
        count = sum(int(v.nnz) if n.is_sparse(v) else int(np.size(v)) for v in values if isinstance(v, np.ndarray) or n.is_sparse(v))
        total += count
        rows.append((name, type(node).__name__, str(tuple(shapes[name])), str(count)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"graph: {len(flat.nodes)} nodes, {len(flat.edges)} edges, dt={graph.dt:g} s, integration={graph.integration!r}"]
    lines += ["  " + "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.append(f"total parameter values: {total}")
    if graph.metadata:
        lines.append(f"metadata: {graph.metadata}")
    return "\n".join(line.rstrip() for line in lines)
