"""Lowering a graph to a program for the numba interpreter: one rule per node type.

A program is a table of int64 op rows, a flat parameter vector, a flat integer vector (CSR index
arrays, conv geometry, delay steps) and the size of one sample's memory. Op rows (column 0 is the
op code from ``kernels.py``; "@x" is an offset into memory, "#x" into params, "%x" into iparams):

==========  =====================================================================================
INPUT       @dst, size, input column, &list|-1, a DENSE op reads the list (0/1)
COPY, ADD   @dst, @src, size                      (ADD: dst += src)
DENSE       @dst, @src, n_out, n_in, #w, #bias|-1, layout, %indptr, %indices, -, -, weight frac
SCALE       @dst, @src, size, #scale
CONV        @dst, @src, %geometry, #w, #bias|-1, n_out, outputs per channel, -, -, -, -, weight frac,
            event: &list, collect (0/1), %taps, #w channel-last, @scratch, source size
POOL        @dst, @src, %geometry, divisor (0: sum), n_out,
            event: &list, collect (0/1), %taps, &list of the output|-1, source size
THRESHOLD   @dst, @src, size, #threshold
DELAY       @dst, @src, size, %steps, @ring, ring length
LIF (LI)    @dst, @src, size, @v, #a, #b, #c, #v_threshold, #v_reset, spiking, subtract
CUBA        @dst, @src, size, @v, @i, #a_syn, #c_syn, #a_mem, #c_mem, #b_mem, #v_th, #v_reset, spiking, subtract
IF (I)      @dst, @src, size, @v, #c, #v_threshold, #v_reset, spiking, subtract
EGRU        @dst, @src, hidden, n_in, @state, %egru   (state: c, y, then scratch xp, hp of 3*hidden)
LIF_FUSED   @dst, size, @v, #a, #b, #c, #v_threshold, #v_reset, spiking, subtract, uniform,
            &list|-1, terms, @src0, #scale0, @src1, #scale1  (scale 1.0 for a plain source)
==========  =====================================================================================

In float precision a LIF or LI node with one or two sources becomes LIF_FUSED: its input sum,
any Scale node that only feeds it (uniform, finite, not recorded) and the spike/reset happen in the
one pass over the neurons that the update needs anyway. In event mode a spiking LIF_FUSED also
writes the list of its spiking neurons (``&list``: an offset into the interpreter's int64 list
scratch) and a DENSE op whose only source it is scatters over that list (column 13: &list|-1)
instead of scanning the spike vector. Fixed point keeps the plain ops (its sums saturate).

In event mode (float) a CONV or POOL op scatters the entries of its source's list: the list the
source keeps (an Input, a spiking LIF_FUSED, a POOL whose reader wants one) or, for any other
source, one the op collects itself ("collect" 1, in its own list slot). ``%taps`` lists, per input
row and per input column, the (kernel offset, output position) pairs that input reaches.

``%egru`` holds ``#w_ih, layout, %indptr, %indices, #bias_ih, #w_hh, layout, %indptr, %indices,
#bias_hh, #threshold, #trace_decay|-1``: an EGRU's two weight matrices are stored like a DENSE
op's (clock: gathered by rows; event: scattered by columns, so only inputs and units with a
nonzero ``y`` cost work). A recorded EGRU's trace is its output (the events ``y``, or the output
trace), as in the torch backend.

The order of ops is :meth:`Graph.order`; a node's input is the sum of its sources in sorted name
order, exactly as ``tests/reference/graph_sim.py`` computes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import kernels as K
from spikeflow.errors import BackendError
from spikeflow.ir import nodes as n
from spikeflow.ir.egru import EGRU
from spikeflow.ir.discretise import coefficients

SPARSE_DENSITY = 0.25
"""``sparse="auto"`` stores a dense weight matrix as CSR when at most this fraction is nonzero;
a weight that is already sparse (a sparse IR weight, a CSR tuple) always stays CSR."""


@dataclass
class Program:
    """A lowered graph: everything the interpreter needs, plus where each node lives in memory."""

    ops: np.ndarray
    params: np.ndarray
    iparams: np.ndarray
    mem_size: int
    dtype: np.dtype
    inputs: dict[str, tuple[int, tuple[int, ...]]]
    """Input name -> (first column in the packed input vector, per-sample shape)."""
    n_input: int
    outputs: dict[str, tuple[int, tuple[int, ...]]]
    """Node name -> (memory offset, shape) of its output."""
    traces: dict[str, tuple[int, tuple[int, ...]]]
    """Neuron name -> (memory offset, shape) of its membrane potential."""
    spiking: set[str]
    output_names: list[str]
    fixed: object | None = None
    saturated_params: int = 0
    list_size: int = 0
    """Length of the spike-list scratch (event mode; the interpreter allocates it per run)."""
    layouts: dict[str, str] = field(default_factory=dict)
    """Synaptic node name -> weight layout chosen ("rows", "columns", "csr-rows", "csr-columns");
    an EGRU's two matrices appear as ``"<name>:weight_ih"`` and ``"<name>:weight_hh"``."""


