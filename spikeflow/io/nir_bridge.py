"""NIR in and out: every spikeflow node type maps one-to-one to a NIR primitive.

NIR has no time step, no integration rule and no reset-by-subtraction, and requires neuron
parameters as full arrays. spikeflow therefore writes a few metadata keys, all prefixed
``spikeflow_``, so that its own files round-trip exactly, while other tools still read plain NIR:

=============================  ===============================================================
graph ``spikeflow_dt``          time step in seconds (float)
graph ``spikeflow_integration`` ``"euler"`` or ``"exact"``
graph ``spikeflow_metadata``    the graph's own metadata, as JSON
graph ``spikeflow_node_order``  node names in order, as JSON (HDF5 lists groups by name)
node ``spikeflow_reset``        ``"zero"`` or ``"subtract"`` (NIR itself always resets to v_reset)
node ``spikeflow_shape_<f>``    the shape parameter ``f`` had before it was broadcast to full size
=============================  ===============================================================

NIR has no sparse matrices: a sparse Affine/Linear weight is written dense, and :func:`to_nir`
refuses (GraphError naming the node) when that matrix would hold more than ``max_dense``
(default :data:`MAX_DENSE`) entries. Import is always dense.

Foreign files carry no ``spikeflow_dt``: pass ``dt=`` to :func:`from_nir`. The conversion rules
are two tables, :data:`TO_NIR` and :data:`FROM_NIR`; fields with the same name in both worlds are
copied by one generic rule. See ``docs/conventions.md`` for each convention.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import fields
from typing import Any, Callable

import numpy as np

from spikeflow._atomic import atomic_path
from spikeflow.errors import FormatError, GraphError, SpikeflowError
from spikeflow.ir import nodes as n
from spikeflow.ir.graph import Graph
from spikeflow.ir.nodes import NODE_TYPES

META = "spikeflow_"
MAX_DENSE = 50_000_000
"""Largest sparse weight (rows x cols entries, 400 MB in float64) that :func:`to_nir` densifies."""


# ---------------------------------------------------------------------------- spikeflow -> NIR


class _Ctx:
    """What a rule may need besides the node: its input and output shapes in the graph."""

    def __init__(self, name: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...], max_dense: int = MAX_DENSE):
        self.name, self.in_shape, self.out_shape, self.max_dense = name, in_shape, out_shape, max_dense


def _conv_extra(node, ctx: _Ctx) -> dict[str, Any]:
    spatial = tuple(int(s) for s in ctx.in_shape[1:])
    if node.weight.ndim == 3:  # NIR's Conv1d takes plain ints
        return {"input_shape": spatial[0], "stride": node.stride[0], "padding": node.padding[0], "dilation": node.dilation[0]}
    return {"input_shape": spatial, "stride": node.stride, "padding": node.padding, "dilation": node.dilation}


TO_NIR: dict[str, Callable[[n.Node, _Ctx], dict[str, Any]]] = {
    # Extra or overriding NIR constructor arguments per type; every other NIR field is copied
    # from the spikeflow field of the same name (elementwise parameters broadcast to full size).
    "Input": lambda node, ctx: {"input_type": {"input": np.array(node.shape)}},
    "Output": lambda node, ctx: {"output_type": {"output": np.array(node.shape)}},
    "Affine": lambda node, ctx: {},
    "Linear": lambda node, ctx: {},
    "Scale": lambda node, ctx: {},
    "Conv1d": _conv_extra,
    "Conv2d": _conv_extra,
    "Flatten": lambda node, ctx: {"input_type": {"input": np.array(ctx.in_shape)}},
    "SumPool2d": lambda node, ctx: {},
    "AvgPool2d": lambda node, ctx: {},
    "Delay": lambda node, ctx: {},
    "Threshold": lambda node, ctx: {},
    "I": lambda node, ctx: {},
    "IF": lambda node, ctx: {},
    "LI": lambda node, ctx: {},
    "LIF": lambda node, ctx: {},
    "CubaLI": lambda node, ctx: {},
    "CubaLIF": lambda node, ctx: {},
}


def _node_to_nir(node: n.Node, ctx: _Ctx):
    import nir

    kind = type(node).__name__
    rule = TO_NIR.get(kind)
    if rule is None:
        raise GraphError(f"node {ctx.name!r}: type {kind} has no NIR equivalent")
    cls = getattr(nir, kind)
    nir_fields = {f.name for f in fields(cls) if f.init}
    metadata: dict[str, Any] = {}
    kwargs: dict[str, Any] = {}
    for f in fields(node):
        value = getattr(node, f.name)
        if f.name == "reset":
            metadata[META + "reset"] = value
            continue
        if f.name not in nir_fields:
            continue
        if n.is_sparse(value):
            value = _densify(value, f"node {ctx.name!r} field {f.name!r}", ctx.max_dense)
        if isinstance(node, n._Elementwise) and f.metadata["kind"] in ("array", "positive"):
            if value.shape != tuple(ctx.out_shape):
                metadata[f"{META}shape_{f.name}"] = np.array(value.shape, dtype=np.int64)
            value = np.broadcast_to(value, ctx.out_shape).copy()
        kwargs[f.name] = np.array(value) if isinstance(value, tuple) else value
    kwargs.update(rule(node, ctx))
    return cls(**kwargs, metadata=metadata)


def _densify(weight, here: str, max_dense: int) -> np.ndarray:
    rows, cols = weight.shape
    if rows * cols > max_dense:
        raise GraphError(
            f"{here}: NIR has no sparse weights, and this {rows} x {cols} sparse matrix ({weight.nnz:,} nonzeros) "
            f"would become {rows * cols:,} dense entries ({rows * cols * 8 / 1e6:,.1f} MB), over the limit of "
            f"{max_dense:,}; pass max_dense= to to_nir to allow it"
        )
    return n.dense_weight(weight)


def _port_of(graph: Graph, end: str, role: str) -> str:
    """NIR edges name nodes only: an edge to ``sub.port`` becomes ``sub`` when that is unambiguous."""
    head, _, port = end.partition(".")
    if not port:
        return end
    ports = graph.nodes[head].inputs if role == "input" else graph.nodes[head].outputs
    if ports != [port]:
        raise GraphError(
            f"edge endpoint {end!r}: NIR edges cannot name a port of a nested graph with {len(ports)} "
            f"{role}s; flatten the graph (graph.flatten()) before exporting"
        )
    return head


def _graph_to_nir(graph: Graph, max_dense: int):
    import nir

    flat = graph.flatten()
    shapes = flat._infer_shapes()
    nodes: dict[str, Any] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, Graph):
            try:
                nodes[name] = _graph_to_nir(node, max_dense)
            except GraphError as err:
                raise GraphError(f"node {name!r}: {err}") from None
            continue
        sources = flat.predecessors(name)
        in_shape = shapes[sources[0]] if sources else shapes[name]
        nodes[name] = _node_to_nir(node, _Ctx(name, in_shape, shapes[name], max_dense))
    edges = [(_port_of(graph, a, "output"), _port_of(graph, b, "input")) for a, b in graph.edges]
    metadata = {
        META + "dt": graph.dt,
        META + "integration": graph.integration,
        META + "metadata": json.dumps(graph.metadata),
        META + "node_order": json.dumps(list(graph.nodes)),  # HDF5 readers list groups by name
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)


def to_nir(graph: Graph, path: str | os.PathLike | None = None, *, max_dense: int = MAX_DENSE):
    """Convert ``graph`` to a ``nir.NIRGraph``; also write it to ``path`` (atomically) when given.

    Sparse weights are written dense (NIR has no sparse matrices); ``max_dense`` is the largest
    number of entries (rows x cols) one such matrix may then have.

    Raises:
        GraphError: the graph is invalid, a node has no NIR equivalent, or a sparse weight would
            exceed ``max_dense`` entries (the message names the node and the size).

    Example:
        >>> import numpy as np, spikeflow as sf
        >>> g = sf.Graph.sequential(sf.ir.Input(shape=(2,)), sf.ir.LIF(tau=0.01, v_threshold=1.0), dt=1e-3)
        >>> ng = sf.to_nir(g)
        >>> type(ng.nodes["lif1"]).__name__, ng.nodes["lif1"].tau
        ('LIF', array([0.01, 0.01]))
        >>> sf.from_nir(ng) == g
        True
    """
    import nir

    graph.validate()
    out = _graph_to_nir(graph, int(max_dense))
    if path is not None:
        with atomic_path(path) as tmp:
            nir.write(tmp, out)
    return out


# ---------------------------------------------------------------------------- NIR -> spikeflow


def _ints(value) -> tuple[int, ...]:
    return tuple(int(v) for v in np.atleast_1d(np.asarray(value)))


def _conv_from_nir(node, name: str) -> dict[str, Any]:
    ndim = np.asarray(node.weight).ndim - 2
    stride, dilation = _ints(node.stride), _ints(node.dilation)
    stride = stride * ndim if len(stride) == 1 else stride
    dilation = dilation * ndim if len(dilation) == 1 else dilation
    kernel = np.asarray(node.weight).shape[2:]
    padding = node.padding
    if isinstance(padding, bytes):
        padding = padding.decode()
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0,) * ndim
        elif padding == "same":
            total = [d * (k - 1) for d, k in zip(dilation, kernel)]
            if any(t % 2 for t in total) or any(s != 1 for s in stride):
                raise GraphError(
                    f"node {name!r}: field 'padding': 'same' with kernel {tuple(kernel)}, stride {stride} "
                    "needs uneven padding, which spikeflow's symmetric padding cannot express"
                )
            padding = tuple(t // 2 for t in total)
        else:
            raise GraphError(f"node {name!r}: field 'padding': expected 'same', 'valid' or integers, got {padding!r}")
    else:
        padding = _ints(padding)
        padding = padding * ndim if len(padding) == 1 else padding
    return {"stride": stride, "padding": padding, "dilation": dilation, "groups": int(np.asarray(node.groups))}


def _shape_of(types) -> Any:
    value = next(iter(types.values())) if isinstance(types, dict) and types else None
    return None if value is None else _ints(value)


FROM_NIR: dict[str, Callable[[Any, str], dict[str, Any]]] = {
    # Extra or overriding spikeflow fields per NIR type; every other spikeflow field is copied
    # from the NIR field of the same name.
    "Input": lambda node, name: {"shape": _shape_of(node.input_type)},
    "Output": lambda node, name: {"shape": _shape_of(node.output_type)},
    "Affine": lambda node, name: {},
    "Linear": lambda node, name: {},
    "Scale": lambda node, name: {},
    "Conv1d": _conv_from_nir,
    "Conv2d": _conv_from_nir,
    "Flatten": lambda node, name: {"start_dim": int(node.start_dim), "end_dim": int(node.end_dim)},
    "SumPool2d": lambda node, name: {},
    "AvgPool2d": lambda node, name: {},
    "Delay": lambda node, name: {},
    "Threshold": lambda node, name: {},
    "I": lambda node, name: {},
    "IF": lambda node, name: {},
    "LI": lambda node, name: {},
    "LIF": lambda node, name: {},
    "CubaLI": lambda node, name: {},
    "CubaLIF": lambda node, name: {},
}
WIRES = ("Identity",)
"""NIR types imported as plain wires (their sources connect straight to their targets)."""


def _numpy(value: Any) -> Any:
    if hasattr(value, "detach"):  # torch tensors written by peer exporters
        value = value.detach().cpu().numpy()
    return value


def _unbroadcast(full: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Undo :func:`np.broadcast_to` when ``full`` really is constant along the broadcast axes."""
    full = np.asarray(full)
    lead = full.ndim - len(shape)
    if lead < 0:
        return full
    idx = (0,) * lead + tuple(slice(0, 1) if s == 1 else slice(None) for s in shape)
    small = full[idx].reshape(shape)
    return small if np.array_equal(np.broadcast_to(small, full.shape), full) else full


