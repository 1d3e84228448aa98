"""``spikeflow info``: a graph file's nodes, shapes and parameter counts."""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from spikeflow.cli._common import load_graph

HELP = "print a graph file's nodes, shapes and parameter counts"


def add_arguments(parser) -> None:
    parser.add_argument("path", help="graph file (.h5 or .nir)")
    parser.add_argument("--dt", type=float, default=None, help="time step for NIR files that do not store one")


def run(args) -> int:
    print(graph_info(load_graph(args.path, args.dt)))
    return 0


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
    return "\n".join(lines)