class ProgramBuilder:
    """Collects op rows, parameters and memory; the graph lowering and the benchmark use it."""

    def __init__(self, dtype=np.float64, event: bool = False, sparse: str | bool = "auto", fixed=None):
        if sparse not in ("auto", True, False):
            raise BackendError(f"argument 'sparse': expected 'auto', True or False, got {sparse!r}")
        self.dtype = np.dtype(np.int64 if fixed is not None else dtype)
        self.event, self.sparse, self.fixed = event, sparse, fixed
        self.ops: list[list[int]] = []
        self._params: list[np.ndarray] = []
        self._n_params = 0
        self._iparams: list[np.ndarray] = []
        self._n_iparams = 0
        self.mem = 0
        self.lists = 0
        self.saturated = 0
        self.layouts: dict[str, str] = {}

    # ---------------------------------------------------------------------------- storage

    def alloc(self, size: int) -> int:
        off, self.mem = self.mem, self.mem + int(size)
        return off

    def alloc_list(self, size: int) -> int:
        """Room for a spike list (a count, then up to ``size`` indices) in the list scratch."""
        off, self.lists = self.lists, self.lists + int(size) + 1
        return off

    def param(self, values, role: str, frac: int | None = None) -> int:
        """Append parameters; ``role`` (weight, state, coef, threshold) picks the fixed-point format."""
        arr = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        if self.fixed is not None:
            arr, saturated = self.fixed.quantise_role(arr, role, frac)
            self.saturated += saturated
        off = self._n_params
        self._params.append(arr)
        self._n_params += arr.size
        return off

    def iparam(self, values) -> int:
        arr = np.ascontiguousarray(values, dtype=np.int64).reshape(-1)
        off = self._n_iparams
        self._iparams.append(arr)
        self._n_iparams += arr.size
        return off

    def op(self, *cols: int) -> None:
        row = [int(c) for c in cols]
        self.ops.append(row + [0] * (K.OP_WIDTH - len(row)))

    # ------------------------------------------------------------------------------- ops

    def dense(self, name: str, dst: int, src: int, weight, bias=None, src_list: int = -1) -> None:
        """``W x (+ b)``; ``weight`` is a dense array or a ``(indptr, indices, data, shape)`` CSR
        tuple by rows (or any object with ``tocsr()``, such as a sparse IR weight), stored in the
        layout the mode prefers. A sparse weight is only densified when ``sparse=False``.
        ``src_list``: the source's spike list (event mode), or -1 to scan the source."""
        (n_out, n_in), (layout, w, ip, ix, frac) = self.weights(name, weight)
        b = -1 if bias is None else self.param(bias, "state")
        self.op(K.OP_DENSE, dst, src, n_out, n_in, w, b, layout, ip, ix, 0, 0, frac or 0, src_list if self.event else -1)

    def weights(self, name: str, weight):
        """Store a weight matrix for ``W x``; returns ``((n_out, n_in), (layout, #w, %indptr,
        %indices, fixed-point fraction or None))`` and records the layout under ``name``."""
        csr = _as_csr(weight)
        n_out, n_in = csr[3] if csr is not None else weight.shape
        if csr is not None:
            use_csr = self.sparse in (True, "auto")
        else:
            weight = np.asarray(weight, dtype=np.float64)
            nnz = int(np.count_nonzero(weight))
            use_csr = self.sparse is True or (self.sparse == "auto" and nnz <= SPARSE_DENSITY * max(n_out * n_in, 1))
        frac = None
        if self.fixed is not None:
            frac = self.fixed.weight_frac_for(csr[2] if csr is not None else weight)
        if use_csr:
            indptr, indices, data = csr[:3] if csr is not None else _dense_to_csr(weight)
            if self.event:  # scatter needs the columns: transpose the CSR
                indptr, indices, data = _transpose_csr(indptr, indices, data, n_out, n_in)
            ip = self.iparam(indptr)
            if self.event:
                packed, layout = _pack_indices(indices, n_out, name)
                ix = self.iparam(packed)
            else:
                layout, ix = K.CSR_ROWS, self.iparam(indices)
            w = self.param(data, "weight", frac)
        else:
            dense = weight if csr is None else _csr_to_dense(*csr)
            layout, ip, ix = (K.COLUMNS if self.event else K.ROWS), 0, 0
            w = self.param(dense.T if self.event else dense, "weight", frac)
        self.layouts[name] = {K.ROWS: "rows", K.COLUMNS: "columns", K.CSR_ROWS: "csr-rows", K.CSR_COLUMNS: "csr-columns",
                              K.CSR_COLUMNS16: "csr-columns"}[layout]
        return (n_out, n_in), (layout, w, ip, ix, frac)

    def egru(self, name: str, dst: int, src: int, node, backend: str) -> int:
        """One EGRU layer; returns the offset of its state ``c``."""
        if self.fixed is not None:
            raise BackendError(
                f"node {name!r} of type EGRU is not supported by backend {backend!r} in fixed-point precision "
                "(its gates need exp and tanh); use precision 'float64' or 'float32'"
            )
        hidden = node.hidden_size
        state = self.alloc(8 * hidden)  # c, y, xp (3H), hp (3H)
        geo = []
        for part in ("ih", "hh"):
            _, (layout, w, ip, ix, _) = self.weights(f"{name}:weight_{part}", getattr(node, f"weight_{part}"))
            geo += [w, layout, ip, ix, self.param(getattr(node, f"bias_{part}"), "state")]
        geo.append(self.param(node.threshold, "threshold"))
        geo.append(self.param(node.trace_decay, "coef") if node.trace_decay != 0 else -1)
        self.op(K.OP_EGRU, dst, src, hidden, node.input_size, state, self.iparam(geo))
        return state

    def lif(self, dst: int, src: int, size: int, coef: dict, spiking: bool, subtract: bool) -> int:
        v = self.alloc(size)
        a, b, c = (self.param(_full(coef[k], size), r) for k, r in (("a", "coef"), ("b", "state"), ("c", "coef")))
        thr, vr = self.spike_params(coef, size, spiking)
        self.op(K.OP_LIF, dst, src, size, v, a, b, c, thr, vr, spiking, subtract)
        return v

    def lif_fused(self, dst: int, size: int, coef: dict, spiking: bool, subtract: bool, terms, spike_list: int) -> int:
        """A LIF/LI whose input is the sum of ``terms`` ``[(@src, uniform scale or None)]`` (one or
        two, in summation order), fused into the neuron pass; returns the offset of ``v``."""
        v = self.alloc(size)
        a, b, c = (self.param(_full(coef[k], size), r) for k, r in (("a", "coef"), ("b", "state"), ("c", "coef")))
        thr, vr = self.spike_params(coef, size, spiking)
        keys = ("a", "b", "c", "v_threshold", "v_reset") if spiking else ("a", "b", "c")
        uniform = all(_is_uniform(_full(coef[k], size)) for k in keys)
        cols = []
        for src, scale in terms:
            cols += [src, self.param(np.float64(1.0 if scale is None else scale), "coef")]  # x * 1.0 is exact
        self.op(K.OP_LIF_FUSED, dst, size, v, a, b, c, thr, vr, spiking, subtract, uniform, spike_list, len(terms), *cols)
        return v

    def spike_params(self, coef: dict, size: int, spiking: bool) -> tuple[int, int]:
        if not spiking:
            return 0, 0
        return self.param(_full(coef["v_threshold"], size), "threshold"), self.param(_full(coef["v_reset"], size), "state")

    def finish(self, **fields) -> Program:
        ops = np.array(self.ops, dtype=np.int64).reshape(-1, K.OP_WIDTH)
        params = np.concatenate(self._params).astype(self.dtype) if self._params else np.zeros(1, self.dtype)
        iparams = np.concatenate(self._iparams) if self._iparams else np.zeros(1, np.int64)
        return Program(ops=ops, params=params, iparams=iparams, mem_size=max(self.mem, 1), dtype=self.dtype, list_size=self.lists,
                       fixed=self.fixed, saturated_params=self.saturated, layouts=dict(self.layouts), **fields)


