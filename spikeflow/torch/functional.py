"""Pure neuron step functions and fused multi-step scans (LIF, CubaLIF, LI, IF and their kin).

Every neuron follows :mod:`spikeflow.ir.discretise` to the letter: the same float64 coefficients
and the same update order, so float64 spike trains equal the NumPy reference bit for bit.

* ``lif_step(x, state, params) -> (z, state)`` (and ``li_step``, ``if_step``, ``i_step``,
  ``cuba_lif_step``, ``cuba_li_step``) advance one step for a batch ``x[B, ...]``.
* ``lif_scan(x, params) -> z`` (and the others) run a whole sequence ``x[T, B, ...]``. On CPU
  tensors the time loop runs in one numba kernel inside a custom autograd Function whose backward
  runs the reverse-time recurrence in one kernel as well; on other devices they fall back to a
  plain loop over the step functions (same values, gradients through autograd).
* :func:`neuron_chunk` runs ``x[k, B, ...]`` from a given :class:`State` and returns the final
  state too, fused as well (gradients reach the initial state), so a sequence can run in chunks:
  chunks of any size give the same values as one scan, bit for bit. :func:`delay_chunk` does the
  same for a Delay.

Parameters (``tau``, ``v_threshold``, ...) may be floats, arrays or tensors that require grad; a
trainable ``tau`` is turned into the decay ``a`` and gain ``g`` in torch with the formula of
:func:`spikeflow.ir.discretise.leak`, so gradients reach it.

Reset gradient: by default (``detach_reset=True``, as in snnTorch) the reset is treated as a
constant in the backward pass: after a spike, the gradient does not flow through the spike into
the reset. Gradients still flow to the input, to a trainable ``tau`` and to a trainable
``v_threshold`` (through the surrogate, and through the subtraction of a subtract reset). With
``detach_reset=False`` the reset's dependence on the spike is differentiated too.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from spikeflow.errors import DataError, GraphError
from spikeflow.ir import discretise
from spikeflow.ir.nodes import RESETS
from spikeflow.torch.surrogate import ATan, FastSigmoid, Sigmoid, StraightThrough, Surrogate, Triangle
from spikeflow.torch.surrogate import surrogate as lookup_surrogate

# ----------------------------------------------------------------------------- parameters


class LIFParams(NamedTuple):
    """Leaky integrate-and-fire: ``v = a*v + c*x + b``, spike ``v > v_threshold``, reset."""

    tau: Any
    v_threshold: Any = 1.0
    r: Any = 1.0
    v_leak: Any = 0.0
    v_reset: Any = 0.0
    reset: str = "zero"
    dt: float = 1e-3
    integration: str = "euler"
    surrogate: Any = "atan"
    detach_reset: bool = True


class LIParams(NamedTuple):
    """Leaky integrator: ``v = a*v + c*x + b``, output ``v``."""

    tau: Any
    r: Any = 1.0
    v_leak: Any = 0.0
    dt: float = 1e-3
    integration: str = "euler"


class IFParams(NamedTuple):
    """Integrate-and-fire: ``v = v + c*x`` with ``c = dt*r``, spike, reset."""

    v_threshold: Any = 1.0
    r: Any = 1.0
    v_reset: Any = 0.0
    reset: str = "zero"
    dt: float = 1e-3
    surrogate: Any = "atan"
    detach_reset: bool = True


class IParams(NamedTuple):
    """Integrator: ``v = v + c*x`` with ``c = dt*r``, output ``v``."""

    r: Any = 1.0
    dt: float = 1e-3


class CubaLIFParams(NamedTuple):
    """Current-based LIF: ``i = a_syn*i + c_syn*x``; ``v = a*v + c*i + b``; spike, reset."""

    tau_syn: Any
    tau_mem: Any
    v_threshold: Any = 1.0
    r: Any = 1.0
    v_leak: Any = 0.0
    v_reset: Any = 0.0
    w_in: Any = 1.0
    reset: str = "zero"
    dt: float = 1e-3
    integration: str = "euler"
    surrogate: Any = "atan"
    detach_reset: bool = True


class CubaLIParams(NamedTuple):
    """Current-based leaky integrator: ``i = a_syn*i + c_syn*x``; ``v = a*v + c*i + b``, output ``v``."""

    tau_syn: Any
    tau_mem: Any
    r: Any = 1.0
    v_leak: Any = 0.0
    w_in: Any = 1.0
    dt: float = 1e-3
    integration: str = "euler"


class State(NamedTuple):
    """Membrane ``v`` (and synaptic current ``i`` for the current-based neurons)."""

    v: torch.Tensor
    i: torch.Tensor | None = None


LOOP_ORDERS = ("x+gain+delayed", "x+delayed+gain", "x+(gain+delayed)")
"""How the terms of a :class:`Loop` with both gains join the input: the order of the graph's sum
of the neuron's inputs (``x`` being the sum of its other inputs)."""


