"""Training on long sequences with memory that does not grow with ``T``: one training step of a
:class:`~spikeflow.torch.lowering.GraphModule` under one of four strategies.

* ``"full"``: today's backpropagation through time: one forward over all ``T`` steps, autograd
  keeps every step's activations (memory grows as ``T``).
* ``"bptt"``: lean exact BPTT. The forward pass runs without autograd in chunks of ``chunk`` steps
  and keeps only the network state at the chunk boundaries (membranes, synaptic currents, delay
  lines, recurrent values: the checkpoints) and the graph's output. The backward pass walks the
  chunks in reverse: it reruns one chunk from its checkpoint with autograd, backpropagates the
  output gradient together with the gradient that the later chunks sent back to the chunk's final
  state, and hands the gradient of its initial state to the chunk before. Weight gradients add up
  chunk by chunk in ``.grad``. The gradients equal ``"full"``'s (same float64 values up to the
  order of the sums); no ``[T, B, H]`` tensor of a hidden layer is ever kept. Memory: the
  activations of one chunk, ``T / chunk`` checkpoints and the ``[T, B, C]`` output.
* ``"tbptt"``: truncated BPTT. Each chunk of ``chunk`` steps is run with autograd from the
  detached state of the chunk before, its loss backpropagated at once; gradients add up over the
  chunks (one optimiser step per sequence). The objective is the mean of the chunk losses,
  weighted by chunk length, and no gradient crosses a chunk boundary. Memory: one chunk.
* ``"ottt"``: online training through time (Xiao et al., NeurIPS 2022), the online rule. The
  state carries no gradient back in time, not even inside a chunk (:func:`spikeflow.torch.
  functional.temporal_gradients`); instead every weight layer (Affine, Linear, Conv) keeps a
  presynaptic trace ``a_t = lambda * a_(t-1) + s_t`` with ``lambda`` the membrane decay of the
  neuron that it feeds, and its weight gradient is ``sum_t g_t a_t^T`` (``g_t``: the
  instantaneous gradient of its output) instead of BPTT's ``sum_t g_t s_t^T``. Gradients reach
  lower layers through space only. The objective is the same as ``"tbptt"``'s, and the chunk size
  only sets how many steps run in one fused scan: memory is one chunk, whatever ``T``. OTTT was
  chosen over e-prop because its traces live on the layer inputs, so it needs no per-synapse
  eligibility matrix (e-prop keeps one trace per weight, ``[B, H, N]`` for every layer) and applies
  unchanged to convolutions; it is exact for the gradient of the current step through the
  membrane when resets are ignored. The bias gets the instantaneous gradient. Graphs with
  recurrent loops or EGRU nodes are refused (their traces would need the recurrent weights'
  eligibility); use ``"tbptt"`` or ``"bptt"`` for them.

The input ``x`` is ``[T, B, ...]``, dense or a sparse COO tensor; a sparse input is densified one
chunk at a time, never as a whole.

Example:
    >>> import numpy as np, torch, spikeflow as sf
    >>> g = sf.Graph.sequential(sf.ir.Input(shape=(4,)), sf.ir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
    ...                         sf.ir.LIF(tau=0.01, v_threshold=0.5), dt=1e-3)
    >>> net = sf.to_torch(g)
    >>> res = train_step(net, torch.rand(50, 2, 4), lambda y: y.sum() ** 2, strategy="bptt", chunk=16)
    >>> res.scores.shape
    torch.Size([2, 3])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from spikeflow.errors import DataError
from spikeflow.torch import functional as F
from spikeflow.torch import modules as m
from spikeflow.torch.lowering import GraphModule, GraphState, _is_egru

STRATEGIES = ("full", "bptt", "tbptt", "ottt")
"""The training strategies of :func:`train_step`."""
DEFAULT_CHUNK = 128


@dataclass
class StepResult:
    """What one training step returns.

    Attributes:
        loss: the value of the objective (a float).
        scores: the outputs summed over time ``[B, C]`` (spike counts of a spiking output layer).
        outputs: the outputs ``[T, B, C]`` (``"full"`` and ``"bptt"``, which keep them for the
            loss), else None.
    """

    loss: float
    scores: torch.Tensor
    outputs: torch.Tensor | None = None


def train_step(
    net: GraphModule, x: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor], strategy: str = "bptt", chunk: int | None = None
) -> StepResult:
    """Forward and backward of one batch: gradients are added to the parameters' ``.grad``.

    Args:
        net: the network (``sf.to_torch(graph)``), with a single Output.
        x: input ``[T, B, ...]``, dense or sparse COO.
        loss_fn: ``loss_fn(y) -> scalar`` on outputs ``[k, B, C]``: all ``T`` steps (``"full"``,
            ``"bptt"``) or one chunk (``"tbptt"``, ``"ottt"``).
        strategy: one of :data:`STRATEGIES`.
        chunk: steps per chunk (the truncation length of ``"tbptt"``); default 128.

    Raises:
        DataError: an unknown strategy, a bad chunk size, a graph with several outputs, or a graph
            that ``"ottt"`` does not handle.
    """
    if strategy not in STRATEGIES:
        raise DataError(f"train_step: unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    if not isinstance(net, GraphModule):
        raise DataError(f"train_step: expected a GraphModule (sf.to_torch(graph)), got {type(net).__name__}")
    if len(net.outputs) != 1:
        raise DataError(f"train_step: the graph has outputs {net.outputs}; long-sequence strategies need a single Output")
    chunk = DEFAULT_CHUNK if chunk is None else chunk
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise DataError(f"train_step: chunk must be an integer >= 1, got {chunk!r}")
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] == 0:
        raise DataError(f"train_step: expected an input tensor [T, B, ...] with T >= 1, got {getattr(x, 'shape', type(x).__name__)}")
    if strategy == "full":
        y = _single(net(x.to_dense() if x.is_sparse else x))
        loss = loss_fn(y)
        loss.backward()
        return StepResult(float(loss.detach()), y.detach().sum(0), y.detach())
    if strategy == "bptt":
        return _lean_bptt(net, x, loss_fn, chunk)
    decays = online_decays(net) if strategy == "ottt" else None
    return _truncated(net, x, loss_fn, chunk, decays)


# ---------------------------------------------------------------------------- chunks of input


class Chunks:
    """The input ``x[T, B, ...]`` cut into chunks of ``chunk`` steps: ``chunks[k]`` is a dense
    ``[k_len, B, ...]`` tensor (a view of a dense ``x``; a sparse COO ``x`` is densified one chunk
    at a time, never as a whole)."""

    def __init__(self, x: torch.Tensor, chunk: int):
        self.x, self.T = x, x.shape[0]
        self.spans = [(s, min(s + chunk, self.T)) for s in range(0, self.T, chunk)]
        if x.is_sparse:
            x = x.coalesce()  # indices sorted lexicographically: time first
            self.x = x
            starts = torch.tensor([s for s, _ in self.spans] + [self.T])
            self.bounds = torch.searchsorted(x.indices()[0].contiguous(), starts).tolist()

    def __len__(self) -> int:
        return len(self.spans)

    def __getitem__(self, k: int) -> torch.Tensor:
        start, stop = self.spans[k]
        if not self.x.is_sparse:
            return self.x[start:stop]
        a, b = self.bounds[k], self.bounds[k + 1]
        part = torch.zeros((stop - start,) + tuple(self.x.shape[1:]), dtype=self.x.dtype)
        idx = self.x.indices()[:, a:b].clone()
        idx[0] -= start
        part.index_put_(tuple(idx), self.x.values()[a:b], accumulate=True)
        return part


@torch.no_grad()
def chunked_outputs(net: GraphModule, x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Inference over ``x[T, B, ...]`` chunk by chunk: the outputs ``[T, B, C]`` without keeping
    any hidden layer's ``[T, B, H]`` values."""
    chunks = Chunks(x, chunk or DEFAULT_CHUNK)
    state, out = net.initial_state(x.shape[1]), None
    for k, (start, stop) in enumerate(chunks.spans):
        y, state = net.run_chunk(chunks[k], state)
        y = _single(y)
        if out is None:
            out = y.new_empty((chunks.T,) + tuple(y.shape[1:]))
        out[start:stop] = y
    return out


