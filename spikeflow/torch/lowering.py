"""Graph IR <-> PyTorch: :func:`to_torch` interprets a graph as an ``nn.Module``; :func:`to_graph`
turns a lowered module, or an ``nn.Sequential`` of torch layers and spikeflow neuron modules, back
into a graph with its weights.

Lowering is an interpreter with one rule per node type (:data:`LOWERING`). Stateless nodes run on
all ``T*B`` samples at once (one batched GEMM or convolution over time), neurons outside recurrent
loops run through the fused scan of :mod:`spikeflow.torch.functional`, and the nodes of a recurrent
component (:meth:`spikeflow.ir.Graph.components`) step one time step at a time, delayed edges
carrying the previous step's value. A component that is only ``neuron -> Scale -> neuron`` (the
late reset of an snnTorch import), plus or instead a loop through a Scale and a one-step Delay
(with the first, snnTorch ``Synaptic``'s late reset), runs inside the neuron's fused scan instead
(:attr:`GraphModule.self_loops`, :attr:`GraphModule.delayed_loops`, :func:`_fusions`). The input
of a node is the sum of its incoming edges in sorted
source-name order, exactly as in :mod:`spikeflow.ir.discretise`. An EGRU node becomes a one-layer
:class:`spikeflow.torch.egru.EGRU` (time-major, state from zero each call), whose float64 forward
equals the numba backends bit for bit.

A module can also run a sequence in chunks, carrying the state of every neuron, Delay, EGRU and
recurrent loop between calls (:meth:`GraphModule.initial_state`, :meth:`GraphModule.run_chunk`,
:meth:`GraphModule.select` to keep a subset of the samples); in float64, chunks of any size give
the same values as one call, bit for bit. Inside :meth:`GraphModule.reuse_coefficients` the neurons
discretise their parameters once instead of once per chunk (inference loops of short chunks).

Example:
    >>> import numpy as np, torch, spikeflow as sf
    >>> g = sf.Graph.sequential(sf.ir.Input(shape=(3,)), sf.ir.Linear(weight=np.ones((2, 3))),
    ...                         sf.ir.LIF(tau=0.01, v_threshold=1.0), dt=1e-3)
    >>> net = sf.to_torch(g)                         # float32, PyTorch's default dtype
    >>> net(torch.ones(4, 1, 3) * 10).shape
    torch.Size([4, 1, 2])
    >>> sf.to_graph(sf.to_torch(g, dtype=torch.float64)) == g   # float64: the values round-trip exactly
    True
"""

from __future__ import annotations

import contextlib
import copy
import sys
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from spikeflow.errors import BackendError, DataError, GraphError
from spikeflow.ir import discretise
from spikeflow.ir import nodes as n
from spikeflow.ir.egru import EGRU as EGRUNode
from spikeflow.ir.graph import Graph
from spikeflow.torch import functional as F
from spikeflow.torch import modules as m
from spikeflow.torch import sparse_linear

BACKEND = "torch"

ROW_BLOCK = 4
"""float64 dense layers multiply ``ROW_BLOCK`` rows at a time at the end of a batch: MKL rounds
the leftover rows of a GEMM (row count not a multiple of 4) differently, which would make a row's
value depend on how many rows it shares the call with, i.e. on the chunk size."""


# ------------------------------------------------------------------- node -> module rules


class _Context:
    def __init__(self, dt, integration, train_tau, train_threshold, surrogate, detach_reset, dtype, fused):
        self.dt, self.integration = dt, integration
        self.train_tau, self.train_threshold = train_tau, train_threshold
        self.surrogate, self.detach_reset, self.dtype, self.fused = surrogate, detach_reset, dtype, fused


def _set(param: torch.Tensor, value) -> None:
    with torch.no_grad():
        param.copy_(torch.as_tensor(value))


def _dense(node, ctx):
    out_features, in_features = node.weight.shape
    layer = nn.Linear(in_features, out_features, bias=isinstance(node, n.Affine), dtype=ctx.dtype)
    _set(layer.weight, n.dense_weight(node))
    if layer.bias is not None:
        _set(layer.bias, node.bias)
    return layer


def _conv(node, ctx):
    cls = nn.Conv1d if isinstance(node, n.Conv1d) else nn.Conv2d
    c_out, c_in_g = node.weight.shape[:2]
    layer = cls(
        c_in_g * node.groups, c_out, node.kernel_size, stride=node.stride, padding=node.padding,
        dilation=node.dilation, groups=node.groups, bias=True, dtype=ctx.dtype,
    )
    _set(layer.weight, n.dense_weight(node))
    _set(layer.bias, node.bias)
    return layer


def _pool(node, ctx):
    # SumPool2d is an average pool whose divisor is 1; zero padding counts in both.
    divisor = 1 if isinstance(node, n.SumPool2d) else None
    return nn.AvgPool2d(node.kernel_size, node.stride, node.padding, count_include_pad=True, divisor_override=divisor)


def _flatten(node, ctx):
    # spikeflow counts per-sample dimensions; torch's dimension 0 is the (time*)batch dimension.
    return nn.Flatten(node.start_dim + 1 if node.start_dim >= 0 else node.start_dim, node.end_dim + 1 if node.end_dim >= 0 else node.end_dim)


def _neuron(node, ctx):
    params = {f.name: getattr(node, f.name) for f in fields(node)}
    return m.NEURON_MODULES[type(node)](
        dt=ctx.dt, integration=ctx.integration, surrogate=ctx.surrogate, detach_reset=ctx.detach_reset,
        train_tau=ctx.train_tau, train_threshold=ctx.train_threshold, fused=ctx.fused, dtype=ctx.dtype, **params,
    )


def _egru(node, ctx):
    from spikeflow.torch.egru import egru_from_node  # imports numba: only when a graph has an EGRU

    return egru_from_node(node, dtype=ctx.dtype, train_threshold=ctx.train_threshold)