# ------------------------------------------------------------------------------ the lowering


def lower(graph, *, backend: str, dtype=np.float64, event: bool = False, sparse="auto", fixed=None, keep=()) -> Program:
    """Lower a validated graph to a :class:`Program`; unsupported nodes raise BackendError.

    ``keep``: names of nodes whose outputs must be in memory (recorded ones); a Scale node fused
    into the LIF it feeds is never computed on its own, so recorded ones are not fused.
    """
    g = graph.flatten()
    shapes = graph.shapes()  # of the flattened graph (shapes() of ``g`` itself rejects dotted names)
    order = g.order()
    position = {k: i for i, k in enumerate(order)}
    for a, b in g.delayed_edges():
        if position[a] < position[b]:  # cannot happen for a DFS back edge; guard the invariant
            raise BackendError(f"node {b!r}: delayed edge from {a!r} runs before its target")
    pb = ProgramBuilder(dtype, event=event, sparse=sparse, fixed=fixed)
    out = {k: (pb.alloc(math.prod(shapes[k])), shapes[k]) for k in order}
    fused, folded, lists, listened = _fusions(g, shapes, set(keep), pb)
    inputs: dict[str, tuple[int, tuple[int, ...]]] = {}
    traces: dict[str, tuple[int, tuple[int, ...]]] = {}
    n_input = 0
    for name in order:
        node = g.nodes[name]
        dst, shape = out[name]
        size = math.prod(shape)
        sources = sorted(a for a, b in g.edges if b == name)
        if isinstance(node, n.Input) and not sources:
            inputs[name] = (n_input, shape)
            pb.op(K.OP_INPUT, dst, size, n_input, lists.get(name, -1), name in listened)
            n_input += size
            continue
        if name in folded:  # computed inside the LIF it feeds
            continue
        if name in fused:
            coef = {k: _full(v, size, shape) for k, v in coefficients(node, g.dt, g.integration, where=f"node {name!r}: ").items()}
            terms = [(out[folded[a]][0], _uniform_scale(g.nodes[a], size, shape)) if a in folded else (out[a][0], None) for a in sources]
            traces[name] = (pb.lif_fused(dst, size, coef, node.spiking, getattr(node, "reset", "zero") == "subtract", terms, lists.get(name, -1)), shape)
            continue
        in_shape = shapes[sources[0]]
        src = _input_sum(pb, sources, out, math.prod(in_shape))
        single = lists.get(sources[0], -1) if len(sources) == 1 else -1
        v = _lower_node(pb, name, node, dst, src, in_shape, shape, g, backend, single, lists.get(name, -1))
        if v is not None:
            traces[name] = (v, shape)
    spiking = {k for k in order if getattr(g.nodes[k], "spiking", False)}
    return pb.finish(inputs=inputs, n_input=n_input, outputs=out, traces=traces, spiking=spiking, output_names=g.outputs)


