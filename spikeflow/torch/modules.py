"""Thin ``nn.Module`` s around :mod:`spikeflow.torch.functional`: one per IR neuron type.

Each module owns the parameters of its IR node (:mod:`spikeflow.ir.nodes`) plus ``dt`` and the
integration rule. Inputs are time-major ``[T, B, ...]`` and every call starts from a fresh zero
state. Parameters that are not trained stay exact float64 NumPy arrays (so ``.float()`` followed by
:func:`spikeflow.to_graph` does not round them); ``train_tau`` / ``train_threshold`` turn the time
constants / thresholds into ``nn.Parameter`` s.

Example:
    >>> import torch
    >>> lif = LIF(tau=0.02, v_threshold=1.0, dt=1e-3)
    >>> lif(torch.ones(5, 2, 3) * 30).shape
    torch.Size([5, 2, 3])
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from spikeflow.errors import GraphError
from spikeflow.ir import discretise
from spikeflow.ir import nodes as n
from spikeflow.torch import functional as F
from spikeflow.torch.surrogate import surrogate as lookup_surrogate


class _Neuron(nn.Module):
    """A stateful IR neuron as a module: ``forward`` scans ``[T, B, ...]``, ``step`` one step."""

    node_type: ClassVar[type[n.Node]]
    params_type: ClassVar[type]
    tau_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        dt: float = 1e-3,
        integration: str = "euler",
        surrogate: Any = "atan",
        detach_reset: bool = True,
        train_tau: bool = False,
        train_threshold: bool = False,
        fused: bool | None = None,
        dtype: torch.dtype | None = None,
        **params: Any,
    ):
        super().__init__()
        if self.node_type.spiking:
            params.setdefault("v_threshold", 1.0)
        try:
            node = self.node_type(**params)  # validates and coerces the fields (GraphError names them)
        except TypeError as err:
            raise GraphError(f"{type(self).__name__}: {err}") from None
        discretise.coefficients(node, float(dt), integration, where=f"{self.node_type.__name__}: ")
        self.dt, self.integration = float(dt), integration
        self.surrogate = lookup_surrogate(surrogate) if node.spiking else None
        self.detach_reset, self.fused = detach_reset, fused
        dtype = dtype or torch.get_default_dtype()
        self._fields = [f.name for f in fields(node)]
        for name in self._fields:
            value = getattr(node, name)
            trained = (train_tau and name in self.tau_fields) or (train_threshold and name == "v_threshold")
            if trained:
                setattr(self, name, nn.Parameter(torch.tensor(value, dtype=dtype)))
            else:
                setattr(self, name, value)

    def params(self):
        """The functional parameters (``LIFParams`` etc.) for the current values."""
        values = {k: getattr(self, k) for k in self.params_type._fields if k in self._fields}
        extra = {"dt": self.dt}
        if "integration" in self.params_type._fields:
            extra["integration"] = self.integration
        if self.node_type.spiking:
            extra.update(surrogate=self.surrogate, detach_reset=self.detach_reset)
        return self.params_type(**values, **extra)

    def discretise(self, like: torch.Tensor) -> tuple[F.Dynamics, F.Coefficients]:
        """Dynamics and coefficients in ``like``'s dtype and device (computed once per call)."""
        return F.discretise_params(self.params(), like)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs ``[T, B, ...]`` (spikes, or the membrane for non-spiking neurons)."""
        return F.neuron_scan(x, *self.discretise(x), fused=self.fused)

    def step(self, x: torch.Tensor, state: F.State | None = None, coefficients=None) -> tuple[torch.Tensor, F.State]:
        """One step for ``x[B, ...]``; pass ``coefficients=self.discretise(x)`` to reuse them."""
        return F.neuron_step(x, state, *(coefficients or self.discretise(x)))

    def to_node(self) -> n.Node:
        """The IR node with the current parameter values."""
        values = {}
        for name in self._fields:
            value = getattr(self, name)
            values[name] = value.detach().cpu().double().numpy() if isinstance(value, torch.Tensor) else value
        return self.node_type(**values)

    def extra_repr(self) -> str:
        return f"{self.to_node()!r}, dt={self.dt:g}, integration={self.integration!r}"


class LIF(_Neuron):
    """Leaky integrate-and-fire (:class:`spikeflow.ir.LIF`)."""

    node_type, params_type, tau_fields = n.LIF, F.LIFParams, ("tau",)


class LI(_Neuron):
    """Leaky integrator (:class:`spikeflow.ir.LI`); outputs the membrane."""

    node_type, params_type, tau_fields = n.LI, F.LIParams, ("tau",)


class IF(_Neuron):
    """Integrate-and-fire (:class:`spikeflow.ir.IF`)."""

    node_type, params_type = n.IF, F.IFParams


class I(_Neuron):  # noqa: E742 (NIR's name)
    """Integrator (:class:`spikeflow.ir.I`); outputs the membrane."""

    node_type, params_type = n.I, F.IParams


class CubaLIF(_Neuron):
    """Current-based LIF (:class:`spikeflow.ir.CubaLIF`)."""

    node_type, params_type, tau_fields = n.CubaLIF, F.CubaLIFParams, ("tau_syn", "tau_mem")


class CubaLI(_Neuron):
    """Current-based leaky integrator (:class:`spikeflow.ir.CubaLI`); outputs the membrane."""

    node_type, params_type, tau_fields = n.CubaLI, F.CubaLIParams, ("tau_syn", "tau_mem")


class Threshold(nn.Module):
    """Stateless spikes ``z = x > threshold`` with a surrogate gradient (:class:`spikeflow.ir.Threshold`)."""

    def __init__(self, threshold: Any, *, surrogate: Any = "atan", train_threshold: bool = False, dtype: torch.dtype | None = None):
        super().__init__()
        value = n.Threshold(threshold=threshold).threshold
        self.surrogate = lookup_surrogate(surrogate)
        self.threshold = nn.Parameter(torch.tensor(value, dtype=dtype or torch.get_default_dtype())) if train_threshold else value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.threshold(x, self.threshold, self.surrogate)

    def to_node(self) -> n.Threshold:
        value = self.threshold
        return n.Threshold(threshold=value.detach().cpu().double().numpy() if isinstance(value, torch.Tensor) else value)


class Scale(nn.Module):
    """Elementwise gain ``y = scale * x`` (:class:`spikeflow.ir.Scale`); the scale is trainable."""

    def __init__(self, scale: Any, *, dtype: torch.dtype | None = None):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(n.Scale(scale=scale).scale, dtype=dtype or torch.get_default_dtype()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def to_node(self) -> n.Scale:
        return n.Scale(scale=self.scale.detach().cpu().double().numpy())


class Delay(nn.Module):
    """Per-element delay of ``round(delay/dt)`` steps (:class:`spikeflow.ir.Delay`); zeros first."""

    def __init__(self, delay: Any, *, dt: float = 1e-3):
        super().__init__()
        node = n.Delay(delay=delay)
        self.delay, self.dt = node.delay, float(dt)
        self.steps = discretise.coefficients(node, self.dt, "euler")["steps"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.delay(x, self.steps)

    def step(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step for ``x[B, ...]``; the state is the window of the last ``max(steps)+1`` inputs."""
        depth = int(self.steps.max(initial=0)) + 1
        if state is None:
            state = torch.zeros((depth,) + tuple(x.shape), dtype=x.dtype, device=x.device)
        state = torch.cat([state[1:], x.unsqueeze(0)])
        index = torch.as_tensor(depth - 1 - self.steps, device=x.device).expand(x.shape[1:])
        y = state.gather(0, index.expand(x.shape).unsqueeze(0)).squeeze(0)
        return y, state

    def to_node(self) -> n.Delay:
        return n.Delay(delay=self.delay)


