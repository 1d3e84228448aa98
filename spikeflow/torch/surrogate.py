"""Surrogate gradients: a Heaviside step forward, a smooth pseudo-derivative backward.

Each surrogate is a small frozen dataclass in one registry, :data:`SURROGATES`, with its slope as a
field. Calling it applies :math:`H(x) = [x > 0]` through one :class:`torch.autograd.Function`
whose backward multiplies the incoming gradient by :meth:`Surrogate.derivative`. The fused
neuron scans in :mod:`spikeflow.torch.functional` call :meth:`Surrogate.derivative` directly,
vectorised over all time steps at once.

Example:
    >>> import torch
    >>> spike = surrogate("atan", slope=2.0)
    >>> x = torch.tensor([-0.5, 0.5], requires_grad=True)
    >>> spike(x).tolist()
    [0.0, 1.0]
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import ClassVar

import torch

from spikeflow.errors import SpikeflowError

SURROGATES: dict[str, type["Surrogate"]] = {}
"""Every surrogate class by name (filled in by :meth:`Surrogate.__init_subclass__`)."""


class _Heaviside(torch.autograd.Function):
    """:math:`H(x) = [x > 0]` forward; ``grad * surrogate.derivative(x)`` backward."""

    @staticmethod
    def forward(ctx, x, surrogate):
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(x), None


@dataclass(frozen=True)
class Surrogate(ABC):
    """Base of the surrogates: ``self(x)`` spikes where ``x > 0``; gradient ``derivative(x)``."""

    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):  # only classes that name themselves (not their subclasses)
            SURROGATES[cls.name] = cls

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _Heaviside.apply(x, self)

    @abstractmethod
    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """The pseudo-derivative of the step at ``x`` (elementwise). The built-in surrogates also
        define ``primitive(x)``, a smooth function whose derivative this is (the relaxed step)."""


@dataclass(frozen=True)
class ATan(Surrogate):
    """Arc-tangent: :math:`\\frac{\\alpha/2}{1 + (\\pi \\alpha x / 2)^2}` (snnTorch's default, alpha=2)."""

    name: ClassVar[str] = "atan"
    slope: float = 2.0

    def derivative(self, x):
        return (self.slope / 2) / (1 + (math.pi / 2 * self.slope * x) ** 2)

    def primitive(self, x):
        return torch.atan(math.pi / 2 * self.slope * x) / math.pi + 0.5


@dataclass(frozen=True)
class FastSigmoid(Surrogate):
    """Fast sigmoid (SuperSpike): :math:`1 / (1 + k|x|)^2`."""

    name: ClassVar[str] = "fast_sigmoid"
    slope: float = 25.0

    def derivative(self, x):
        return 1 / (1 + self.slope * x.abs()) ** 2

    def primitive(self, x):
        return x / (1 + self.slope * x.abs())


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    """Logistic: :math:`k\\,\\sigma(kx)(1 - \\sigma(kx))`."""

    name: ClassVar[str] = "sigmoid"
    slope: float = 5.0

    def derivative(self, x):
        s = torch.sigmoid(self.slope * x)
        return self.slope * s * (1 - s)

    def primitive(self, x):
        return torch.sigmoid(self.slope * x)


@dataclass(frozen=True)
class Triangle(Surrogate):
    """Triangle of half-width ``1/slope``: :math:`h \\max(0, 1 - k|x|)` (EGRU's pseudo-derivative)."""

    name: ClassVar[str] = "triangle"
    slope: float = 1.0
    height: float = 1.0

    def derivative(self, x):
        return self.height * torch.clamp(1 - self.slope * x.abs(), min=0)

    def primitive(self, x):
        y = torch.clamp(self.slope * x, -1, 1)
        return self.height / self.slope * (y - y * y.abs() / 2)


@dataclass(frozen=True)
class StraightThrough(Surrogate):
    """Straight-through estimator: the gradient passes unchanged, scaled by ``slope``."""

    name: ClassVar[str] = "straight_through"
    slope: float = 1.0

    def derivative(self, x):
        return torch.full_like(x, self.slope)

    def primitive(self, x):
        return self.slope * x


def surrogate(spec: "str | Surrogate" = "atan", **params: float) -> Surrogate:
    """Look up a surrogate by name with its parameters, e.g. ``surrogate("atan", slope=2.0)``.

    A :class:`Surrogate` instance is returned unchanged (``params`` must then be empty).
    """
    if isinstance(spec, Surrogate):
        if params:
            raise SpikeflowError(f"surrogate: parameters {sorted(params)} given with an instance {spec!r}")
        return spec
    cls = SURROGATES.get(spec)
    if cls is None:
        raise SpikeflowError(f"surrogate: unknown name {spec!r}; known: {sorted(SURROGATES)}")
    known = {f.name for f in fields(cls)}
    extra = sorted(set(params) - known)
    if extra:
        raise SpikeflowError(f"surrogate {spec!r}: unexpected parameter {extra[0]!r}; expected {sorted(known)}")
    return cls(**params)