def _input_sum(pb: ProgramBuilder, sources: list[str], out: dict, size: int) -> int:
    """Offset of the node's input: the single source's buffer, or a buffer summing all sources."""
    if len(sources) == 1:
        return out[sources[0]][0]
    dst = pb.alloc(size)
    pb.op(K.OP_COPY, dst, out[sources[0]][0], size)
    for a in sources[1:]:
        pb.op(K.OP_ADD, dst, out[a][0], size)
    return dst


def _fusions(g, shapes, keep: set, pb: ProgramBuilder):
    """Which LIF/LI nodes fuse their input sum (float precision, one or two sources), which Scale
    nodes fold into them (Scale name -> its source), which fused spiking LIFs and Inputs keep a
    list of their nonzero entries (event mode; name -> list offset: an Input's list also lets it
    take sparse input entries) and which Inputs have a DENSE reader of that list."""
    if pb.fixed is not None:
        return set(), {}, {}, set()
    delayed = set(g.delayed_edges())
    sources = {k: sorted(a for a, b in g.edges if b == k) for k in g.nodes}
    consumers = {k: [b for a, b in g.edges if a == k] for k in g.nodes}
    fused, folded, lists = set(), {}, {}
    for name, node in g.nodes.items():
        if not isinstance(node, (n.LI, n.LIF)) or not 1 <= len(sources[name]) <= 2:
            continue
        fused.add(name)
        for a in sources[name]:
            scale = g.nodes[a]
            if (isinstance(scale, n.Scale) and consumers[a] == [name] and len(sources[a]) == 1 and a not in keep
                    and a not in g.outputs and (a, name) not in delayed and (sources[a][0], a) not in delayed
                    and _uniform_scale(scale, math.prod(shapes[a]), shapes[a]) is not None):
                folded[a] = sources[a][0]
        if pb.event and node.spiking and _readers(g, name, sources, consumers):
            lists[name] = pb.alloc_list(math.prod(shapes[name]))
    for name, node in g.nodes.items() if pb.event else ():
        if isinstance(node, (n.SumPool2d, n.AvgPool2d)) and _readers(g, name, sources, consumers):
            lists[name] = pb.alloc_list(math.prod(shapes[name]))
    listened = set()
    for name in [k for k in g.inputs if not sources[k]] if pb.event else ():
        lists[name] = pb.alloc_list(math.prod(shapes[name]))
        if _readers(g, name, sources, consumers):
            listened.add(name)
    return fused, folded, lists, listened