class Recurrent(nn.Module):
    """A neuron layer with all-to-all recurrent weights: input ``x[t] + W z[t-1]``.

    Maps to a nested graph ``{input, neuron, recurrent (Linear), output}`` with the edge
    ``recurrent -> neuron`` closing the loop (see :func:`spikeflow.torch.lowering.to_graph`).
    """

    def __init__(self, neuron: _Neuron, size: int, *, weight: Any = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.neuron = neuron
        self.recurrent = nn.Linear(size, size, bias=False, dtype=dtype or torch.get_default_dtype())
        if weight is not None:
            with torch.no_grad():
                self.recurrent.weight.copy_(torch.as_tensor(np.asarray(weight)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coef = self.neuron.discretise(x)
        state, z, out = None, None, []
        for t in range(x.shape[0]):
            inp = x[t] if z is None else x[t] + self.recurrent(z)
            z, state = self.neuron.step(inp, state, coef)
            out.append(z)
        return torch.stack(out)


class RecurrentLIF(Recurrent):
    """Recurrent LIF layer of ``size`` neurons; keyword arguments go to :class:`LIF`."""

    def __init__(self, size: int, *, weight: Any = None, dtype: torch.dtype | None = None, **lif: Any):
        super().__init__(LIF(dtype=dtype, **lif), size, weight=weight, dtype=dtype)


NEURON_MODULES: dict[type[n.Node], type[_Neuron]] = {m.node_type: m for m in (LIF, LI, IF, I, CubaLIF, CubaLI)}
"""The module class of each IR neuron type."""


def check_shape(module: nn.Module, shape: tuple[int, ...]) -> None:
    """Raise GraphError if the module's parameters do not broadcast to ``shape``."""
    try:
        module.to_node().output_shape(shape)
    except GraphError as err:
        raise GraphError(f"{type(module).__name__}: {err}") from None