def _is_egru(layer: nn.Module) -> bool:
    """True for a :class:`spikeflow.torch.egru.EGRU`; none can exist before its module was imported,
    so graphs without an EGRU never import it (and numba) just to ask."""
    module = sys.modules.get("spikeflow.torch.egru")
    return module is not None and isinstance(layer, module.EGRU)


LOWERING: dict[type[n.Node], Callable[[Any, _Context], nn.Module | None]] = {
    n.Input: lambda node, ctx: None,
    n.Output: lambda node, ctx: None,
    n.Affine: _dense,
    n.Linear: _dense,
    n.Conv1d: _conv,
    n.Conv2d: _conv,
    n.SumPool2d: _pool,
    n.AvgPool2d: _pool,
    n.Flatten: _flatten,
    n.Scale: lambda node, ctx: m.Scale(node.scale, dtype=ctx.dtype),
    n.Threshold: lambda node, ctx: m.Threshold(node.threshold, surrogate=ctx.surrogate, train_threshold=ctx.train_threshold, dtype=ctx.dtype),
    n.Delay: lambda node, ctx: m.Delay(node.delay, dt=ctx.dt),
    EGRUNode: _egru,
    **{kind: _neuron for kind in m.NEURON_MODULES},
}
"""One rule per IR node type: node -> module (None: the node passes its input through)."""


# ------------------------------------------------------------------- module -> node rules