LIST_READERS = (n.Affine, n.Linear, n.Conv1d, n.Conv2d, n.SumPool2d, n.AvgPool2d)
"""Node types whose event-mode op scatters over its single source's list of nonzero entries."""


def _readers(g, name, sources, consumers) -> bool:
    """Whether a DENSE, CONV or POOL op reads only ``name`` (so it can scatter over ``name``'s list)."""
    return any(isinstance(g.nodes[b], LIST_READERS) and sources[b] == [name] for b in consumers[name])


def _uniform_scale(node, size: int, shape) -> float | None:
    """The one factor of a Scale node, or None when it varies per element."""
    values = _full(node.scale, size, shape)
    if values.size == 0 or not _is_uniform(values):
        return None
    return float(values[0])


def _is_uniform(values: np.ndarray) -> bool:
    """All elements bitwise equal (so +0.0 and -0.0 count as different)."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.int64)
    return bits.size == 0 or bool(np.all(bits == bits[0]))


def _lower_node(pb, name, node, dst, src, in_shape, shape, g, backend, src_list: int = -1, own_list: int = -1) -> int | None:
    """Emit the ops of one node; return the offset of its membrane potential, if it has one.
    ``src_list``: the list its single source keeps, or -1; ``own_list``: the list this node keeps
    for its readers, or -1."""
    size, n_in = math.prod(shape), math.prod(in_shape)
    coef = coefficients(node, g.dt, g.integration, where=f"node {name!r}: ")
    if isinstance(node, (n.Output, n.Flatten)):
        pb.op(K.OP_COPY, dst, src, size)
    elif isinstance(node, (n.Affine, n.Linear)):
        pb.dense(name, dst, src, node.weight, getattr(node, "bias", None), src_list)
    elif isinstance(node, n.Scale):
        pb.op(K.OP_SCALE, dst, src, size, pb.param(_full(node.scale, size, shape), "coef"))
    elif isinstance(node, (n.Conv1d, n.Conv2d)):
        _conv(pb, node, dst, src, in_shape, shape, src_list)
    elif isinstance(node, (n.SumPool2d, n.AvgPool2d)):
        (c, h, w), (_, oh, ow) = in_shape, shape
        (kh, kw), stride, padding = node.kernel_size, node.stride, node.padding
        geo = pb.iparam([c, h, w, oh, ow, kh, kw, *stride, *padding])
        divisor = kh * kw if isinstance(node, n.AvgPool2d) else 0
        event = [-1, 0, 0, -1, 0]
        if pb.event and pb.fixed is None:
            at, collect = (src_list, 0) if src_list >= 0 else (pb.alloc_list(n_in), 1)
            event = [at, collect, _taps(pb, (h, w), (oh, ow), (kh, kw), stride, padding, (1, 1), (0, 0), (ow, 1), 1, weighted=False), own_list, n_in]
        pb.op(K.OP_POOL, dst, src, geo, divisor, size, *event)
    elif isinstance(node, n.Threshold):
        pb.op(K.OP_THRESHOLD, dst, src, size, pb.param(_full(node.threshold, size, shape), "threshold"))
    elif isinstance(node, n.Delay):
        steps = _full(coef["steps"], size, shape).astype(np.int64)
        length = int(steps.max(initial=0)) + 1
        pb.op(K.OP_DELAY, dst, src, size, pb.iparam(steps), pb.alloc(size * length), length)
    elif isinstance(node, (n.LI, n.LIF)):
        coef = {k: _full(v, size, shape) for k, v in coef.items()}
        return pb.lif(dst, src, size, coef, node.spiking, getattr(node, "reset", "zero") == "subtract")
    elif isinstance(node, (n.CubaLI, n.CubaLIF)):
        full = {k: _full(v, size, shape) for k, v in coef.items()}
        v, cur = pb.alloc(size), pb.alloc(size)
        roles = (("a_syn", "coef"), ("c_syn", "coef"), ("a_mem", "coef"), ("c_mem", "coef"), ("b_mem", "state"))
        cols = [pb.param(full[k], r) for k, r in roles]
        thr, vr = pb.spike_params(full, size, node.spiking)
        pb.op(K.OP_CUBA, dst, src, size, v, cur, *cols, thr, vr, node.spiking, getattr(node, "reset", "zero") == "subtract")
        return v
    elif isinstance(node, EGRU):  # recorded by its output (the events), as the torch backend does
        pb.egru(name, dst, src, node, backend)
    elif isinstance(node, (n.I, n.IF)):
        full = {k: _full(v, size, shape) for k, v in coef.items()}
        v = pb.alloc(size)
        c = pb.param(full["c"], "coef")
        thr, vr = pb.spike_params(full, size, node.spiking)
        pb.op(K.OP_IF, dst, src, size, v, c, thr, vr, node.spiking, getattr(node, "reset", "zero") == "subtract")
        return v
    else:
        raise BackendError(f"node {name!r} of type {type(node).__name__} is not supported by backend {backend!r}")
    return None


def _conv(pb, node, dst, src, in_shape, shape, src_list: int = -1) -> None:
    w = node.weight
    if isinstance(node, n.Conv1d):  # a 1-d convolution is a 2-d one of height 1
        w = w[:, :, None, :]
        (c_in, length), (c_out, out_len) = in_shape, shape
        h, wd, oh, ow = 1, length, 1, out_len
        stride, padding, dilation = (1, *node.stride), (0, *node.padding), (1, *node.dilation)
    else:
        (c_in, h, wd), (c_out, oh, ow) = in_shape, shape
        stride, padding, dilation = node.stride, node.padding, node.dilation
    geo = pb.iparam([c_in, h, wd, c_out, oh, ow, w.shape[2], w.shape[3], *stride, *padding, *dilation, node.groups])
    frac = pb.fixed.weight_frac_for(w) if pb.fixed is not None else 0
    wo = pb.param(w, "weight", frac)
    b = pb.param(node.bias, "state")
    event = []
    if pb.event and pb.fixed is None:
        n_in = c_in * h * wd
        at, collect = (src_list, 0) if src_list >= 0 else (pb.alloc_list(n_in), 1)
        groups, (kh, kw) = node.groups, w.shape[2:]
        per_group = c_out // groups
        # [c_out, c_in/groups, kh, kw] -> [c_in, kh, kw reversed, c_out/groups]: the outputs one input reaches, contiguous
        channel_last = w[..., ::-1].reshape(groups, per_group, c_in // groups, kh, kw).transpose(0, 2, 3, 4, 1)
        taps = _taps(pb, (h, wd), (oh, ow), (kh, kw), stride, padding, dilation, (kw * per_group, per_group), (ow * c_out, c_out), per_group)
        event = [at, collect, taps, pb.param(channel_last, "weight"), pb.alloc(c_out * oh * ow), n_in]
    pb.op(K.OP_CONV, dst, src, geo, wo, b, c_out * oh * ow, oh * ow, 0, 0, 0, 0, frac, *event)


def _taps(pb, size, out_size, kernel, stride, padding, dilation, weight_steps, out_steps, run: int, weighted: bool = True) -> int:
    """Store which kernel taps reach each input row and column (``kernels._conv_event``).

    Tap ``k`` of an axis reaches output position ``o`` from input ``i`` when ``o * stride -
    padding + k * dilation == i``. Rows: pairs ``(k * weight_step, o * out_step)``. Columns, in
    ascending ``o``: runs ``(weight offset, output offset, length)``, each tap covering ``run``
    elements, with weights of the kernel columns stored reversed (``(K - 1 - k) * weight_step``);
    runs contiguous in the output (and in the weights, when ``weighted``) are merged. Returns the
    offset of the header ``[%row pointers, %row pairs, %column pointers, %column runs, end]``.
    """
    axes = []
    for length, out_len, k, s, p, d in zip(size, out_size, kernel, stride, padding, dilation):
        axes.append([[(kk, (i + p - kk * d) // s) for kk in range(k) if (i + p - kk * d) % s == 0 and 0 <= (i + p - kk * d) // s < out_len]
                     for i in range(length)])
    (k_w, ws_row, ws_col), (os_row, os_col) = (kernel[1], *weight_steps), out_steps
    rows = [[(kk * ws_row, o * os_row) for kk, o in taps] for taps in axes[0]]
    cols = []
    for taps in axes[1]:
        runs: list[list[int]] = []
        for kk, o in sorted(taps, key=lambda t: t[1]):
            w, out = (k_w - 1 - kk) * ws_col, o * os_col
            last = runs[-1] if runs else None
            if last and out == last[1] + last[2] and (not weighted or w == last[0] + last[2]):
                last[2] += run
            else:
                runs.append([w, out, run])
        cols.append(runs)
    header = []
    for table in (rows, cols):
        header.append(pb.iparam(np.concatenate([[0], np.cumsum([len(x) for x in table])])))
        header.append(pb.iparam(np.array([v for x in table for entry in x for v in entry], dtype=np.int64)))
    return pb.iparam(header + [pb.iparam(np.zeros(0, np.int64))])


# ------------------------------------------------------------------------------- helpers


def _full(values, size: int, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Broadcast a (possibly scalar) parameter to the node's shape, flattened to ``size``."""
    arr = np.asarray(values, dtype=np.float64)
    return np.ascontiguousarray(np.broadcast_to(arr, shape if shape is not None else (size,))).reshape(-1)