def _node_from_nir(node, name: str) -> n.Node:
    kind = type(node).__name__
    rule = FROM_NIR.get(kind)
    if rule is None:
        raise GraphError(f"node {name!r}: NIR type {kind} is not supported; supported: {sorted(FROM_NIR) + list(WIRES)}")
    cls = NODE_TYPES[kind]
    meta = dict(getattr(node, "metadata", None) or {})
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name == "reset":
            reset = meta.get(META + "reset")
            if reset is not None:
                kwargs["reset"] = reset.decode() if isinstance(reset, bytes) else str(reset)
            continue
        value = _numpy(getattr(node, f.name, None))
        if value is None:
            continue
        shape = meta.get(f"{META}shape_{f.name}")
        if shape is not None and f.metadata["kind"] in ("array", "positive"):
            value = _unbroadcast(value, _ints(shape) if np.size(shape) else ())
        kwargs[f.name] = value
    kwargs.update(rule(node, name))
    try:
        return cls(**{k: v for k, v in kwargs.items() if v is not None})
    except GraphError as err:
        raise GraphError(f"node {name!r}: {err}") from None
    except TypeError as err:
        raise GraphError(f"node {name!r}: NIR {kind} lacks a field spikeflow needs ({err})") from None


def _clean(name: str, taken: set[str]) -> str:
    """spikeflow names cannot hold '.' or '/' (they name nested ports): replace them by '_'."""
    base = re.sub(r"[./]", "_", str(name)) or "node"
    out, i = base, 1
    while out in taken:
        out, i = f"{base}_{i}", i + 1
    return out