def node_of(layer: nn.Module, where: str = "") -> n.Node:
    """The IR node of one torch layer or spikeflow module (weights included)."""
    numpy = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
    if hasattr(layer, "to_node"):
        return layer.to_node()
    if _is_egru(layer):
        if layer.num_layers != 1:
            raise BackendError(f"{where}EGRU: a {layer.num_layers}-layer module is {layer.num_layers} nodes; use to_graph(module)")
        return layer.to_nodes()[0]
    if isinstance(layer, nn.Linear):
        if layer.bias is None:
            return n.Linear(weight=numpy(layer.weight))
        return n.Affine(weight=numpy(layer.weight), bias=numpy(layer.bias))
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        if isinstance(layer.padding, str) or layer.padding_mode != "zeros":
            raise BackendError(f"{where}{type(layer).__name__}: padding {layer.padding!r} / mode {layer.padding_mode!r} not supported; use integer zero padding")
        bias = numpy(layer.bias) if layer.bias is not None else numpy(layer.weight.new_zeros(layer.out_channels))
        cls = n.Conv1d if isinstance(layer, nn.Conv1d) else n.Conv2d
        return cls(weight=numpy(layer.weight), bias=bias, stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    if isinstance(layer, nn.AvgPool2d):
        if layer.ceil_mode or (not layer.count_include_pad and layer.padding not in (0, (0, 0))):
            raise BackendError(f"{where}AvgPool2d: ceil_mode / count_include_pad=False are not supported")
        if layer.divisor_override not in (None, 1):
            raise BackendError(f"{where}AvgPool2d: divisor_override={layer.divisor_override} is not supported (only None or 1)")
        cls = n.SumPool2d if layer.divisor_override == 1 else n.AvgPool2d
        return cls(kernel_size=layer.kernel_size, stride=layer.stride, padding=layer.padding)
    if isinstance(layer, nn.Flatten):
        if layer.start_dim == 0 or layer.end_dim == 0:
            raise BackendError(f"{where}Flatten: start_dim={layer.start_dim}, end_dim={layer.end_dim} would merge the batch dimension")
        shift = lambda d: d - 1 if d > 0 else d  # noqa: E731
        return n.Flatten(start_dim=shift(layer.start_dim), end_dim=shift(layer.end_dim))
    from spikeflow.io.peers import suggestion

    raise BackendError(
        f"{where}{type(layer).__name__} is not supported by the {BACKEND} backend's to_graph; expected nn.Linear, "
        f"nn.Conv1d/2d, nn.AvgPool2d, nn.Flatten or a spikeflow.torch.modules module{suggestion(layer)}"
    )


# ------------------------------------------------------------------------- the interpreter


def _key(name: str) -> str:
    return name.replace(".", "/")  # nn.Module names may not contain '.'; IR names never contain '/'


@dataclass
class GraphState:
    """The state of a :class:`GraphModule` between two chunks of steps, for ``batch`` samples.

    Attributes:
        batch: number of samples.
        nodes: per stateful node: a :class:`spikeflow.torch.functional.State` (neurons, ``[B, ...]``),
            the last ``max(steps)`` inputs ``[D, B, ...]`` (Delay), an ``EGRUState`` (EGRU).
        carried: the last step's output ``[B, ...]`` of every source of a delayed (recurrent) edge;
            empty before the first step.
    """

    batch: int
    nodes: dict[str, Any]
    carried: dict[str, torch.Tensor]


def _all_finite(t: torch.Tensor) -> bool:
    """Whether every value of the floating-point tensor ``t`` is finite.

    One sum instead of ``isfinite(t).all()``: a NaN or inf anywhere makes the sum NaN or inf, and
    the sum reads ``t`` once without a temporary of its size (``isfinite`` builds several, 20x
    slower on spike trains; it ran twice per chunk in lean BPTT). A sum that overflows on finite
    values falls back to the exact test.
    """
    if t.numel() == 0 or bool(torch.isfinite(t.sum())):
        return True
    return bool(torch.isfinite(t).all())


class GraphModule(nn.Module):
    """A graph as an ``nn.Module``: ``net(x[T, B, ...]) -> y[T, B, ...]`` with a fresh state per call.

    A graph with several Input (Output) nodes takes (returns) a dict by node name. All values are
    computed in the module's dtype (:func:`to_torch`'s ``dtype``: PyTorch's default, float32, unless
    float64 is asked for); inputs of another dtype are cast to it once per call.
    """

    def __init__(self, graph: Graph, ctx: _Context):
        super().__init__()
        graph.validate()
        self._template = copy.deepcopy(graph)
        flat = graph.flatten()
        self.shapes = graph.shapes()
        self.inputs, self.outputs = flat.inputs, flat.outputs
        self.order = flat.order()
        self.sources = {k: sorted(a for a, b in flat.edges if b == k) for k in flat.nodes}
        self.delayed = set(flat.delayed_edges())
        self.groups = [(g, len(g) > 1 or (g[0], g[0]) in flat.edges) for g in flat.components()]
        self.kinds = {k: type(v) for k, v in flat.nodes.items()}
        self._fusions = _fusions(flat, self.groups, self.sources)
        self.self_loops = {k: f.gain for k, f in self._fusions.items() if f.gain is not None}
        """Neuron -> Scale node of each ``neuron -> Scale -> neuron`` loop (snnTorch's late reset,
        :func:`_fusions`) that runs inside the neuron's fused scan instead of step by step."""
        self.delayed_loops = {k: f.chain for k, f in self._fusions.items() if f.chain is not None}
        """Neuron -> the two nodes (Scale and one-step Delay, in loop order) of each loop two steps
        long (the tail of snnTorch ``Synaptic``'s late reset) that runs inside the neuron's fused
        scan."""
        self.layers = nn.ModuleDict()
        for name in self.order:
            node = flat.nodes[name]
            rule = LOWERING.get(type(node))
            if rule is None:
                raise BackendError(f"node {name!r}: type {type(node).__name__} is not supported by the {BACKEND} backend")
            layer = rule(node, ctx)
            if layer is not None:
                self.layers[_key(name)] = layer
        self.register_buffer("_probe", torch.zeros(0, dtype=ctx.dtype), persistent=False)
        self.sparse_limit = sparse_linear.DENSITY_LIMIT
        self._transposed: dict[int, tuple] = {}  # id(layer) -> (weight version key, W.T contiguous)
        """Dense layers whose input has at most this fraction of non-zeros use the sparse kernels
        (0 turns them off)."""
        self._coef_cache: dict[str, tuple] | None = None  # set inside reuse_coefficients()
        self._online: dict[str, float] | None = None
        """OTTT (spikeflow.train.long_sequences): weight layer name -> presynaptic trace decay; the
        layer's weight gradient then comes from the trace, carried in the state under its name."""

    # ---------------------------------------------------------------------------- running

    def forward(self, x: "torch.Tensor | Mapping[str, torch.Tensor]"):
        """Outputs ``[T, B, *shape]`` (a dict by Output name when the graph has several)."""
        return self.run(x)[0]

    def run(self, x, record: tuple[str, ...] | list[str] = ()):
        """Run the graph; return ``(outputs, {name: [T, B, ...] output of that node})`` for ``record``."""
        unknown = [k for k in record if k not in self.shapes]
        if unknown:
            raise DataError(f"record: no node {unknown[0]!r} in the graph; nodes: {sorted(self.shapes)}")
        values = self._check_inputs(x)
        self._run_steps(values, GraphState(next(iter(values.values())).shape[1], {}, {}), keep=record)
        return self._outputs(values), {k: values[k] for k in record}

    def initial_state(self, batch: int) -> GraphState:
        """The state at rest of ``batch`` samples (zeros; no recurrent value carried yet)."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise DataError(f"initial_state: expected a batch size >= 1, got {batch!r}")
        like = self._probe
        nodes: dict[str, Any] = {}
        for name in self.order:
            layer = self._layer(name)
            shape = (batch,) + self.shapes[name]
            if isinstance(layer, m._Neuron):
                nodes[name] = F.initial_state(self._coefficients(name, layer, like)[0], shape, like)
            elif isinstance(layer, m.Delay):
                depth = int(layer.steps.max(initial=0))
                nodes[name] = torch.zeros((depth,) + shape, dtype=like.dtype, device=like.device)
            elif _is_egru(layer):
                nodes[name] = layer.initial_state(batch)
        return GraphState(batch, nodes, {})

    def run_chunk(self, x, state: GraphState):
        """Run the next ``k`` steps ``x[k, B, ...]`` (a dict by Input name for several inputs) from
        ``state``; return ``(outputs [k, B, ...], state after the last step)``.

        Running ``T`` steps as consecutive chunks of any sizes gives the outputs of one call on all
        ``T`` steps, bit for bit in float64 (for a fixed dense/sparse choice of each dense layer:
        ``sparse_limit`` 0 or 1; by default each chunk decides from its own spike density).
        Gradients flow through the state from chunk to chunk.
        """
        values = self._check_inputs(x)
        T, B = next(iter(values.values())).shape[:2]
        if not isinstance(state, GraphState):
            raise DataError(f"run_chunk: expected a GraphState (net.initial_state(batch)), got {type(state).__name__}")
        if state.batch != B:
            raise DataError(f"run_chunk: the state holds {state.batch} samples, the input {B} (keep samples with net.select)")
        new = self._run_steps(values, GraphState(B, dict(state.nodes), dict(state.carried)))
        return self._outputs(values), new

    def select(self, state: GraphState, index) -> GraphState:
        """The state of the samples ``index`` (1-d integer indices into the batch, in that order)."""
        if not isinstance(state, GraphState):
            raise DataError(f"select: expected a GraphState, got {type(state).__name__}")
        index = torch.as_tensor(index, device=self._probe.device)
        if index.dim() != 1 or index.dtype in (torch.bool, torch.float32, torch.float64, torch.float16):
            raise DataError(f"select: expected 1-d integer sample indices, got dtype {index.dtype} and shape {tuple(index.shape)}")
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= state.batch):
            raise DataError(f"select: indices must lie in [0, {state.batch}), got {int(index.min())}..{int(index.max())}")
        nodes = {}
        for name, s in state.nodes.items():
            layer = self._layer(name)
            if isinstance(layer, m.Delay):
                nodes[name] = s.index_select(1, index)
            elif _is_egru(layer):  # c, y: [layers, B, H]; trace: [B, H]
                nodes[name] = type(s)(s.c.index_select(1, index), s.y.index_select(1, index), s.trace.index_select(0, index))
            else:
                nodes[name] = type(s)(*(None if t is None else t.index_select(0, index) for t in s))
        carried = {k: v.index_select(0, index) for k, v in state.carried.items()}
        return GraphState(len(index), nodes, carried)

    def join(self, first: GraphState, second: GraphState) -> GraphState:
        """The samples of ``first`` followed by those of ``second``: for continuous batching, where
        new samples (``initial_state``) join those already running."""
        for arg, state in (("first", first), ("second", second)):
            if not isinstance(state, GraphState):
                raise DataError(f"join: argument {arg!r}: expected a GraphState, got {type(state).__name__}")
        if sorted(first.nodes) != sorted(second.nodes):
            raise DataError(f"join: the states hold different nodes: {sorted(first.nodes)} and {sorted(second.nodes)}")
        nodes = {}
        for name, a in first.nodes.items():
            b, layer = second.nodes[name], self._layer(name)
            if isinstance(layer, m.Delay):
                nodes[name] = torch.cat([a, b], 1)
            elif _is_egru(layer):
                nodes[name] = type(a)(torch.cat([a.c, b.c], 1), torch.cat([a.y, b.y], 1), torch.cat([a.trace, b.trace], 0))
            else:
                nodes[name] = type(a)(*(None if u is None else torch.cat([u, v], 0) for u, v in zip(a, b)))
        carried = {}
        for name in first.carried.keys() | second.carried.keys():  # nothing carried yet = zeros
            a, b = first.carried.get(name), second.carried.get(name)
            a = torch.zeros((first.batch,) + tuple(b.shape[1:]), dtype=b.dtype, device=b.device) if a is None else a
            b = torch.zeros((second.batch,) + tuple(a.shape[1:]), dtype=a.dtype, device=a.device) if b is None else b
            carried[name] = torch.cat([a, b], 0)
        return GraphState(first.batch + second.batch, nodes, carried)

    def _layer(self, name: str) -> nn.Module | None:
        return self.layers[_key(name)] if _key(name) in self.layers else None

    def _outputs(self, values: dict[str, torch.Tensor]):
        outs = {k: values[k] for k in self.outputs}
        return outs[self.outputs[0]] if len(outs) == 1 else outs

    def _run_steps(self, values: dict[str, torch.Tensor], state: GraphState, keep=()) -> GraphState:
        """Fill ``values`` with every node's output over the chunk (the Scale of a fused self-loop
        only when in ``keep``: nothing else reads it); ``state`` is updated in place (a node
        without an entry starts at rest) and returned."""
        T, B = next(iter(values.values())).shape[:2]
        for group, recurrent in self.groups:
            if recurrent:
                if not self._fused_loop(group, values, state, keep):
                    self._step_group(group, values, T, B, state)
                continue
            (name,) = group
            if name in values:  # an Input
                continue
            values[name] = self._apply_sequence(name, self._sum(name, values), T, B, state)
        return state

    def _check_inputs(self, x) -> dict[str, torch.Tensor]:
        if not isinstance(x, Mapping):
            if len(self.inputs) != 1:
                raise DataError(f"the graph has inputs {self.inputs}: pass a dict of tensors by input name")
            x = {self.inputs[0]: x}
        if sorted(x) != self.inputs:
            raise DataError(f"inputs: expected tensors for {self.inputs}, got {sorted(x)}")
        values, lead = {}, None
        for name in self.inputs:
            t = torch.as_tensor(x[name])
            shape = self.shapes[name]
            if t.dim() != len(shape) + 2 or tuple(t.shape[2:]) != shape:
                raise DataError(f"input {name!r}: expected a [T, B, *{shape}] tensor, got shape {tuple(t.shape)}")
            if lead is not None and tuple(t.shape[:2]) != lead:
                raise DataError(f"input {name!r}: [T, B] = {tuple(t.shape[:2])} differs from the other inputs' {lead}")
            lead = tuple(t.shape[:2])
            if t.is_complex():  # casting would drop the imaginary part: a silently wrong input
                raise DataError(f"input {name!r}: expected real values, got a {t.dtype} tensor")
            if t.is_floating_point() and not _all_finite(t):
                # NaN/inf would pass through thresholds as "no spike" and give finite, wrong outputs.
                bad = tuple(int(i) for i in torch.nonzero(~torch.isfinite(t))[0])
                raise DataError(f"input {name!r}: contains NaN or inf, first at index {bad}")
            values[name] = t.to(dtype=self._probe.dtype, device=self._probe.device)
        return values

    def _sum(self, name: str, values: dict[str, torch.Tensor], skip: "set[str | None]" = frozenset()) -> torch.Tensor:
        srcs = [s for s in self.sources[name] if s not in skip]
        total = values[srcs[0]]
        for s in srcs[1:]:
            total = total + values[s]
        return total

    def _apply_sequence(self, name: str, x: torch.Tensor, T: int, B: int, state: GraphState) -> torch.Tensor:
        layer = self._layer(name)
        if layer is None or isinstance(layer, (m.Threshold, m.Scale)):
            return x if layer is None else layer(x)
        if isinstance(layer, m._Neuron):  # one fused scan over the chunk, from the carried state
            y, state.nodes[name] = F.neuron_chunk(x, *self._coefficients(name, layer, x), state.nodes.get(name), fused=layer.fused)
            return y
        if isinstance(layer, m.Delay):
            y, state.nodes[name] = F.delay_chunk(x, layer.steps, state.nodes.get(name))
            return y
        if _is_egru(layer):  # time-major; the recurrent scan runs inside
            if T == 0:  # an empty chunk leaves the state as it is
                return x.new_zeros((0, B) + self.shapes[name])
            y, state.nodes[name] = layer(x, state.nodes.get(name))
            return y
        # Stateless layers see all T*B samples at once: one GEMM / convolution for the sequence;
        # dense layers fed by sparse spikes skip the zeros (spikeflow.torch.sparse_linear).
        flat = x.reshape((T * B,) + tuple(x.shape[2:]))
        if self._online is not None and name in self._online:
            y = self._online_layer(name, layer, x, flat, state)
            return y.reshape((T, B) + tuple(y.shape[1:]))
        y = self._linear(flat, layer) if isinstance(layer, nn.Linear) else layer(flat)
        return y.reshape((T, B) + tuple(y.shape[1:]))

    def _online_layer(self, name: str, layer: nn.Module, x: torch.Tensor, flat: torch.Tensor, state: GraphState) -> torch.Tensor:
        """The layer's output, whose weight gradient is computed from the presynaptic trace
        ``a_t = decay * a_(t-1) + x_t`` instead of ``x_t`` (OTTT); the input and bias gradients are
        the usual ones."""
        decay = torch.tensor(self._online[name], dtype=x.dtype)
        with torch.no_grad():
            dyn, coef = F.Dynamics("leaky", False), F.Coefficients(c=torch.ones((), dtype=x.dtype), a=decay, b=torch.zeros((), dtype=x.dtype))
            trace, end = F.neuron_chunk(x.detach(), dyn, coef, state.nodes.get(name))
        state.nodes[name] = end
        trace = trace.reshape(flat.shape)
        if isinstance(layer, nn.Linear):
            y = torch.nn.functional.linear(flat, layer.weight.detach(), layer.bias)
            y_trace = torch.nn.functional.linear(trace, layer.weight)
        else:
            y = layer._conv_forward(flat, layer.weight.detach(), layer.bias)
            y_trace = layer._conv_forward(trace, layer.weight, None)
        return y + (y_trace - y_trace.detach())  # the value of y; the weight gradient of y_trace

    def _coefficients(self, name: str, layer: nn.Module, like: torch.Tensor):
        """``layer.discretise(like)``, reused within :meth:`reuse_coefficients` (inference only)."""
        cache = self._coef_cache
        if cache is None or torch.is_grad_enabled():
            return layer.discretise(like)
        found = cache.get(name)
        if found is None:
            found = cache[name] = layer.discretise(like)
        return found

    @contextlib.contextmanager
    def reuse_coefficients(self):
        """Within the block, each neuron discretises its parameters once instead of once per
        :meth:`run_chunk` (a fixed cost that dominates short chunks); parameter changes made inside
        the block are not seen. No effect while gradients are enabled."""
        outer = self._coef_cache
        self._coef_cache = {} if outer is None else outer
        try:
            yield self
        finally:
            self._coef_cache = outer

    def _linear(self, flat: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
        rows = flat.shape[0]
        tail = rows % ROW_BLOCK
        sparse = self._sparse(flat, layer)
        # The sparse product computes every row on its own (no GEMM blocking): no split needed.
        if sparse or tail == 0 or flat.dtype != torch.float64 or flat.device.type != "cpu":
            return self._product(flat, layer, sparse)
        # float64: the last rows go through a zero-padded ROW_BLOCK-row product, so every row is
        # rounded as inside a large GEMM, whatever the chunk size (see ROW_BLOCK).
        head = rows - tail
        padded = torch.cat([flat[head:], flat.new_zeros((ROW_BLOCK - tail,) + tuple(flat.shape[1:]))])
        y_tail = self._product(padded, layer)[:tail]
        if head == 0:
            return y_tail
        return torch.cat([self._product(flat[:head], layer), y_tail])

    def _sparse(self, flat: torch.Tensor, layer: nn.Linear) -> bool:
        """True when an inference product of ``flat`` goes through the sparse kernels."""
        weight = layer.weight
        return (
            not (torch.is_grad_enabled() and weight.requires_grad) and flat.device.type == "cpu" and flat.dim() == 2
            and flat.dtype in (torch.float32, torch.float64) and weight.dtype == flat.dtype and self.sparse_limit > 0
            and flat.numel() > 0 and sparse_linear.density(flat) <= self.sparse_limit
        )

    def _product(self, flat: torch.Tensor, layer: nn.Linear, sparse: bool | None = None) -> torch.Tensor:
        weight = layer.weight
        if sparse is None:
            sparse = self._sparse(flat, layer)
        if not sparse:
            return sparse_linear.linear(flat, weight, layer.bias, limit=self.sparse_limit)
        # Inference on sparse input: the sparse product reads W transposed; hand it a cached
        # transposed copy instead of transposing the weight on every call, which costs more than
        # the product for short chunks. No CSR arrays are built: nothing is kept for backward.
        key = (weight.data_ptr(), weight._version, weight.dtype)
        cached = self._transposed.get(id(layer))
        if cached is None or cached[0] != key:
            cached = (key, weight.detach().t().contiguous())
            self._transposed[id(layer)] = cached
        return sparse_linear.inference_linear(flat, cached[1], layer.bias)

    def uses_fused_loop(self, name: str, x: "torch.Tensor | None" = None) -> bool:
        """Whether the neuron ``name`` runs its loops (:attr:`self_loops`, :attr:`delayed_loops`)
        inside its fused scan (for inputs like ``x``; by default the module's own dtype on its
        device) rather than step by step."""
        layer = self._layer(name)
        return name in self._fusions and F.fusable(self._probe if x is None else x, layer.fused)

    def _fused_loop(self, group: list[str], values: dict[str, torch.Tensor], state: GraphState, keep=()) -> bool:
        """Run a group of :func:`_fusions` as one fused scan; False when it must step.

        The loop nodes' outputs are what the step-by-step path computes (their carried values and
        the Delay's history too), so the state of a chunk is the same either way."""
        neuron = next((k for k in group if k in self._fusions), None)
        if neuron is None:
            return False
        plan = self._fusions[neuron]
        x = self._sum(neuron, values, skip={plan.gain, plan.chain[-1] if plan.chain else None})
        if not self.uses_fused_loop(neuron, x) or x.shape[0] == 0:  # an empty chunk steps (it changes nothing)
            return False
        layer = self._layer(neuron)
        last = state.carried.get(neuron)  # the neuron's own last output, when an edge from it is delayed
        gain = first = None
        if plan.gain is not None:
            gain = self._layer(plan.gain)
            gain_delayed = (plan.gain, neuron) in self.delayed  # else the edge neuron -> gain is the delayed one
            if gain_delayed:
                first = state.carried.get(plan.gain)
            else:
                first = None if last is None else gain(last)
        delayed_gain = delayed_first = None
        if plan.chain is not None:
            # The loop's terms of the first two steps depend on the state only (the loop is two
            # steps long): run its nodes on two steps of placeholder outputs.
            delayed_first = self._chain(neuron, plan.chain, torch.zeros_like(x[:1]).expand((2,) + x.shape[1:]), state)[0]
            delayed_gain = next(self._layer(k) for k in plan.chain if isinstance(self._layer(k), m.Scale)).scale
        loop = F.Loop(None if gain is None else gain.scale, first, delayed_gain, delayed_first, plan.order)
        y, state.nodes[neuron] = F.neuron_chunk(x, *self._coefficients(neuron, layer, x), state.nodes.get(neuron), fused=True, loop=loop)
        values[neuron] = y
        if plan.gain is not None:
            if plan.gain in keep:
                before = torch.zeros_like(y[:1]) if last is None else last.unsqueeze(0)
                values[plan.gain] = gain(y if gain_delayed else torch.cat([before, y[:-1]]))
            state.carried[plan.gain if gain_delayed else neuron] = gain(y[-1]) if gain_delayed else y[-1]
        if plan.chain is not None:
            # What the loop holds after the chunk left the neuron in its last two steps (the
            # loop is two steps long): without a recorded loop node those suffice.
            recorded = any(k in keep for k in plan.chain)
            _, outs, nodes, carried = self._chain(neuron, plan.chain, y if recorded else y[-2:], state)
            values.update({k: v for k, v in outs.items() if k in keep})
            state.nodes.update(nodes)
            state.carried.update(carried)
        return True

    def _chain(self, neuron: str, chain: tuple[str, str], y: torch.Tensor, state: GraphState):
        """Run the nodes of a ``neuron -> chain[0] -> chain[1] -> neuron`` loop (a Scale and a Delay)
        on the neuron's outputs ``y[k, B, ...]`` as the step-by-step path does, from ``state``
        (left unchanged). Returns the term each step adds to the neuron's input, the nodes'
        outputs, their new states (the Delay's history) and the new carried values."""
        nodes, carried, outs = {}, {}, {}
        prev, seq = neuron, y
        for name in chain + (neuron,):
            if (prev, name) in self.delayed:  # this edge carries the previous step's value
                before = state.carried.get(prev)
                before = torch.zeros_like(seq[:1]) if before is None else before.unsqueeze(0)
                carried[prev] = seq[-1]
                seq = torch.cat([before, seq[:-1]])
            if name == neuron:
                break
            layer = self._layer(name)
            if isinstance(layer, m.Delay):
                seq, nodes[name] = F.delay_chunk(seq, layer.steps, state.nodes.get(name))
            else:
                seq = layer(seq)
            outs[name] = seq
            prev = name
        return seq, outs, nodes, carried

    def _step_group(self, group: list[str], values: dict[str, torch.Tensor], T: int, B: int, state: GraphState) -> None:
        like = self._probe
        coefs, states = {}, {k: state.nodes.get(k) for k in group}
        for name in group:
            layer = self._layer(name)
            if isinstance(layer, m._Neuron):
                coefs[name] = layer.discretise(like)
        prev: dict[str, torch.Tensor] = {k: v for k, v in state.carried.items() if k in group}
        outs: dict[str, list[torch.Tensor]] = {k: [] for k in group}
        for t in range(T):
            cur: dict[str, torch.Tensor] = {}
            for name in group:
                total = None
                for s in self.sources[name]:
                    if (s, name) in self.delayed:  # last step's value (nothing at t = 0)
                        term = prev.get(s)
                    else:
                        term = cur[s] if s in group else values[s][t]
                    if term is not None:
                        total = term if total is None else total + term
                if total is None:
                    total = torch.zeros((B,) + self.shapes[self.sources[name][0]], dtype=like.dtype, device=like.device)
                layer = self._layer(name)
                if isinstance(layer, m._Neuron):
                    y, states[name] = F.neuron_step(total, states[name], *coefs[name])
                elif isinstance(layer, m.Delay):
                    y, states[name] = F.delay_chunk(total.unsqueeze(0), layer.steps, states[name])
                    y = y[0]
                elif _is_egru(layer):  # a one-step sequence; the EGRUState carries over
                    y, states[name] = layer(total.unsqueeze(0), states[name])
                    y = y[0]
                else:
                    y = total if layer is None else layer(total)
                cur[name] = y
                outs[name].append(y)
            prev = cur
        for name in group:
            values[name] = torch.stack(outs[name]) if T else torch.empty((0, B) + self.shapes[name], dtype=like.dtype, device=like.device)
            if states[name] is not None:
                state.nodes[name] = states[name]
        for a, _ in self.delayed:
            if a in prev:
                state.carried[a] = prev[a]

    # ---------------------------------------------------------------------- back to the IR

    def to_graph(self) -> Graph:
        """The graph with the module's current parameter values (float64)."""
        replaced = {}
        for name in self.order:
            if _key(name) in self.layers:
                replaced[name] = node_of(self.layers[_key(name)], where=f"node {name!r}: ")
        return _replace(self._template, replaced, prefix="")

    def extra_repr(self) -> str:
        return f"{self._template!r}"