class Loop(NamedTuple):
    """A gain on the neuron's own output fed back one step later (a ``X -> Scale -> X`` self-loop
    of a graph, such as the late reset of an snnTorch import): step ``t`` gets the input
    ``x[t] + gain * y[t-1]``; at the first step ``x[0] + first`` (``first`` None: just ``x[0]``).

    A second loop is two steps long (through a one-step Delay, e.g. the tail of snnTorch
    ``Synaptic``'s late reset): ``delayed_gain * y[t-2]``,
    ``delayed_first[0]`` and ``delayed_first[1]`` (``[2, B, ...]``; None: zeros) at the first
    two steps. ``gain`` None: only the delayed loop. With both, ``order`` (one of
    :data:`LOOP_ORDERS`) says in which order the terms join the input."""

    gain: torch.Tensor | None
    first: torch.Tensor | None = None
    delayed_gain: torch.Tensor | None = None
    delayed_first: torch.Tensor | None = None
    order: str = LOOP_ORDERS[0]


def _join(x: torch.Tensor, near: torch.Tensor | None, far: torch.Tensor | None, order: str) -> torch.Tensor:
    """The input ``x`` plus the loop terms present, in the graph's order (:data:`LOOP_ORDERS`)."""
    if near is None:
        return x if far is None else x + far
    if far is None:
        return x + near
    if order == LOOP_ORDERS[0]:
        return (x + near) + far
    if order == LOOP_ORDERS[1]:
        return (x + far) + near
    return x + (near + far)


@dataclass(frozen=True)
class Dynamics:
    """The static part of a neuron: which update, spiking or not, reset mode, surrogate."""

    kind: str  # "leaky" (LI/LIF), "integrator" (I/IF) or "cuba" (CubaLI/CubaLIF)
    spiking: bool
    reset: str = "zero"
    surrogate: Surrogate | None = None
    detach_reset: bool = True


class Coefficients(NamedTuple):
    """Discrete coefficients (tensors broadcastable to the neuron shape); unused ones are None."""

    c: torch.Tensor
    a: torch.Tensor | None = None
    b: torch.Tensor | None = None
    a_syn: torch.Tensor | None = None
    c_syn: torch.Tensor | None = None
    v_threshold: torch.Tensor | None = None
    v_reset: torch.Tensor | None = None


# ------------------------------------------------------------------------ discretisation


def _tensor(value: Any, like: torch.Tensor) -> torch.Tensor:
    """float64 tensor on ``like``'s device (tensors that require grad keep their dtype)."""
    if isinstance(value, torch.Tensor):
        if value.requires_grad:
            return value.to(like.device)
        return value.detach().to(device=like.device, dtype=torch.float64)
    return torch.as_tensor(np.asarray(value, dtype=np.float64), device=like.device)