def _meta_value(meta: dict, key: str) -> Any:
    value = meta.get(META + key)
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    return value


def _graph_from_nir(ng, dt: float | None, integration: str | None, where: str = "", inherited: tuple = (None, "euler")) -> Graph:
    """``dt``/``integration``: the caller's explicit choice (wins); ``inherited``: the outer graph's."""
    import nir

    meta = dict(ng.metadata) if isinstance(ng.metadata, dict) else {}
    own_dt = dt if dt is not None else _meta_value(meta, "dt")
    own_dt = own_dt if own_dt is not None else inherited[0]
    if own_dt is None:
        raise GraphError(
            f"{where}this NIR graph carries no time step (NIR has none; only files written by spikeflow "
            "record 'spikeflow_dt'): pass dt=<seconds> to from_nir"
        )
    own_integration = integration or _meta_value(meta, "integration") or inherited[1]
    raw = _meta_value(meta, "metadata")
    metadata = json.loads(raw) if isinstance(raw, str) else {}

    order = _meta_value(meta, "node_order")
    order = json.loads(order) if isinstance(order, str) else []
    keys = order if sorted(order) == sorted(ng.nodes) else list(ng.nodes)
    names: dict[str, str] = {}
    for key in keys:
        taken = set(names.values())
        ok = isinstance(key, str) and re.fullmatch(r"[^./]+", key) and key not in taken
        names[key] = key if ok else _clean(key, taken | {str(k) for k in ng.nodes})
    nodes: dict[str, Any] = {}
    wires: list[str] = []
    for key in keys:
        node, name = ng.nodes[key], names[key]
        if isinstance(node, nir.NIRGraph):
            try:
                nodes[name] = _graph_from_nir(node, dt, integration, "", (own_dt, own_integration))
            except GraphError as err:
                raise GraphError(f"{where}node {name!r}: {err}") from None
        elif type(node).__name__ in WIRES:
            wires.append(name)
        elif isinstance(node, nir.Output) and _shape_of(node.output_type) is None:
            nodes[name] = None
        else:
            nodes[name] = _node_from_nir(node, name)

    def endpoint(end: str) -> str:
        end = end.decode() if isinstance(end, bytes) else str(end)
        if end in names:
            return names[end]
        head, _, port = end.partition(".")
        if head in ng.nodes and isinstance(ng.nodes[head], nir.NIRGraph) and port in ng.nodes[head].nodes:
            return f"{names[head]}.{port}"
        raise GraphError(f"{where}edge endpoint {end!r} is not a node of the NIR graph")

    edges = [(endpoint(a), endpoint(b)) for a, b in ng.edges]
    for wire in wires:  # an Identity node is a wire: connect its sources to its targets
        sources = [a for a, b in edges if b == wire]
        targets = [b for a, b in edges if a == wire]
        edges = [e for e in edges if wire not in e] + [(a, b) for a in sources for b in targets]
    edges = list(dict.fromkeys(edges))
    _fill_output_shapes(nodes, edges, own_dt, own_integration)
    return Graph(nodes, edges, dt=own_dt, integration=own_integration, metadata=metadata)