@dataclass(frozen=True)
class _Fusion:
    """The loops on one neuron that its fused scan runs (:func:`_fusions`)."""

    gain: str | None  # the Scale of a neuron -> Scale -> neuron loop
    chain: tuple[str, str] | None  # neuron -> chain[0] -> chain[1] -> neuron: a Scale and a one-step Delay
    order: str = F.LOOP_ORDERS[0]  # how both loops' terms join the neuron's other inputs


def _fusions(flat: Graph, groups: list[tuple[list[str], bool]], sources: dict[str, list[str]]) -> dict[str, _Fusion]:
    """The recurrent groups that run inside a neuron's fused scan, by neuron.

    A group of a neuron (LIF, LI, IF, I, CubaLIF, CubaLI) and, besides it, only a ``neuron ->
    Scale -> neuron`` loop, which adds ``scale * y[t-1]`` to the neuron's own input (snnTorch's
    late reset is imported as this loop, see docs/conventions.md), a ``neuron -> Scale -> Delay
    -> neuron`` loop (or Delay, then Scale) whose Delay is one step, adding ``scale * y[t-2]``, or
    both (snnTorch ``Synaptic``'s late reset, on a CubaLIF).

    The neuron must have another input, and the loops' terms must join its sorted-source sum in an
    order the scan reproduces (:data:`spikeflow.torch.functional.LOOP_ORDERS`; a single loop term
    last, or one of two terms), so that the fused scan adds the terms in the graph's order: float64
    values stay bit-identical.
    """
    kinds = (n.LIF, n.LI, n.IF, n.I, n.CubaLIF, n.CubaLI)
    found = {}
    for group, recurrent in groups:
        neurons = [k for k in group if isinstance(flat.nodes[k], kinds)]
        if not recurrent or len(neurons) != 1 or len(group) > 4:
            continue
        neuron = neurons[0]
        srcs = sources[neuron]
        gain = chain = None
        for first in sorted(set(flat.successors(neuron)) & set(group)):
            node = flat.nodes[first]
            if isinstance(node, n.Scale) and sorted(flat.successors(first)) == [neuron]:
                gain = first
            elif isinstance(node, (n.Scale, n.Delay)) and len(flat.successors(first)) == 1:
                second = flat.successors(first)[0]
                pair = {type(node), type(flat.nodes[second])}
                if pair == {n.Scale, n.Delay} and sources[second] == [first] and sorted(flat.successors(second)) == [neuron]:
                    chain = (first, second)
        if chain is not None:
            delay = next(flat.nodes[k] for k in chain if isinstance(flat.nodes[k], n.Delay))
            if not np.all(discretise.coefficients(delay, flat.dt, "euler")["steps"] == 1):
                chain = None
        loops = [k for k in (gain, chain[-1] if chain else None) if k is not None]
        if not loops or sorted(group) != sorted({neuron, *loops, *(chain or ())}) or neuron in srcs:
            continue
        if (gain is not None and sources[gain] != [neuron]) or (chain is not None and sources[chain[0]] != [neuron]):
            continue
        order = _loop_order(srcs, gain, chain[-1] if chain else None)
        if order is not None:
            found[neuron] = _Fusion(gain, chain, order)
    return found