def leak(tau: Any, dt: float, integration: str, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Decay ``a`` and gain ``g`` of one step, as :func:`spikeflow.ir.discretise.leak`.

    A ``tau`` that requires grad is discretised in torch (differentiable); otherwise the float64
    NumPy coefficients are used unchanged, so results stay bit-identical to the reference.
    """
    if isinstance(tau, torch.Tensor) and tau.requires_grad:
        if integration not in discretise.INTEGRATIONS:
            raise GraphError(f"unknown integration {integration!r}; expected one of {discretise.INTEGRATIONS}")
        tau = tau.to(like.device)
        ratio = torch.full_like(tau, dt) / tau  # not dt / tau: torch computes that as dt * (1 / tau)
        if integration == "euler":
            if bool((ratio > 1).any()):
                raise GraphError(f"dt={dt:g} exceeds tau={float(tau.detach().min()):g}: forward Euler would oscillate")
            return 1 - ratio, ratio
        a = torch.exp(-ratio)
        return a, 1 - a
    arr = tau.detach().cpu().double().numpy() if isinstance(tau, torch.Tensor) else tau
    a, g = discretise.leak(np.asarray(arr, dtype=np.float64), dt, integration)
    return _tensor(a, like), _tensor(g, like)


def _check_reset(reset: str) -> None:
    if reset not in RESETS:
        raise GraphError(f"field 'reset': expected one of {RESETS}, got {reset!r}")


def discretise_params(params: Any, like: torch.Tensor) -> tuple[Dynamics, Coefficients]:
    """The :class:`Dynamics` and :class:`Coefficients` of ``params`` in ``like``'s dtype/device."""
    t = lambda v: _tensor(v, like)  # noqa: E731
    if isinstance(params, (LIFParams, LIParams)):
        a, g = leak(params.tau, params.dt, params.integration, like)
        coef = Coefficients(c=g * t(params.r), a=a, b=g * t(params.v_leak))
        kind = "leaky"
    elif isinstance(params, (IFParams, IParams)):
        coef = Coefficients(c=params.dt * t(params.r))
        kind = "integrator"
    elif isinstance(params, (CubaLIFParams, CubaLIParams)):
        a_syn, g_syn = leak(params.tau_syn, params.dt, params.integration, like)
        a, g = leak(params.tau_mem, params.dt, params.integration, like)
        coef = Coefficients(c=g * t(params.r), a=a, b=g * t(params.v_leak), a_syn=a_syn, c_syn=g_syn * t(params.w_in))
        kind = "cuba"
    else:
        raise TypeError(f"expected neuron parameters (LIFParams, ...), got {type(params).__name__}")
    if isinstance(params, (LIFParams, IFParams, CubaLIFParams)):
        _check_reset(params.reset)
        coef = coef._replace(v_threshold=t(params.v_threshold), v_reset=t(params.v_reset))
        dyn = Dynamics(kind, True, params.reset, lookup_surrogate(params.surrogate), params.detach_reset)
    else:
        dyn = Dynamics(kind, False)
    coef = Coefficients(*(None if c is None else c.to(like.dtype) for c in coef))
    return dyn, coef


# ------------------------------------------------------------------------------ one step


def neuron_step(x: torch.Tensor, state: State | None, dyn: Dynamics, coef: Coefficients) -> tuple[torch.Tensor, State]:
    """Advance any neuron by one step (the update order of :mod:`spikeflow.ir.discretise`)."""
    if state is None:
        zero = torch.zeros_like(x)
        state = State(zero, zero if dyn.kind == "cuba" else None)
    i = None
    if dyn.kind == "cuba":
        i = coef.a_syn * state.i + coef.c_syn * x
        u = coef.a * state.v + coef.c * i + coef.b
    elif dyn.kind == "leaky":
        u = coef.a * state.v + coef.c * x + coef.b
    else:
        u = state.v + coef.c * x
    if not dyn.spiking:
        return u, State(u, i)
    z = dyn.surrogate(u - coef.v_threshold)
    spike = z if not dyn.detach_reset else z.detach()
    if dyn.reset == "subtract":
        v = u - spike * coef.v_threshold
    else:
        # where() keeps the reset value exact; the added term is zero but carries d v / d z.
        v = torch.where(z.detach() > 0, coef.v_reset.expand_as(u), u)
        if not dyn.detach_reset:
            v = v + (z - z.detach()) * (coef.v_reset - u)
    return z, State(v, i)


def _step(params_type):
    def step(x: torch.Tensor, state: State | None, params) -> tuple[torch.Tensor, State]:
        if not isinstance(params, params_type):
            raise TypeError(f"expected {params_type.__name__}, got {type(params).__name__}")
        return neuron_step(x, state, *discretise_params(params, x))

    step.__name__ = step.__qualname__ = f"{params_type.__name__[:-6].lower()}_step"
    step.__doc__ = f"One step of {params_type.__name__[:-6]} for ``x[B, ...]``: returns ``(output, State)``."
    return step


lif_step = _step(LIFParams)
li_step = _step(LIParams)
if_step = _step(IFParams)
i_step = _step(IParams)
cuba_lif_step = _step(CubaLIFParams)
cuba_li_step = _step(CubaLIParams)


# ------------------------------------------------------------------------- many steps


def loop_scan(x: torch.Tensor, dyn: Dynamics, coef: Coefficients) -> torch.Tensor:
    """Reference multi-step path: the step function in a Python loop over ``x[T, B, ...]``."""
    return loop_chunk(x, dyn, coef)[0]


def loop_chunk(
    x: torch.Tensor, dyn: Dynamics, coef: Coefficients, state: State | None = None, loop: Loop | None = None
) -> tuple[torch.Tensor, State]:
    """:func:`loop_scan` from ``state`` (None: at rest); returns the outputs and the final state."""
    if state is None:
        state = initial_state(dyn, (x.shape[1],) + tuple(x.shape[2:]), x)
    out = []
    gain = delayed_gain = near = None
    far: list = [None, None]  # the delayed loop's terms of the coming two steps
    if loop is not None:
        gain, delayed_gain = loop.gain, loop.delayed_gain
        near = None if gain is None else loop.first
        if delayed_gain is not None:
            far = [None, None] if loop.delayed_first is None else list(loop.delayed_first)
    for t in range(x.shape[0]):
        if not _TEMPORAL[0]:
            state = State(*(None if s is None else s.detach() for s in state))
        y, state = neuron_step(_join(x[t], near, far[0], loop.order if loop is not None else ""), state, dyn, coef)
        if gain is not None:
            near = y * gain
        if delayed_gain is not None:
            far = [far[1], y * delayed_gain]
        out.append(y)
    return (torch.stack(out) if out else torch.empty_like(x)), state


def initial_state(dyn: Dynamics, shape: tuple[int, ...], like: torch.Tensor) -> State:
    """The state at rest (zeros) of a neuron of ``shape = (B, *features)`` in ``like``'s dtype/device."""
    v = torch.zeros(shape, dtype=like.dtype, device=like.device)
    return State(v, torch.zeros_like(v) if dyn.kind == "cuba" else None)


_KERNELS: Any = None
_TEMPORAL = [True]  # False inside temporal_gradients(False): see there


@contextlib.contextmanager
def temporal_gradients(enabled: bool):
    """Within the block (``enabled=False``), the backward pass of every neuron scan started in it
    drops the gradient that flows back in time through the neuron state (membrane and synaptic
    current): each step's gradient stays at that step, as online rules (OTTT) need. The forward
    values are unchanged."""
    outer = _TEMPORAL[0]
    _TEMPORAL[0] = bool(enabled)
    try:
        yield
    finally:
        _TEMPORAL[0] = outer


def _kernels():
    """The numba kernels, imported on first use (None when numba is missing)."""
    global _KERNELS
    if _KERNELS is None:
        try:
            from spikeflow.torch import scan_kernels
        except ImportError:  # pragma: no cover - numba is a dependency
            scan_kernels = False
        _KERNELS = scan_kernels
    return _KERNELS or None


def neuron_scan(x: torch.Tensor, dyn: Dynamics, coef: Coefficients, fused: bool | None = None) -> torch.Tensor:
    """Run a neuron over ``x[T, B, ...]`` from rest; the output has the same shape.

    ``fused=None`` picks the numba kernel for CPU tensors and the step loop elsewhere.
    """
    return neuron_chunk(x, dyn, coef, None, fused)[0]


def fusable(x: torch.Tensor, fused: bool | None = None) -> bool:
    """Whether :func:`neuron_chunk` runs ``x`` through the fused kernels: ``fused`` when given,
    else for CPU float32/float64 tensors (numba present)."""
    if fused is not None:
        return bool(fused)
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and _kernels() is not None


def neuron_chunk(
    x: torch.Tensor, dyn: Dynamics, coef: Coefficients, state: State | None = None, fused: bool | None = None,
    loop: Loop | None = None,
) -> tuple[torch.Tensor, State]:
    """Run a neuron over ``x[k, B, ...]`` from ``state`` (None: at rest); return the outputs and
    the state after the last step. Consecutive chunks equal one :func:`neuron_scan` bit for bit.

    ``loop`` feeds the output back into the next step's input through a gain, and/or into the
    input two steps later through another, inside the same fused scan (:class:`Loop`)."""
    if x.dim() < 2:
        raise DataError(f"neuron input: expected a time-major tensor [T, B, ...], got shape {tuple(x.shape)}")
    T, B = x.shape[:2]
    feature = tuple(x.shape[2:])
    if state is not None:
        _check_state(state, dyn, (B,) + feature)
    if loop is not None:
        _check_loop(loop, dyn, (B,) + feature)
    if not fusable(x, fused) or T == 0:
        return loop_chunk(x, dyn, coef, state, loop)
    n = math.prod(feature)

    def flat(c):
        return c.expand(feature).reshape(n).contiguous() if c is not None else None

    v0 = state.v.reshape(B, n) if state is not None else None
    x3 = x.reshape(T, B, n)
    loops: tuple = ()
    if loop is not None:
        gain = lambda g: g.to(x.dtype) if isinstance(g, torch.Tensor) else _tensor(g, x).to(x.dtype)  # noqa: E731
        d = None if loop.gain is None else flat(gain(loop.gain))
        r0 = None if loop.first is None or d is None else loop.first.reshape(B, n)
        e = None if loop.delayed_gain is None else flat(gain(loop.delayed_gain))
        q0 = None if loop.delayed_first is None or e is None else loop.delayed_first.reshape(2, B, n)
        loops = (d, r0, e, q0, LOOP_ORDERS.index(loop.order))
    if dyn.kind == "cuba":
        i0 = state.i.reshape(B, n) if state is not None else None
        y, v, i = _CubaScan.apply(x3, dyn, flat(coef.a_syn), flat(coef.c_syn), flat(coef.a), flat(coef.b), flat(coef.c),
                                  flat(coef.v_threshold), flat(coef.v_reset), v0, i0, *loops)
        return y.reshape(x.shape), State(v.reshape((B,) + feature), i.reshape((B,) + feature))
    y, v = _LeakyScan.apply(x3, dyn, flat(coef.a), flat(coef.b), flat(coef.c), flat(coef.v_threshold), flat(coef.v_reset), v0, *loops)
    return y.reshape(x.shape), State(v.reshape((B,) + feature))


def _check_loop(loop: Loop, dyn: Dynamics, shape: tuple[int, ...]) -> None:
    """Refuse a malformed :class:`Loop` for a neuron of ``dyn`` and state shape ``(B, *features)``."""
    if not isinstance(loop, Loop):
        raise DataError(f"neuron loop: expected a Loop, got {type(loop).__name__}")
    if loop.gain is None and loop.delayed_gain is None:
        raise DataError("neuron loop: expected a gain, a delayed_gain or both")
    if loop.order not in LOOP_ORDERS:
        raise DataError(f"neuron loop: order must be one of {LOOP_ORDERS}, got {loop.order!r}")
    for name, t, want in (("first", loop.first, shape), ("delayed_first", loop.delayed_first, (2,) + shape)):
        if t is not None and (not isinstance(t, torch.Tensor) or tuple(t.shape) != want):
            found = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise DataError(f"neuron loop field {name!r}: expected a tensor of shape {want}, got {found}")


def _check_state(state: State, dyn: Dynamics, shape: tuple[int, ...]) -> None:
    if not isinstance(state, State):
        raise DataError(f"neuron state: expected a State, got {type(state).__name__}")
    parts = {"v": state.v, "i": state.i} if dyn.kind == "cuba" else {"v": state.v}
    for name, t in parts.items():
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
            found = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise DataError(f"neuron state field {name!r}: expected a tensor of shape {shape} (batch, *neuron shape), got {found}")


def _np(t: torch.Tensor | None, n: int, dtype: torch.dtype, fill: float = 0.0) -> np.ndarray:
    """Zero-copy NumPy view of a contiguous CPU tensor (a filled vector for an unused coefficient)."""
    if t is None:
        return np.full(n, fill, dtype=np.float32 if dtype == torch.float32 else np.float64)
    return t.detach().contiguous().numpy()


def _surrogate_args(dyn: Dynamics, u: torch.Tensor, th: np.ndarray) -> tuple:
    """(kind, slope, height, derivative array) for the backward kernels: built-in surrogates are
    evaluated inside the kernel; a user-defined one is evaluated here in torch over all steps."""
    k = _kernels()
    sg = dyn.surrogate
    dummy = np.zeros((1, 1, 1), dtype=th.dtype)
    if not dyn.spiking:
        return k.SG_STRAIGHT, 1.0, 1.0, dummy
    kind = {ATan: k.SG_ATAN, FastSigmoid: k.SG_FAST_SIGMOID, Sigmoid: k.SG_SIGMOID, Triangle: k.SG_TRIANGLE,
            StraightThrough: k.SG_STRAIGHT}.get(type(sg))
    if kind is None:
        return k.SG_ARRAY, 0.0, 0.0, sg.derivative(u - torch.from_numpy(th)).contiguous().numpy()
    return kind, float(sg.slope), float(getattr(sg, "height", 1.0)), dummy


def _sum_to(t: torch.Tensor) -> torch.Tensor:
    """Sum a [T, B, N] (or [B, N]) gradient down to [N]."""
    return t.reshape(-1, t.shape[-1]).sum(0)


def _previous(v_post: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
    """v[t-1] for every t (``first``, the initial state, at t = 0; zero when None)."""
    head = torch.zeros_like(v_post[:1]) if first is None else first.unsqueeze(0)
    return torch.cat([head, v_post[:-1]])


def _zeros(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A zero-filled CPU kernel buffer, allocated by NumPy: torch would fill it in a parallel region
    whose thread wake-up costs more than the fill for these small [B, N] arrays."""
    return torch.from_numpy(np.zeros(shape, dtype=np.float32 if dtype == torch.float32 else np.float64))


def _state_rows(state: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """A fresh ``[B, N]`` state array for a kernel to update in place (zeros when None)."""
    if state is None:
        return _zeros(tuple(x.shape[1:]), x.dtype)
    return state.detach().to(x.dtype).contiguous().clone()


def _post_reset(u: torch.Tensor, dyn: Dynamics, th, vr) -> torch.Tensor:
    if not dyn.spiking:
        return u
    z = u > th
    return torch.where(z, u - th, u) if dyn.reset == "subtract" else torch.where(z, vr.expand_as(u), u)


def _scratch(x: torch.Tensor, keep: bool) -> torch.Tensor:
    """A trace buffer: the full [T, B, N] when kept for backward, else one reusable step."""
    return torch.empty_like(x) if keep else torch.empty((1,) + tuple(x.shape[1:]), dtype=x.dtype)


def _loop_rows(d, r0, e, q0, x: torch.Tensor) -> tuple:
    """The kernels' loop arguments for ``x[T, B, n]``: (loop, its first terms ``[B, n]``, delayed,
    its first terms ``[2, B, n]``); an absent loop gets an empty array (never read)."""
    B, n = x.shape[1:]
    r = _state_rows(r0, x) if d is not None else _zeros((B, 0), x.dtype)
    if e is None:
        q = _zeros((2, B, 0), x.dtype)
    else:
        q = _zeros((2, B, n), x.dtype) if q0 is None else q0.detach().to(x.dtype).contiguous().clone()
    return d is not None, r, e is not None, q


def _with_loops(x, out, d, r0, e, q0, order: int) -> torch.Tensor:
    """The input of each step with the loop terms (for a coefficient's gradient)."""
    near = None if d is None else _previous(out * d, r0)
    far = None if e is None else _previous(_previous(out * e, None if q0 is None else q0[1]), None if q0 is None else q0[0])
    return _join(x, near, far, LOOP_ORDERS[order])


class _LeakyScan(torch.autograd.Function):
    """Fused LIF / LI / IF / I over time (forward and backward each one numba kernel), with the
    optional loops of :class:`Loop` (gain ``d`` one step, ``e`` two steps; ``r0`` / ``q0`` their
    first terms)."""

    @staticmethod
    def forward(ctx, x, dyn, a, b, c, th, vr, v0, d=None, r0=None, e=None, q0=None, order=0):
        k = _kernels()
        T, B, n = x.shape
        x = x.contiguous()
        out = torch.empty_like(x)
        keep = any(ctx.needs_input_grad) and dyn.spiking
        u = _scratch(x, keep)
        v = _state_rows(v0, x)
        loop, r, delayed, q = _loop_rows(d, r0, e, q0, x)
        k.leaky_forward(
            x.numpy(), _np(a, n, x.dtype, 1.0), _np(b, n, x.dtype), _np(c, n, x.dtype), _np(th, n, x.dtype),
            _np(vr, n, x.dtype), dyn.spiking, dyn.reset == "subtract", out.numpy(), u.numpy(), v.numpy(),
            loop, _np(d, n, x.dtype), r.numpy(), delayed, _np(e, n, x.dtype), q.numpy(), order,
        )
        ctx.dyn, ctx.temporal, ctx.loop, ctx.order = dyn, _TEMPORAL[0], loop or delayed, order
        ctx.set_materialize_grads(False)  # an unused output's gradient comes as None, not a zero tensor
        ctx.save_for_backward(x, u if dyn.spiking else out, a, c, th, vr, v0, d, r0, e, q0, out if ctx.loop else None)
        return out, v

    @staticmethod
    def backward(ctx, g_out, g_v):
        k = _kernels()
        dyn = ctx.dyn
        x, u, a, c, th, vr, v0, d, r0, e, q0, out = ctx.saved_tensors
        T, B, n = x.shape
        need = ctx.needs_input_grad  # x, dyn, a, b, c, th, vr, v0, d, r0, e, q0, order
        loop = ctx.loop and ctx.temporal  # the loops carry gradient back in time, like the state
        g_out = torch.zeros_like(x) if g_out is None else g_out.contiguous()
        g_u = torch.empty_like(g_out)
        g_th = _zeros((B, n), x.dtype)
        th_np = _np(th, n, x.dtype)
        sg = _surrogate_args(dyn, u, th_np)
        coef_grads = need[2] or need[3] or need[4]
        # Without coefficient gradients the kernel writes dL/dx = c * dL/du directly.
        scale = _np(None, n, x.dtype, 1.0) if coef_grads else _np(c, n, x.dtype)
        g_v0 = _state_rows(g_v, x)  # dL/d(final state) in, dL/d(initial state) out
        # Without temporal gradients the state carries nothing back: a decay of zero in backward.
        a_back = _np(a, n, x.dtype, 1.0) if ctx.temporal else _np(None, n, x.dtype)
        want_d, want_e = d is not None and need[8], e is not None and need[10]
        g_d_rows, g_e_rows = _zeros((B, n if want_d else 0), x.dtype), _zeros((B, n if want_e else 0), x.dtype)
        k.leaky_backward(
            g_out.numpy(), u.numpy(), *sg, a_back, th_np, _np(vr, n, x.dtype), scale,
            dyn.spiking, dyn.reset == "subtract", dyn.detach_reset, g_u.numpy(), g_th.numpy(), g_v0.numpy(),
            loop, _np(d, n, x.dtype), _np(e, n, x.dtype), _np(c, n, x.dtype), (out if ctx.loop else g_out[:0]).numpy(),
            g_d_rows.numpy(), g_e_rows.numpy(),
        )
        grads = [None] * 13
        g_in = g_u * c if coef_grads else g_u  # dL/d(input of each step), loop terms included
        if need[0]:
            grads[0] = g_in
        if need[2]:
            grads[2] = _sum_to(g_u * _previous(_post_reset(u, dyn, th, vr), v0))
        if need[3]:
            grads[3] = _sum_to(g_u)
        if need[4]:
            grads[4] = _sum_to(g_u * (_with_loops(x, out, d, r0, e, q0, ctx.order) if ctx.loop else x))
        if need[5]:
            grads[5] = _sum_to(g_th)
        if need[7]:
            grads[7] = g_v0
        if want_d:
            grads[8] = g_d_rows.sum(0)
        if d is not None and need[9]:
            grads[9] = g_in[0]
        if want_e:
            grads[10] = g_e_rows.sum(0)
        if e is not None and need[11]:
            grads[11] = torch.cat([g_in[:2], torch.zeros_like(g_in[:2 - min(T, 2)])])
        return tuple(grads)


class _CubaScan(torch.autograd.Function):
    """Fused CubaLIF / CubaLI over time, with the optional loops of :class:`Loop` (gain ``d`` one
    step, ``e`` two steps; ``r0`` / ``q0`` their first terms)."""

    @staticmethod
    def forward(ctx, x, dyn, a_syn, c_syn, a, b, c, th, vr, v0, i0, d=None, r0=None, e=None, q0=None, order=0):
        k = _kernels()
        T, B, n = x.shape
        x = x.contiguous()
        out = torch.empty_like(x)
        keep = any(ctx.needs_input_grad)
        u, i = _scratch(x, keep), _scratch(x, keep)
        v_end, i_end = _state_rows(v0, x), _state_rows(i0, x)
        loop, r, delayed, q = _loop_rows(d, r0, e, q0, x)
        k.cuba_forward(
            x.numpy(), a_syn.numpy(), c_syn.numpy(), a.numpy(), b.numpy(), c.numpy(), _np(th, n, x.dtype),
            _np(vr, n, x.dtype), dyn.spiking, dyn.reset == "subtract", out.numpy(), u.numpy(), i.numpy(),
            v_end.numpy(), i_end.numpy(), loop, _np(d, n, x.dtype), r.numpy(), delayed, _np(e, n, x.dtype), q.numpy(), order,
        )
        ctx.dyn, ctx.temporal, ctx.loop, ctx.order = dyn, _TEMPORAL[0], loop or delayed, order
        ctx.set_materialize_grads(False)  # an unused output's gradient comes as None, not a zero tensor
        ctx.save_for_backward(x, u, i, a_syn, c_syn, a, c, th, vr, v0, i0, d, r0, e, q0, out if ctx.loop else None)
        return out, v_end, i_end

    @staticmethod
    def backward(ctx, g_out, g_v, g_i_end):
        k = _kernels()
        dyn = ctx.dyn
        x, u, i, a_syn, c_syn, a, c, th, vr, v0, i0, d, r0, e, q0, out = ctx.saved_tensors
        T, B, n = x.shape
        need = ctx.needs_input_grad  # x, dyn, a_syn, c_syn, a, b, c, th, vr, v0, i0, d, r0, e, q0, order
        g_out = torch.zeros_like(x) if g_out is None else g_out.contiguous()
        g_u = torch.empty_like(g_out)
        g_i = torch.empty_like(g_out)
        g_th = _zeros((B, n), x.dtype)
        th_np = _np(th, n, x.dtype)
        sg = _surrogate_args(dyn, u, th_np)
        syn_grads = need[2] or need[3]
        scale = _np(None, n, x.dtype, 1.0) if syn_grads else c_syn.numpy()
        g_v0, g_i0 = _state_rows(g_v, x), _state_rows(g_i_end, x)  # final state in, initial state out
        zero = _np(None, n, x.dtype)
        a_syn_back, a_back = (a_syn.numpy(), a.numpy()) if ctx.temporal else (zero, zero)
        loop = ctx.loop and ctx.temporal  # the loops carry gradient back in time, like the state
        want_d, want_e = d is not None and need[11], e is not None and need[13]
        g_d_rows, g_e_rows = _zeros((B, n if want_d else 0), x.dtype), _zeros((B, n if want_e else 0), x.dtype)
        k.cuba_backward(
            g_out.numpy(), u.numpy(), *sg, a_syn_back, a_back, c.numpy(), th_np, _np(vr, n, x.dtype), scale,
            dyn.spiking, dyn.reset == "subtract", dyn.detach_reset, g_u.numpy(), g_i.numpy(), g_th.numpy(),
            g_v0.numpy(), g_i0.numpy(), loop, _np(d, n, x.dtype), _np(e, n, x.dtype), c_syn.numpy(),
            (out if ctx.loop else g_out[:0]).numpy(), g_d_rows.numpy(), g_e_rows.numpy(),
        )
        grads = [None] * 16
        g_x = g_i * c_syn if syn_grads else g_i  # dL/d(input of each step), loop terms included
        if need[0]:
            grads[0] = g_x
        if need[2]:
            grads[2] = _sum_to(g_i * _previous(i, i0))
        if need[3]:
            grads[3] = _sum_to(g_i * (_with_loops(x, out, d, r0, e, q0, ctx.order) if ctx.loop else x))
        if need[4]:
            grads[4] = _sum_to(g_u * _previous(_post_reset(u, dyn, th, vr), v0))
        if need[5]:
            grads[5] = _sum_to(g_u)
        if need[6]:
            grads[6] = _sum_to(g_u * i)
        if need[7]:
            grads[7] = _sum_to(g_th)
        if need[9]:
            grads[9] = g_v0
        if need[10]:
            grads[10] = g_i0
        if want_d:
            grads[11] = g_d_rows.sum(0)
        if d is not None and need[12]:
            grads[12] = g_x[0]
        if want_e:
            grads[13] = g_e_rows.sum(0)
        if e is not None and need[14]:
            grads[14] = torch.cat([g_x[:2], torch.zeros_like(g_x[:2 - min(T, 2)])])
        return tuple(grads)


def _scan(params_type):
    def scan(x: torch.Tensor, params, fused: bool | None = None) -> torch.Tensor:
        if not isinstance(params, params_type):
            raise TypeError(f"expected {params_type.__name__}, got {type(params).__name__}")
        return neuron_scan(x, *discretise_params(params, x), fused=fused)

    name = params_type.__name__[:-6]
    scan.__name__ = scan.__qualname__ = f"{name.lower()}_scan"
    scan.__doc__ = f"{name} over ``x[T, B, ...]`` (fused numba kernel on CPU); returns the outputs ``[T, B, ...]``."
    return scan


lif_scan = _scan(LIFParams)
li_scan = _scan(LIParams)
if_scan = _scan(IFParams)
i_scan = _scan(IParams)
cuba_lif_scan = _scan(CubaLIFParams)
cuba_li_scan = _scan(CubaLIParams)


def threshold(x: torch.Tensor, v_threshold: Any, surrogate: Any = "atan") -> torch.Tensor:
    """Stateless spikes ``z = x > v_threshold`` with a surrogate gradient."""
    return lookup_surrogate(surrogate)(x - _tensor(v_threshold, x).to(x.dtype))


def delay_chunk(x: torch.Tensor, steps: Any, history: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`delay` over a chunk ``x[k, B, ...]`` after ``history``, the last ``D = max(steps)``
    inputs ``[D, B, ...]`` (None: zeros); returns the outputs and the new history."""
    steps_np = np.asarray(steps, dtype=np.int64)
    depth = int(steps_np.max(initial=0))
    shape = (depth,) + tuple(x.shape[1:])
    if history is None:
        history = torch.zeros(shape, dtype=x.dtype, device=x.device)
    elif not isinstance(history, torch.Tensor) or tuple(history.shape) != shape:
        found = tuple(history.shape) if isinstance(history, torch.Tensor) else type(history).__name__
        raise DataError(f"delay state: expected the last {depth} inputs, a tensor of shape {shape}, got {found}")
    seq = torch.cat([history, x]) if depth else x
    T = x.shape[0]
    steps_t = torch.as_tensor(steps_np, device=x.device).expand(x.shape[2:])
    src = depth + torch.arange(T, device=x.device).reshape((T,) + (1,) * len(x.shape[2:])) - steps_t
    y = seq.gather(0, src.unsqueeze(1).expand(x.shape))
    return y, seq[seq.shape[0] - depth :]


def delay(x: torch.Tensor, steps: Any) -> torch.Tensor:
    """``y[t] = x[t - steps]`` per element (zeros before the start) for ``x[T, B, ...]``."""
    T = x.shape[0]
    steps_t = torch.as_tensor(np.asarray(steps, dtype=np.int64), device=x.device).expand(x.shape[2:])
    src = torch.arange(T, device=x.device).reshape((T,) + (1,) * len(x.shape[2:])) - steps_t
    valid = (src >= 0).unsqueeze(1)
    index = src.clamp(min=0).unsqueeze(1).expand(x.shape)
    return torch.where(valid, x.gather(0, index), torch.zeros((), dtype=x.dtype, device=x.device))
