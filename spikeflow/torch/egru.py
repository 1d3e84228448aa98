"""EGRU in PyTorch: a fused CPU scan (numba forward and BPTT) behind a torch.nn.GRU-like module.

Input projections of all time steps are one matrix product; the recurrent scan and its backward
run in :mod:`spikeflow.backends.numba.egru_kernels`, where the forward touches only the recurrent-matrix
rows of units that emitted an event. In float64 the input projection uses the same event-ordered
kernel as the numba-event runner, so both produce bit-identical events; in float32 it is a BLAS
matrix product (faster; training does not need bit-identity).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from spikeflow.errors import DataError, GraphError
from spikeflow.ir.egru import EGRU as EGRUNode
from spikeflow.backends.numba import egru_kernels as k


class EGRUState(NamedTuple):
    """Recurrent state: ``c`` and ``y`` of every layer (num_layers, B, H), and the output trace (B, H)."""

    c: torch.Tensor
    y: torch.Tensor
    trace: torch.Tensor


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class _EventProjection(torch.autograd.Function):
    """``bias + x @ weight.T`` summed in the event order of the numba runner (exact in float64)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        out = torch.empty(x.shape[:2] + (weight.shape[0],), dtype=x.dtype)
        k._project(_np(x), _np(weight.t()), _np(bias), out.numpy())
        ctx.save_for_backward(x, weight)
        return out

    @staticmethod
    def backward(ctx, dout):
        x, weight = ctx.saved_tensors
        d2 = dout.reshape(-1, dout.shape[-1])
        dx = (d2 @ weight).reshape(x.shape) if ctx.needs_input_grad[0] else None
        dw = d2.t() @ x.reshape(-1, x.shape[-1]) if ctx.needs_input_grad[1] else None
        return dx, dw, d2.sum(0)


class _EGRUScan(torch.autograd.Function):
    """The recurrent scan of one layer: (xp, weight_hh, bias_hh, theta, c0, y0) -> (y, e, c_last)."""

    @staticmethod
    def forward(ctx, xp, w_hh, b_hh, theta, c0, y0, keep, gamma, eps):
        T, B, n3 = xp.shape
        n = n3 // 3
        dtype = xp.dtype
        r, u, g, hg, ct, y, c = (torch.empty(T, B, n, dtype=dtype) for _ in range(7))
        k._scan_forward(
            _np(xp), _np(w_hh.t()), _np(b_hh), _np(theta), _np(c0), _np(y0), keep.numpy(),
            *(a.numpy() for a in (r, u, g, hg, ct, y, c)),
        )
        e = (ct > theta).to(dtype)
        ctx.save_for_backward(w_hh, theta, c0, y0, keep, r, u, g, hg, ct, y, c)
        ctx.gamma, ctx.eps = gamma, eps
        ctx.mark_non_differentiable(ct)
        return y, e, c[-1].clone(), ct

    @staticmethod
    def backward(ctx, dy, de, dc_last, _dct):
        w_hh, theta, c0, y0, keep, r, u, g, hg, ct, y, c = ctx.saved_tensors
        T, B, n = ct.shape
        dtype = ct.dtype
        dy = torch.zeros_like(ct) if dy is None else dy.contiguous()
        de = torch.zeros_like(ct) if de is None else de.contiguous()
        dc_last = torch.zeros(B, n, dtype=dtype) if dc_last is None else dc_last.contiguous()
        dxp = torch.empty(T, B, 3 * n, dtype=dtype)
        dhp = torch.empty(T, B, 3 * n, dtype=dtype)
        dtheta = torch.empty(B, n, dtype=dtype)
        dc0 = torch.empty(B, n, dtype=dtype)
        dy0 = torch.empty(B, n, dtype=dtype)
        k._scan_backward(
            _np(w_hh), _np(theta), float(ctx.gamma), float(ctx.eps), _np(c0), keep.numpy(),
            *(_np(a) for a in (r, u, g, hg, ct, c, dy, de, dc_last)),
            *(a.numpy() for a in (dxp, dhp, dtheta, dc0, dy0)),
        )
        y_prev = torch.cat([y0.unsqueeze(0), y[:-1]]).reshape(T * B, n)
        d2 = dhp.reshape(T * B, 3 * n)
        dw_hh = d2.t() @ y_prev if ctx.needs_input_grad[1] else None
        return dxp, dw_hh, d2.sum(0), dtheta.sum(0), dc0, dy0, None, None, None