def _loop_order(srcs: list[str], gain: str | None, tail: str | None) -> str | None:
    """How the loop terms ``gain`` and ``tail`` join the sum over ``srcs`` (the neuron's sorted
    sources): a :data:`spikeflow.torch.functional.LOOP_ORDERS` entry, or None when the fused scan
    cannot add them in the graph's order (it sums the other sources first, as the graph does)."""
    loops = [k for k in (gain, tail) if k is not None]
    others = [k for k in srcs if k not in loops]
    if not others:
        return None
    if len(loops) == 1:
        return F.LOOP_ORDERS[0] if len(srcs) == 2 or srcs[-1] == loops[0] else None
    if len(others) == 1:  # one input x: the first two terms decide (a + b = b + a exactly)
        head = set(srcs[:2])
        return F.LOOP_ORDERS[2] if head == {gain, tail} else F.LOOP_ORDERS[0] if gain in head else F.LOOP_ORDERS[1]
    if set(srcs[-2:]) != {gain, tail}:
        return None
    return F.LOOP_ORDERS[0] if srcs[-2] == gain else F.LOOP_ORDERS[1]


def _replace(graph: Graph, replaced: dict[str, n.Node], prefix: str) -> Graph:
    nodes = {}
    for name, node in graph.nodes.items():
        full = prefix + name
        if isinstance(node, Graph):
            nodes[name] = _replace(node, replaced, full + ".")
        else:
            nodes[name] = replaced.get(full, copy.deepcopy(node))
    return Graph(nodes, list(graph.edges), dt=graph.dt, integration=graph.integration, metadata=copy.deepcopy(graph.metadata))