def _as_csr(weight):
    """A ``(indptr, indices, data, shape)`` tuple for sparse weights, or None for a dense array."""
    if isinstance(weight, tuple) and len(weight) == 4:
        indptr, indices, data, shape = weight
        return np.asarray(indptr, np.int64), np.asarray(indices, np.int64), np.asarray(data, np.float64), tuple(shape)
    if hasattr(weight, "tocsr"):
        m = weight.tocsr()
        m.sort_indices()
        return m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data.astype(np.float64), m.shape
    return None


def _pack_indices(indices, n_out: int, name: str) -> tuple[np.ndarray, int]:
    """Row indices of an event-mode CSR weight packed into int64 slots, and the layout that reads
    them back (``kernels._uint16_indices`` / ``_int32_indices``): uint16, four per slot, when the
    layer has at most 65,536 outputs, else int32, two per slot. Fewer bytes per synaptic event
    make the memory-bound scatter faster; the arithmetic is the same."""
    indices = np.asarray(indices, dtype=np.int64)
    if n_out <= 2**16:
        width, dtype, layout = 4, np.uint16, K.CSR_COLUMNS16
    elif n_out <= 2**31:
        width, dtype, layout = 2, np.int32, K.CSR_COLUMNS
    else:
        raise BackendError(f"node {name!r}: sparse weight has {n_out} outputs, more than the 2**31 the event scatter indexes")
    packed = np.zeros((indices.size + width - 1) // width, dtype=np.int64)
    packed.view(dtype)[: indices.size] = indices
    return packed, layout


def _dense_to_csr(w: np.ndarray):
    rows, cols = np.nonzero(w)  # row-major, so columns ascend within a row
    indptr = np.zeros(w.shape[0] + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=w.shape[0]), out=indptr[1:])
    return indptr, cols.astype(np.int64), w[rows, cols]


def _transpose_csr(indptr, indices, data, n_out, n_in):
    """CSR of the transpose. scipy's conversion is one O(nnz) pass (a sort took seconds at 10M
    synapses) and keeps the rows of each column ascending, the order a stable sort gives."""
    from scipy import sparse

    t = sparse.csr_array((np.asarray(data), indices, indptr), shape=(n_out, n_in)).tocsc()
    return t.indptr.astype(np.int64), t.indices.astype(np.int64), t.data


def _csr_to_dense(indptr, indices, data, shape):
    w = np.zeros(shape)
    rows = np.repeat(np.arange(shape[0]), np.diff(indptr))
    w[rows, indices] = data
    return w