def beta_thresholds(n: int, mean: float, concentration: float, low: float, high: float, generator=None) -> torch.Tensor:
    """Per-unit thresholds drawn from Beta(mean*k, (1-mean)*k) and clamped to [low, high]."""
    if not 0 < mean < 1 or concentration <= 0:
        raise ValueError(f"threshold mean must be in (0, 1) and concentration > 0, got {mean}, {concentration}")
    a = torch.tensor(mean * concentration, dtype=torch.float64)
    b = torch.tensor((1 - mean) * concentration, dtype=torch.float64)
    return torch.distributions.Beta(a, b).sample((n,)).clamp(low, high)


THRESHOLD_RANGE = (0.01, 0.99)
"""The default interval thresholds are clamped to in every forward pass."""


class EGRU(nn.Module):
    """Stacked event-based GRU layers, shaped like ``torch.nn.GRU``.

    Args:
        input_size, hidden_size, num_layers, batch_first: as in ``torch.nn.GRU``.
        threshold_mean, threshold_concentration: per-unit thresholds ~ Beta around the mean.
        threshold_range: thresholds are clamped to this interval in every forward pass.
        train_threshold: make the thresholds trainable (else frozen buffers of the same name).
        pseudo_derivative_width, pseudo_derivative_dampening: ε and γ of ``γ max(0, 1-ε|c-θ|)``.
        trace_decay: the last layer outputs ``a*out + (1-a)*y`` (0: the events themselves).
        dropconnect: drop probability of recurrent weights during training (one mask per call).
        zoneout: probability that a unit keeps its state for a step during training.
        dropout: dropout on the events passed between layers during training.
        dtype: parameter dtype.

    ``forward(x, state=None) -> (out, state)``; ``state`` is an :class:`EGRUState`. After each call
    ``last_stats`` holds per-layer ``activity_sparsity`` (fraction of zero ``y``) and
    ``backward_sparsity`` (fraction of steps outside the pseudo-derivative support), and
    :meth:`activity_loss` regularises the last call's activity.
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, batch_first: bool = False, *,
        threshold_mean: float = 0.25, threshold_concentration: float = 20.0,
        threshold_range: tuple[float, float] = THRESHOLD_RANGE, train_threshold: bool = True,
        pseudo_derivative_width: float = 1.0, pseudo_derivative_dampening: float = 0.3,
        trace_decay: float = 0.0, dropconnect: float = 0.0, zoneout: float = 0.0, dropout: float = 0.0,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        for name, p in (("dropconnect", dropconnect), ("zoneout", zoneout), ("dropout", dropout), ("trace_decay", trace_decay)):
            if not 0 <= p < 1:
                raise ValueError(f"EGRU {name} must be in [0, 1), got {p}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.batch_first = batch_first
        self.threshold_range = tuple(float(v) for v in threshold_range)
        self.pseudo_derivative_width = float(pseudo_derivative_width)
        self.pseudo_derivative_dampening = float(pseudo_derivative_dampening)
        self.trace_decay, self.dropconnect, self.zoneout, self.dropout = trace_decay, dropconnect, zoneout, dropout
        bound = 1.0 / math.sqrt(hidden_size)
        for layer in range(num_layers):
            fan_in = input_size if layer == 0 else hidden_size
            for name, shape in (("weight_ih", (3 * hidden_size, fan_in)), ("weight_hh", (3 * hidden_size, hidden_size)),
                                ("bias_ih", (3 * hidden_size,)), ("bias_hh", (3 * hidden_size,))):
                self.register_parameter(f"{name}_l{layer}", nn.Parameter(torch.empty(shape, dtype=dtype).uniform_(-bound, bound)))
            theta = beta_thresholds(hidden_size, threshold_mean, threshold_concentration, *self.threshold_range).to(dtype)
            if train_threshold:
                self.register_parameter(f"threshold_l{layer}", nn.Parameter(theta))
            else:
                self.register_buffer(f"threshold_l{layer}", theta)
        self.last_stats: list[dict[str, float]] = []
        self._activity: list[tuple[torch.Tensor, torch.Tensor]] = []

    def layer(self, i: int) -> dict[str, torch.Tensor]:
        """The parameters of layer ``i`` by IR field name (threshold clamped)."""
        return {
            name: getattr(self, f"{name}_l{i}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        } | {"threshold": getattr(self, f"threshold_l{i}").clamp(*self.threshold_range)}

    def initial_state(self, batch: int) -> EGRUState:
        dtype = self.weight_hh_l0.dtype
        zeros = torch.zeros(self.num_layers, batch, self.hidden_size, dtype=dtype)
        return EGRUState(zeros, zeros.clone(), torch.zeros(batch, self.hidden_size, dtype=dtype))

    def forward(self, x: torch.Tensor, state: EGRUState | None = None) -> tuple[torch.Tensor, EGRUState]:
        dtype = self.weight_hh_l0.dtype
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise DataError(f"EGRU: expected input ({'B, T' if self.batch_first else 'T, B'}, {self.input_size}), got {tuple(x.shape)}")
        if x.dtype != dtype:
            raise DataError(f"EGRU: input dtype {x.dtype} differs from parameter dtype {dtype}")
        if self.batch_first:
            x = x.transpose(0, 1)
        T, B = x.shape[:2]
        state = self.initial_state(B) if state is None else state
        exact = dtype == torch.float64
        c_out, y_out, self.last_stats, self._activity = [], [], [], []
        h = x.contiguous()
        for i in range(self.num_layers):
            p = self.layer(i)
            if exact:
                xp = _EventProjection.apply(h, p["weight_ih"], p["bias_ih"])
            else:
                xp = torch.addmm(p["bias_ih"], h.reshape(T * B, -1), p["weight_ih"].t()).reshape(T, B, -1)
            w_hh = p["weight_hh"]
            if self.training and self.dropconnect:
                w_hh = nn.functional.dropout(w_hh, self.dropconnect)
            if self.training and self.zoneout:
                keep = torch.rand(T, B, self.hidden_size) < self.zoneout
            else:
                keep = torch.zeros(T, B, self.hidden_size, dtype=torch.bool)
            y, e, c_last, ct = _EGRUScan.apply(
                xp, w_hh, p["bias_hh"], p["threshold"], state.c[i], state.y[i], keep.view(torch.uint8),
                self.pseudo_derivative_dampening, self.pseudo_derivative_width,
            )
            self._activity.append((y, e))
            with torch.no_grad():
                outside = (ct - p["threshold"]).abs() >= 1.0 / self.pseudo_derivative_width
                self.last_stats.append({
                    "activity_sparsity": float((y == 0).to(torch.float64).mean()),
                    "backward_sparsity": float(outside.to(torch.float64).mean()),
                })
            c_out.append(c_last)
            y_out.append(y[-1])
            h = y
            if self.training and self.dropout and i < self.num_layers - 1:
                h = nn.functional.dropout(h, self.dropout)
        out, trace = h, state.trace
        if self.trace_decay:
            a = self.trace_decay
            steps = []
            for t in range(T):
                trace = a * trace + (1 - a) * h[t]
                steps.append(trace)
            out = torch.stack(steps)
        if self.batch_first:
            out = out.transpose(0, 1)
        return out, EGRUState(torch.stack(c_out), torch.stack(y_out), trace)

    def activity_loss(self, l1: float = 0.0, rate: float = 0.0, target_rate: float = 0.0) -> torch.Tensor:
        """``l1 * mean|y| + rate * (mean event rate - target_rate)^2`` summed over layers of the last call.

        The event rate's gradient flows through the pseudo-derivative.
        """
        if not self._activity:
            raise RuntimeError("EGRU.activity_loss: call forward first")
        total = 0.0
        for y, e in self._activity:
            total = total + l1 * y.abs().mean() + rate * (e.mean() - target_rate) ** 2
        return total

    def to_nodes(self) -> list[EGRUNode]:
        """One IR node per layer (the output trace, if any, on the last)."""
        nodes = []
        for i in range(self.num_layers):
            p = {name: v.detach().to(torch.float64).numpy().copy() for name, v in self.layer(i).items()}
            nodes.append(EGRUNode(
                **p, pseudo_derivative_width=self.pseudo_derivative_width,
                pseudo_derivative_dampening=self.pseudo_derivative_dampening,
                trace_decay=self.trace_decay if i == self.num_layers - 1 else 0.0,
            ))
        return nodes


def egru_from_node(nodes: EGRUNode | list[EGRUNode], dtype: torch.dtype = torch.float64, **kwargs) -> EGRU:
    """A time-major :class:`EGRU` module holding the parameters of one node or a stack of nodes."""
    nodes = [nodes] if isinstance(nodes, EGRUNode) else list(nodes)
    if not nodes:
        raise GraphError("egru_from_node: no EGRU nodes given")
    first, hidden = nodes[0], nodes[0].hidden_size
    for i, node in enumerate(nodes):
        if not isinstance(node, EGRUNode):
            raise GraphError(f"egru_from_node: item {i} is a {type(node).__name__}, not an EGRU node")
        want_in = first.input_size if i == 0 else hidden
        if node.hidden_size != hidden or node.input_size != want_in:
            raise GraphError(f"egru_from_node: layer {i} has input/hidden {node.input_size}/{node.hidden_size}, expected {want_in}/{hidden}")
        if i < len(nodes) - 1 and node.trace_decay != 0:
            raise GraphError(f"egru_from_node: layer {i} has an output trace; only the last layer may")
        for name in ("pseudo_derivative_width", "pseudo_derivative_dampening"):
            if getattr(node, name) != getattr(first, name):
                raise GraphError(f"egru_from_node: layer {i} field {name!r} differs from layer 0")
    lows = min(float(n.threshold.min()) for n in nodes)
    highs = max(float(n.threshold.max()) for n in nodes)
    # the clamp range must hold the stored thresholds (so the forward pass is the node's) and
    # leave trained thresholds room to move: the default range, widened to the stored values
    low, high = kwargs.pop("threshold_range", (min(THRESHOLD_RANGE[0], lows), max(THRESHOLD_RANGE[1], highs)))
    if not low <= lows <= highs <= high:
        raise GraphError(f"egru_from_node: threshold_range ({low}, {high}) does not hold the stored thresholds ({lows}..{highs})")
    module = EGRU(
        first.input_size, hidden, len(nodes), threshold_range=(low, high),
        pseudo_derivative_width=float(first.pseudo_derivative_width),
        pseudo_derivative_dampening=float(first.pseudo_derivative_dampening),
        trace_decay=float(nodes[-1].trace_decay), dtype=dtype, **kwargs,
    )
    with torch.no_grad():
        for i, node in enumerate(nodes):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold"):
                getattr(module, f"{name}_l{i}").copy_(torch.from_numpy(getattr(node, name)))
    return module


def nodes_from_module(module: EGRU) -> list[EGRUNode]:
    """The IR nodes of a module, one per layer (see :meth:`EGRU.to_nodes`)."""
    return module.to_nodes()