# ------------------------------------------------------------------------------ public API


def to_torch(
    graph: Graph,
    *,
    train_tau: bool = False,
    train_threshold: bool = False,
    surrogate: Any = "atan",
    detach_reset: bool = True,
    dtype: torch.dtype | None = None,
    fused: bool | None = None,
) -> GraphModule:
    """Lower ``graph`` to a :class:`GraphModule`.

    Args:
        graph: the network (validated here).
        train_tau: make the neurons' time constants trainable parameters.
        train_threshold: make the thresholds trainable parameters.
        surrogate: surrogate gradient of every spiking node (a name or a Surrogate).
        detach_reset: treat the reset as a constant in the backward pass (snnTorch's default).
        dtype: parameter and compute dtype; None (default): ``torch.get_default_dtype()``, float32
            unless changed, as for any PyTorch module. ``torch.float64`` keeps the graph's values
            exact (the equivalence tests and the early-exit runners ask for it). Inputs of another
            dtype are cast to this one once, at the start of each call.
        fused: force (True) or forbid (False) the fused numba scans; None picks them on CPU.

    Raises:
        BackendError: a node type the torch backend does not support (named with its node).
    """
    if not isinstance(graph, Graph):
        raise GraphError(f"to_torch: expected a spikeflow Graph, got {type(graph).__name__}")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    ctx = _Context(graph.dt, graph.integration, train_tau, train_threshold, surrogate, detach_reset, dtype, fused)
    return GraphModule(graph, ctx)