class SequenceStrategy:
    """A long-sequence strategy as an option of the shared training loop
    (:class:`spikeflow.train.loop.TrainingLoop`): ``Trainer(strategy=..., chunk=..., tbptt=...,
    memory_budget=...)``.

    Args:
        strategy: one of :data:`STRATEGIES`; None with a budget: ``"full"`` when it fits, else
            ``"bptt"``.
        chunk: steps per chunk (None: 128, or the largest that fits the budget).
        tbptt: truncation length: the same as ``strategy="tbptt", chunk=tbptt``.
        memory_budget: e.g. ``"2GB"``: the first batch is planned with :func:`spikeflow.train.plan`.
        progress: print the plan.
    """

    def __init__(self, strategy: str | None = None, chunk: int | None = None, tbptt: int | None = None,
                 memory_budget: str | int | None = None, progress: bool = True):
        from spikeflow.train.planner import parse_bytes

        if tbptt is not None:
            if strategy not in (None, "tbptt") or chunk not in (None, tbptt):
                raise DataError(f"Trainer: tbptt={tbptt} is strategy='tbptt', chunk={tbptt}; got strategy={strategy!r}, chunk={chunk!r}")
            strategy, chunk = "tbptt", tbptt
        if strategy is not None and strategy not in STRATEGIES:
            raise DataError(f"Trainer: unknown strategy {strategy!r}; expected one of {STRATEGIES}")
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
            raise DataError(f"Trainer: chunk must be an integer >= 1, got {chunk!r}")
        self.memory_budget = parse_bytes(memory_budget) if memory_budget is not None else None
        self.strategy, self.chunk, self.progress = strategy, chunk, progress
        self.plan = None

    def check(self, loop) -> None:
        """Refuse models and loop options that the strategies do not handle."""
        if not isinstance(loop.model, GraphModule):
            raise DataError("Trainer: strategy / tbptt / memory_budget need a graph's module (sf.to_torch(graph))")
        if loop.regularizers:
            raise DataError("Trainer: regularizers need whole-sequence recordings; they do not combine with strategy / tbptt / memory_budget")

    def _planned(self, x: torch.Tensor, dtype: torch.dtype, model: GraphModule) -> None:
        from spikeflow.train.planner import plan

        T, B = x.shape[:2]
        dense = x.to_dense() if x.is_sparse else x
        density = float((dense != 0).float().mean()) if dense.numel() else 0.0
        options = dict(T=T, batch=B, memory_budget=self.memory_budget, input_density=density,
                       dtype="float64" if dtype == torch.float64 else "float32")
        if self.strategy is None:
            full = plan(model, strategy="full", **options)
            self.plan = full if full.fits else plan(model, strategy="bptt", **options)
        else:
            self.plan = plan(model, strategy=self.strategy, chunk=self.chunk, **options)
        if not self.plan.fits:
            raise DataError(f"Trainer: {self.plan}")
        self.strategy, self.chunk = self.plan.strategy, self.plan.chunk
        if self.progress:
            print(f"memory plan: {self.plan}", flush=True)

    def step(self, loop, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step of ``loop`` on a time-major batch; returns the loss and the class
        scores ``[B, C]`` (truncated and online strategies keep no ``[T, B, C]`` output: their
        scores are the output sums)."""
        if self.memory_budget is not None and self.plan is None:
            self._planned(x, loop.dtype, loop.model)
        loop.optimizer.zero_grad(set_to_none=True)
        res = train_step(loop.model, x, lambda y: loop.loss(y, target), strategy=self.strategy or "bptt", chunk=self.chunk)
        extra = loop.hooks.penalty(loop.model)  # a penalty on the weights only: its gradient adds
        loss = torch.tensor(res.loss)
        if extra is not None:
            extra.backward()
            loss = loss + extra.detach()
        loop.hooks.before_step()
        loop.optimizer.step()
        loop.hooks.after_step()
        return loss, loop.scores(res.outputs) if res.outputs is not None else res.scores

    def outputs(self, model: GraphModule, x: torch.Tensor) -> torch.Tensor:
        """Inference outputs ``[T, B, C]`` computed chunk by chunk."""
        return chunked_outputs(model, x, self.chunk)


# ------------------------------------------------------------------------------ state helpers


def _map(value, fn):
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # State, EGRUState
        return type(value)(*(None if v is None else _map(v, fn) for v in value))
    return value


def map_state(state: GraphState, fn: Callable[[torch.Tensor], torch.Tensor]) -> GraphState:
    """``fn`` applied to every tensor of ``state``."""
    return GraphState(state.batch, {k: _map(v, fn) for k, v in state.nodes.items()}, {k: _map(v, fn) for k, v in state.carried.items()})


def state_tensors(state: GraphState) -> list[torch.Tensor]:
    """Every tensor of ``state`` in a fixed order (by node name)."""
    out: list[torch.Tensor] = []
    for part in (state.nodes, state.carried):
        for key in sorted(part):
            _map(part[key], lambda t: out.append(t) or t)
    return out


def state_bytes(state: GraphState) -> int:
    """Bytes held by the tensors of ``state``."""
    return sum(t.numel() * t.element_size() for t in state_tensors(state))


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().requires_grad_(t.is_floating_point())


# ------------------------------------------------------------------------------- strategies


def _single(y) -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        raise DataError("train_step: the graph returned several outputs; long-sequence strategies need a single Output")
    return y


def _lean_bptt(net: GraphModule, x: torch.Tensor, loss_fn, chunk: int) -> StepResult:
    chunks = Chunks(x, chunk)
    last = len(chunks) - 1
    checkpoints: list[GraphState] = []
    y_all = None  # filled chunk by chunk: never a list of chunk outputs and their concatenation at once

    def keep(y: torch.Tensor, k: int) -> None:
        nonlocal y_all
        start, stop = chunks.spans[k]
        if y_all is None:
            y_all = y.new_empty((chunks.T,) + tuple(y.shape[1:]))
        y_all[start:stop] = y.detach()

    # Forward without autograd up to the last chunk, keeping only the state at each chunk start
    # (each neuron discretises its parameters once for the whole pass).
    with torch.no_grad(), net.reuse_coefficients():
        state = net.initial_state(x.shape[1])
        for k in range(last):
            checkpoints.append(state)
            y, state = net.run_chunk(chunks[k], state)
            keep(_single(y), k)
            del y
    # The last chunk runs once, with autograd: its graph is the first one the backward pass needs,
    # so it is kept instead of being recomputed (the peak is that of any rerun chunk).
    checkpoints.append(state)
    del state
    pending = _rerun(net, chunks, checkpoints, last)
    keep(pending[1], last)
    y_all.requires_grad_(True)
    loss = loss_fn(y_all)
    g_y = torch.autograd.grad(loss, y_all)[0]
    g_end: list[torch.Tensor | None] | None = None  # gradient w.r.t. the state after the chunk
    for k in range(last, -1, -1):
        start, stop = chunks.spans[k]
        start_state, y, end_state = pending if k == last else _rerun(net, chunks, checkpoints, k)
        roots, grads = [y], [g_y[start:stop]]
        if g_end is not None:
            for t, g in zip(state_tensors(end_state), g_end):
                if g is not None and t.requires_grad:
                    roots.append(t)
                    grads.append(g)
        if any(r.requires_grad for r in roots):
            torch.autograd.backward([r for r in roots if r.requires_grad], [g for r, g in zip(roots, grads) if r.requires_grad])
        g_end = [t.grad if t.requires_grad else None for t in state_tensors(start_state)]
        del roots, grads, y, end_state, start_state
        pending = None
    y_all = y_all.detach()
    return StepResult(float(loss.detach()), y_all.sum(0), y_all)


def _rerun(net: GraphModule, chunks: Chunks, checkpoints: list[GraphState], k: int) -> tuple[GraphState, torch.Tensor, GraphState]:
    """Chunk ``k`` run with autograd from its checkpoint (whose memory goes as the pass moves back):
    ``(start state as leaves, outputs, end state)``."""
    start_state = map_state(checkpoints[k], _leaf)
    checkpoints[k] = None  # type: ignore[call-overload]
    y, end_state = net.run_chunk(chunks[k], start_state)
    return start_state, _single(y), end_state


def _truncated(net: GraphModule, x: torch.Tensor, loss_fn, chunk: int, decays: dict[str, float] | None) -> StepResult:
    T, B = x.shape[:2]
    state = net.initial_state(B)
    total, scores = 0.0, None
    outer = net._online
    net._online = decays
    try:
        with F.temporal_gradients(decays is None):
            chunks = Chunks(x, chunk)
            for k in range(len(chunks)):
                part = chunks[k]
                y, state = net.run_chunk(part, map_state(state, torch.Tensor.detach))
                y = _single(y)
                loss = loss_fn(y) * (part.shape[0] / T)
                loss.backward()
                total += float(loss.detach())
                s = y.detach().sum(0)
                scores = s if scores is None else scores + s
                del y, loss
    finally:
        net._online = outer
    return StepResult(total, scores)


# ------------------------------------------------------------------------------------ OTTT


_WEIGHTS = (nn.Linear, nn.Conv1d, nn.Conv2d)
_PASS = (nn.Flatten, nn.AvgPool2d, m.Scale)


def online_decays(net: GraphModule) -> dict[str, float]:
    """The trace decay ``lambda`` of every weight layer for OTTT: the mean membrane decay of the
    neuron that the layer feeds (through pooling, flattening and scaling), 1 for integrate-and-fire
    neurons, 0 when no neuron follows (the trace is then the input itself).

    Raises:
        DataError: the graph has a recurrent loop or an EGRU node.
    """
    for group, recurrent in net.groups:
        if recurrent:
            raise DataError(f"ottt: nodes {group} form a recurrent loop; OTTT here handles feed-forward graphs (use 'tbptt' or 'bptt')")
    targets: dict[str, list[str]] = {}
    for node, srcs in net.sources.items():
        for s in srcs:
            targets.setdefault(s, []).append(node)
    like = net._probe
    decays = {}
    for name in net.order:
        layer = net._layer(name)
        if _is_egru(layer):
            raise DataError(f"ottt: node {name!r} is an EGRU; OTTT here handles LIF-family graphs (use 'tbptt' or 'bptt')")
        if not isinstance(layer, _WEIGHTS):
            continue
        found, frontier, seen = [], list(targets.get(name, [])), set()
        while frontier:
            nxt = frontier.pop()
            if nxt in seen:
                continue
            seen.add(nxt)
            down = net._layer(nxt)
            if isinstance(down, m._Neuron):
                dyn, coef = down.discretise(like)
                found.append(1.0 if coef.a is None else float(coef.a.detach().double().mean()))
            elif down is None or isinstance(down, _PASS):
                frontier.extend(targets.get(nxt, []))
        decays[name] = sum(found) / len(found) if found else 0.0
    return decays