def _fill_output_shapes(nodes: dict[str, Any], edges, dt, integration) -> None:
    """NIR Output nodes may leave their shape open: take it from what feeds them."""
    open_outputs = [k for k, v in nodes.items() if v is None]
    if not open_outputs:
        return
    rest = {k: v for k, v in nodes.items() if v is not None}
    inner = [(a, b) for a, b in edges if a in rest and b.partition(".")[0] in rest]
    shapes = Graph(rest, inner, dt=dt, integration=integration).flatten()._infer_shapes()
    for key in open_outputs:
        sources = [a for a, b in edges if b == key]
        if not sources:
            raise GraphError(f"node {key!r}: Output without shape and without incoming edge")
        src = sources[0]
        if src not in shapes:  # from a nested graph: its single output
            src = f"{src}.{nodes[src].outputs[0]}" if isinstance(nodes.get(src), Graph) else src
        nodes[key] = n.Output(shape=shapes[src])


def from_nir(source, dt: float | None = None, integration: str | None = None) -> Graph:
    """Read a NIR file (path) or a ``nir.NIRGraph`` into a validated spikeflow graph.

    Args:
        source: path to a ``.nir`` file, or an in-memory ``nir.NIRGraph``.
        dt: time step in seconds. Required for graphs spikeflow did not write (NIR has no time
            step); when given it overrides the file's ``spikeflow_dt``.
        integration: ``"euler"`` or ``"exact"``; default: the file's, else ``"euler"``.

    Raises:
        FormatError: the file cannot be read as NIR.
        GraphError: no time step, an unsupported NIR type, or an invalid node (names it).
    """
    import nir

    where = ""
    if isinstance(source, nir.NIRNode):
        ng = source
    else:
        where = f"{source}: "
        try:
            ng = nir.read(source, type_check=False)
        except FileNotFoundError:
            raise FormatError(f"{source}: no such file") from None
        except SpikeflowError:
            raise
        except Exception as err:  # nir raises anything from OSError to AssertionError on bad files
            raise FormatError(f"{source}: not a readable NIR file ({type(err).__name__}: {err})") from None
    if not isinstance(ng, nir.NIRGraph):
        raise GraphError(f"{where}expected a NIR graph, got a single {type(ng).__name__} node")
    try:
        return _graph_from_nir(ng, dt, integration).validate()
    except SpikeflowError as err:
        raise type(err)(f"{where}{err}") from None
