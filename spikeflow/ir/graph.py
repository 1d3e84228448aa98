"""Graph: named nodes and edges, nesting, recurrence, explicit time step and integration rule."""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from spikeflow.errors import GraphError
from spikeflow.ir import nodes as n
from spikeflow.ir.discretise import INTEGRATIONS, coefficients

# Checks of ``graph.metadata`` entries that other packages own, by key: ``check(graph)`` raises
# GraphError. The IR stores metadata as plain JSON and knows none of them (spikeflow.exit registers
# the exit policy's check), so it imports nothing above itself.
METADATA_CHECKS: dict[str, Callable[["Graph"], Any]] = {}


def register_metadata_check(key: str, check: Callable[["Graph"], Any]) -> None:
    """Have :meth:`Graph.validate` call ``check(graph)`` whenever ``graph.metadata`` holds ``key``."""
    METADATA_CHECKS[key] = check


class Graph:
    """A spiking network: nodes by name, directed edges, ``dt`` (seconds) and ``integration``.

    Nodes are :class:`spikeflow.ir.nodes.Node` instances or nested :class:`Graph` s. An edge into
    (out of) a nested graph names the graph, or ``"graph.port"`` for one of its Input (Output)
    nodes. A node's input is the sum of its incoming edges. Cycles are allowed when they pass
    through a stateful node; the edges that close them carry the previous step's value.

    Example:
        >>> import numpy as np, spikeflow as sf
        >>> g = sf.Graph.sequential(
        ...     sf.ir.Input(shape=(3,)),
        ...     sf.ir.Linear(weight=np.ones((2, 3))),
        ...     sf.ir.LIF(tau=0.01, v_threshold=1.0),
        ...     dt=1e-3,
        ... )
        >>> g.validate().shapes()["output"]
        (2,)
    """

    def __init__(
        self,
        nodes: Mapping[str, "n.Node | Graph"],
        edges: Iterable[tuple[str, str]],
        *,
        dt: float = 1e-3,
        integration: str = "euler",
        metadata: Mapping[str, Any] | None = None,
    ):
        self.nodes: dict[str, n.Node | Graph] = dict(nodes)
        self.edges: list[tuple[str, str]] = [(str(a), str(b)) for a, b in edges]
        self.dt = float(dt)
        self.integration = str(integration)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._checked_shapes: dict[str, tuple[int, ...]] | None = None  # set on the flat copies checked() returns

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def sequential(cls, *layers: n.Node, dt: float = 1e-3, integration: str = "euler", **kwargs) -> "Graph":
        """Chain ``layers``; names are the lower-cased type plus an index, with ``input``/``output``.

        An Input (Output) node is added when the chain does not start (end) with one.
        """
        layers = list(layers)
        if not layers or not isinstance(layers[0], n.Input):
            shape = layers[0].input_shape() if layers else None
            if shape is None:
                raise GraphError("sequential: the first layer does not fix an input shape; start with sf.ir.Input(shape=...)")
            layers.insert(0, n.Input(shape=shape))
        names: list[str] = []
        for i, layer in enumerate(layers):
            if isinstance(layer, n.Input):
                names.append("input")
            elif isinstance(layer, n.Output):
                names.append("output")
            else:
                names.append(f"{type(layer).__name__.lower()}{i}")
        graph = cls(dict(zip(names, layers)), list(zip(names, names[1:])), dt=dt, integration=integration, **kwargs)
        if not isinstance(layers[-1], n.Output):
            graph.nodes["output"] = n.Output(shape=graph._infer_shapes()[names[-1]])
            graph.edges.append((names[-1], "output"))
        return graph.validate()

    # ------------------------------------------------------------------------------ queries

    @property
    def inputs(self) -> list[str]:
        """Names of the Input nodes, sorted."""
        return sorted(k for k, v in self.nodes.items() if isinstance(v, n.Input))

    @property
    def outputs(self) -> list[str]:
        """Names of the Output nodes, sorted."""
        return sorted(k for k, v in self.nodes.items() if isinstance(v, n.Output))

    def predecessors(self, name: str) -> list[str]:
        return [a for a, b in self.edges if b == name]

    def successors(self, name: str) -> list[str]:
        return [b for a, b in self.edges if a == name]

    def is_nested(self) -> bool:
        return any(isinstance(v, Graph) for v in self.nodes.values())

    # ---------------------------------------------------------------------------- validation

    def validate(self) -> "Graph":
        """Check names, edges, parameters, cycles and shapes; return self or raise GraphError."""
        self.checked()
        return self

    def checked(self) -> "Graph":
        """Validate, then return the flattened graph, marked as checked, with its shapes inferred.

        :func:`spikeflow.simulate` calls this once and hands the result to the backend, so the
        backend neither validates, flattens nor infers shapes again. The result is a new object
        (nodes are shared): treat it as read-only. Calling ``checked()`` on it returns it as is.
        """
        if self._checked_shapes is not None:
            return self
        if not np.isfinite(self.dt) or self.dt <= 0:
            raise GraphError(f"graph field 'dt': must be a positive number of seconds, got {self.dt!r}")
        if self.integration not in INTEGRATIONS:
            raise GraphError(f"graph field 'integration': expected one of {INTEGRATIONS}, got {self.integration!r}")
        try:
            json.dumps(self.metadata)
        except (TypeError, ValueError) as err:
            raise GraphError(f"graph field 'metadata': must be JSON-serialisable ({err})") from None
        for name, node in self.nodes.items():
            if not isinstance(name, str) or not name or "." in name or "/" in name:
                raise GraphError(f"node {name!r}: names must be non-empty strings without '.' or '/'")
            if isinstance(node, Graph):
                try:
                    node.validate()
                except GraphError as err:
                    raise GraphError(f"node {name!r}: {err}") from None
            elif not isinstance(node, n.Node):
                raise GraphError(f"node {name!r}: expected an IR node or Graph, got {type(node).__name__}")
        if not self.inputs:
            raise GraphError("graph has no Input node")
        if not self.outputs:
            raise GraphError("graph has no Output node")
        flat = self.flatten()
        for name, node in flat.nodes.items():
            coefficients(node, flat.dt, flat.integration, where=f"node {name!r}: ")
        shapes = flat._infer_shapes()
        for key, check in METADATA_CHECKS.items():
            if key in self.metadata:
                check(self)
        checked = Graph(flat.nodes, flat.edges, dt=flat.dt, integration=flat.integration, metadata=flat.metadata)
        checked._checked_shapes = shapes
        return checked

    def _check_edges(self) -> None:
        for a, b in self.edges:
            for end, role in ((a, "source"), (b, "target")):
                if end in self.nodes:
                    continue
                head, _, port = end.partition(".")
                if head not in self.nodes:
                    raise GraphError(f"edge {a!r} -> {b!r}: {role} {head!r} is not a node of the graph")
                inner = self.nodes[head]
                if port and not (isinstance(inner, Graph) and port in inner.nodes):
                    raise GraphError(f"edge {a!r} -> {b!r}: {end!r} names no port of {head!r}")
            if isinstance(self.nodes.get(b), n.Input):
                raise GraphError(f"edge {a!r} -> {b!r}: Input node {b!r} cannot have incoming edges")
            if isinstance(self.nodes.get(a), n.Output):
                raise GraphError(f"edge {a!r} -> {b!r}: Output node {a!r} cannot have outgoing edges")
        if len(set(self.edges)) != len(self.edges):
            dup = next(e for e in self.edges if self.edges.count(e) > 1)
            raise GraphError(f"edge {dup[0]!r} -> {dup[1]!r} appears twice")

    # ------------------------------------------------------------------------------ nesting

    def flatten(self) -> "Graph":
        """A graph without nesting: inner nodes are named ``outer.inner`` and inner Input/Output
        nodes are replaced by direct edges. Validates edges on the way."""
        if self._checked_shapes is not None:
            return self
        self._check_edges()
        if not self.is_nested():
            return self
        nodes: dict[str, n.Node] = {}
        edges: list[tuple[str, str]] = []
        ports_in: dict[str, list[str]] = {}
        ports_out: dict[str, list[str]] = {}
        for name, node in self.nodes.items():
            if not isinstance(node, Graph):
                nodes[name] = node
                continue
            inner = node.flatten()
            nodes.update({f"{name}.{k}": v for k, v in inner.nodes.items()})
            edges.extend((f"{name}.{a}", f"{name}.{b}") for a, b in inner.edges)
            ports_in[name], ports_out[name] = inner.inputs, inner.outputs

        def endpoint(end: str, ports: dict[str, list[str]], role: str) -> str:
            head, _, port = end.partition(".")
            if head not in ports:
                return end
            if port:
                return end
            if len(ports[head]) != 1:
                raise GraphError(f"node {head!r}: nested graph has {len(ports[head])} {role}s; name one as '{head}.<port>'")
            return f"{head}.{ports[head][0]}"

        edges.extend((endpoint(a, ports_out, "output"), endpoint(b, ports_in, "input")) for a, b in self.edges)
        # Inner Input/Output nodes become plain wires: connect their sources to their targets.
        for name in [k for k in nodes if "." in k and isinstance(nodes[k], (n.Input, n.Output))]:
            sources = [a for a, b in edges if b == name]
            targets = [b for a, b in edges if a == name]
            edges = [e for e in edges if name not in e] + [(a, b) for a in sources for b in targets]
            del nodes[name]
        return Graph(nodes, edges, dt=self.dt, integration=self.integration, metadata=self.metadata)

    # ----------------------------------------------------------------------- order and cycles

    def delayed_edges(self) -> list[tuple[str, str]]:
        """Edges that close a cycle, found by depth-first search from the inputs in sorted name
        order (successors in sorted order, so the answer does not depend on insertion order).
        Each carries the previous step's value. Raises GraphError for a cycle without state."""
        graph = self.flatten()
        succ = {k: sorted(graph.successors(k)) for k in graph.nodes}
        state: dict[str, int] = {}  # 1: on the stack, 2: done
        delayed: list[tuple[str, str]] = []
        for root in graph.inputs + sorted(graph.nodes):
            if root in state:
                continue
            stack = [(root, iter(succ[root]))]
            path = [root]
            state[root] = 1
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    stack.pop()
                    path.pop()
                    state[node] = 2
                elif state.get(nxt) == 1:
                    cycle = path[path.index(nxt):]
                    if not any(graph.nodes[k].stateful for k in cycle):
                        raise GraphError(
                            f"node {nxt!r}: cycle {' -> '.join(cycle + [nxt])} has no stateful node "
                            "(a recurrent loop needs a neuron or delay to carry state)"
                        )
                    delayed.append((node, nxt))
                elif nxt not in state:
                    state[nxt] = 1
                    path.append(nxt)
                    stack.append((nxt, iter(succ[nxt])))
        return delayed

    def order(self) -> list[str]:
        """Topological order of the flattened graph once delayed edges are cut (ties by name)."""
        graph = self.flatten()
        cut = set(graph.delayed_edges())
        indegree = {k: 0 for k in graph.nodes}
        for a, b in graph.edges:
            if (a, b) not in cut:
                indegree[b] += 1
        ready = sorted(k for k, d in indegree.items() if d == 0)
        out: list[str] = []
        while ready:
            node = ready.pop(0)
            out.append(node)
            for b in sorted(graph.successors(node)):
                if (node, b) not in cut:
                    indegree[b] -= 1
                    if indegree[b] == 0:
                        ready.append(b)
                        ready.sort()
        return out

    def components(self) -> list[list[str]]:
        """Strongly connected groups of the flattened graph in execution order; a group with more
        than one node (or a self-loop) must be stepped one time step at a time."""
        graph = self.flatten()
        order = graph.order()
        reach = {k: {k} for k in order}
        changed = True
        while changed:  # transitive closure; graphs are small
            changed = False
            for a, b in graph.edges:
                new = reach[b] - reach[a]
                if new:
                    reach[a] |= new
                    changed = True
        groups: list[list[str]] = []
        group_of: dict[str, int] = {}
        for k in order:
            if k not in group_of:
                groups.append([m for m in order if m in reach[k] and k in reach[m]])
                group_of.update({m: len(groups) - 1 for m in groups[-1]})
        # Order the groups themselves topologically (ties by first appearance in ``order``).
        needs = {i: {group_of[a] for a, b in graph.edges if group_of[b] == i} - {i} for i in range(len(groups))}
        done: list[int] = []
        while len(done) < len(groups):
            nxt = min(i for i in range(len(groups)) if i not in done and needs[i] <= set(done))
            done.append(nxt)
        return [groups[i] for i in done]

    # ------------------------------------------------------------------------------- shapes

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Output shape of every node of the flattened graph."""
        return dict(self.checked()._checked_shapes)

    def _infer_shapes(self) -> dict[str, tuple[int, ...]]:
        graph = self.flatten()
        cut = set(graph.delayed_edges())
        shapes: dict[str, tuple[int, ...]] = {}
        for name in graph.order():
            node = graph.nodes[name]
            sources = [a for a, b in graph.edges if b == name and (a, b) not in cut]
            if isinstance(node, n.Input) and not sources:
                shapes[name] = node.shape
                continue
            if not sources:
                raise GraphError(f"node {name!r}: has no incoming edge (only nodes of type Input may)")
            found = {shapes[a] for a in sources}
            if len(found) > 1:
                raise GraphError(f"node {name!r}: incoming edges disagree on shape: " + ", ".join(f"{a} gives {shapes[a]}" for a in sources))
            try:
                shapes[name] = node.output_shape(found.pop())
            except GraphError as err:
                src = ", ".join(sources)
                raise GraphError(f"node {name!r} (input from {src}): shape mismatch: {err}") from None
        for a, b in cut:
            expected = graph.nodes[b].input_shape() or shapes[b]
            if isinstance(graph.nodes[b], n.Node) and shapes[a] != tuple(expected):
                raise GraphError(f"node {b!r}: recurrent edge from {a!r} gives shape {shapes[a]}, expected {tuple(expected)}")
        return shapes

    # --------------------------------------------------------------------------- conversion

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "Graph",
            "nodes": {k: v.to_dict() for k, v in self.nodes.items()},
            "node_order": list(self.nodes),
            "edges": [list(e) for e in self.edges],
            "dt": self.dt,
            "integration": self.integration,
            "metadata": json.dumps(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Graph":
        data = dict(data)
        for key in ("nodes", "edges", "dt", "integration"):
            if key not in data:
                raise GraphError(f"graph: missing field {key!r}")
        raw = dict(data["nodes"])
        order = [str(k) for k in data.get("node_order", raw)]
        if sorted(order) != sorted(raw):
            raise GraphError("graph field 'node_order': does not list the same nodes as 'nodes'")
        nodes: dict[str, n.Node | Graph] = {}
        for name in order:
            item = dict(raw[name])
            kind = item.get("type")
            kind = kind.decode() if isinstance(kind, bytes) else kind
            try:
                nodes[name] = cls.from_dict(item) if kind == "Graph" else n.Node.from_dict(item)
            except GraphError as err:
                raise GraphError(f"node {name!r}: {err}") from None
        meta = data.get("metadata", "{}")
        try:
            metadata = json.loads(meta.decode() if isinstance(meta, bytes) else meta) if isinstance(meta, (str, bytes)) else dict(meta)
        except (json.JSONDecodeError, TypeError, ValueError) as err:
            raise GraphError(f"graph field 'metadata': not valid JSON ({err})") from None
        edges = [tuple(str(x.decode() if isinstance(x, bytes) else x) for x in e) for e in data["edges"]]
        if any(len(e) != 2 for e in edges):
            raise GraphError("graph field 'edges': every edge needs a source and a target")
        integration = data["integration"]
        integration = integration.decode() if isinstance(integration, bytes) else str(integration)
        return cls(nodes, edges, dt=float(data["dt"]), integration=integration, metadata=metadata)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return (
            list(self.nodes) == list(other.nodes)
            and all(self.nodes[k] == other.nodes[k] for k in self.nodes)
            and sorted(self.edges) == sorted(other.edges)
            and self.dt == other.dt
            and self.integration == other.integration
            and self.metadata == other.metadata
        )

    __hash__ = None

    def __repr__(self) -> str:
        return f"Graph({len(self.nodes)} nodes, {len(self.edges)} edges, dt={self.dt:g}, integration={self.integration!r})"