def _neurons_in(layers) -> list[nn.Module]:
    found = []
    for layer in layers:
        found.extend(x for x in layer.modules() if isinstance(x, (m._Neuron, m.Delay)))
    return found


def _recurrent_graph(layer: m.Recurrent, dt: float, integration: str, where: str) -> Graph:
    neuron = node_of(layer.neuron, where)
    size = layer.recurrent.in_features
    name = type(neuron).__name__.lower()
    return Graph(
        {"input": n.Input(shape=(size,)), name: neuron, "recurrent": node_of(layer.recurrent, where), "output": n.Output(shape=(size,))},
        [("input", name), (name, "recurrent"), ("recurrent", name), (name, "output")],
        dt=dt, integration=integration,
    )


def _input_shape(layer: nn.Module) -> tuple[int, ...]:
    if isinstance(layer, nn.Linear):
        return (layer.in_features,)
    if isinstance(layer, m.Recurrent):
        return (layer.recurrent.in_features,)
    if _is_egru(layer):
        return (layer.input_size,)
    if hasattr(layer, "to_node"):
        shape = layer.to_node().input_shape()
        if shape:
            return tuple(shape)
    raise GraphError(f"to_graph: cannot infer the input shape from the first layer ({type(layer).__name__}); pass sample=")


def to_graph(module: nn.Module, sample: torch.Tensor | None = None, *, dt: float | None = None, integration: str | None = None) -> Graph:
    """Turn a lowered :class:`GraphModule`, or an ``nn.Sequential`` of layers, into a graph.

    Args:
        module: a :class:`GraphModule` (exact round trip of :func:`to_torch`), or an
            ``nn.Sequential`` (or single layer) of ``nn.Linear``, ``nn.Conv1d/2d``,
            ``nn.AvgPool2d``, ``nn.Flatten``, ``nn.Identity`` and spikeflow modules
            (neurons, :class:`~spikeflow.torch.modules.Recurrent`, Threshold, Scale, Delay) or a
            :class:`~spikeflow.torch.egru.EGRU` (one EGRU node per layer; its training-only
            dropout, DropConnect and zoneout are not part of the graph).
        sample: a time-major input ``[T, B, ...]`` fixing the input shape; needed when the first
            layer does not imply it (convolutions).
        dt, integration: override; by default taken from the neuron modules (which must agree),
            else ``1e-3`` and ``"euler"``.
    """
    if isinstance(module, GraphModule):
        return module.to_graph()
    layers = list(module) if isinstance(module, nn.Sequential) else [module]
    layers = [layer for layer in layers if not isinstance(layer, nn.Identity)]
    if not layers:
        raise GraphError("to_graph: the module has no layers")
    neurons = _neurons_in(layers)
    if dt is None:
        dts = sorted({x.dt for x in neurons})
        if len(dts) > 1:
            raise GraphError(f"to_graph: the neuron modules disagree on dt: {dts}")
        dt = dts[0] if dts else 1e-3
    if integration is None:
        rules = sorted({x.integration for x in neurons if hasattr(x, "integration")})
        if len(rules) > 1:
            raise GraphError(f"to_graph: the neuron modules disagree on integration: {rules}")
        integration = rules[0] if rules else "euler"
    if sample is not None:
        if torch.as_tensor(sample).dim() < 3:
            raise DataError(f"to_graph: sample must be time-major [T, B, ...], got shape {tuple(torch.as_tensor(sample).shape)}")
        shape = tuple(torch.as_tensor(sample).shape[2:])
    else:
        shape = _input_shape(layers[0])
    nodes: dict[str, n.Node | Graph] = {"input": n.Input(shape=shape)}
    names = ["input"]
    for i, layer in enumerate(layers, start=1):
        where = f"layer {i} ({type(layer).__name__}): "
        if isinstance(layer, m.Recurrent):
            name, node = f"recurrent{i}", _recurrent_graph(layer, dt, integration, where)
            out_shape = node.nodes["output"].shape
            expected = node.nodes["input"].shape
            if shape != expected:
                raise GraphError(f"{where}expects input shape {expected}, got {shape}")
        elif _is_egru(layer) and layer.num_layers > 1:  # a stack: one node per layer
            for k, node in enumerate(layer.to_nodes(), start=1):
                try:
                    shape = node.output_shape(shape)
                except GraphError as err:
                    raise GraphError(f"{where}layer {k - 1}: {err}") from None
                nodes[f"egru{i}_{k}"] = node
                names.append(f"egru{i}_{k}")
            continue
        else:
            node = node_of(layer, where)
            name = f"{type(node).__name__.lower()}{i}"
            try:
                out_shape = node.output_shape(shape)
            except GraphError as err:
                raise GraphError(f"{where}{err}") from None
        nodes[name] = node
        names.append(name)
        shape = tuple(out_shape)
    nodes["output"] = n.Output(shape=shape)
    names.append("output")
    return Graph(nodes, list(zip(names, names[1:])), dt=dt, integration=integration).validate()
