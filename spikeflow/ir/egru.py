"""The EGRU node: an event-based gated recurrent unit (Subramoney et al., ICLR 2023).

Gate layout and names follow ``torch.nn.GRU`` (rows of the weight matrices are the reset gate
``r``, the update gate ``u`` and the candidate ``g``, in that order), so GRU weights drop in. The
recurrent input is the previous *event output* ``y``, never the dense state ``c``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from spikeflow.errors import GraphError
from spikeflow.ir.nodes import Node, _param


@dataclass(eq=False, repr=False)
class EGRU(Node):
    """Event-based GRU layer; one step per time step, state ``c`` and events ``y`` start at zero.

    .. math::
        r = \\sigma(W_r x + b^{ih}_r + R_r y_{t-1} + b^{hh}_r) \\qquad
        u = \\sigma(W_u x + b^{ih}_u + R_u y_{t-1} + b^{hh}_u)

        g = \\tanh(W_g x + b^{ih}_g + r \\odot (R_g y_{t-1} + b^{hh}_g)) \\qquad
        \\tilde c = u \\odot c_{t-1} + (1 - u) \\odot g

        e = H(\\tilde c - \\theta) \\qquad y_t = \\tilde c \\odot e \\qquad c_t = \\tilde c - \\theta \\odot e

        \\text{out}_t = a\\, \\text{out}_{t-1} + (1 - a)\\, y_t \\quad (a = \\text{trace\\_decay}; \\text{out} = y \\text{ when } a = 0)

    ``H(0) = 0``. ``pseudo_derivative_width`` (ε) and ``pseudo_derivative_dampening`` (γ) define
    the training surrogate :math:`H'(v) = \\gamma \\max(0, 1 - \\varepsilon |v|)`; they do not change
    the forward pass.
    """

    stateful: ClassVar[bool] = True
    weight_ih: np.ndarray = _param("array")
    weight_hh: np.ndarray = _param("array")
    bias_ih: np.ndarray = _param("array")
    bias_hh: np.ndarray = _param("array")
    threshold: np.ndarray = _param("array")
    pseudo_derivative_width: np.ndarray = _param("positive", 1.0)
    pseudo_derivative_dampening: np.ndarray = _param("array", 0.3)
    trace_decay: np.ndarray = _param("array", 0.0)

    @property
    def input_size(self) -> int:
        return int(self.weight_ih.shape[1])

    @property
    def hidden_size(self) -> int:
        return int(self.weight_hh.shape[1])

    def check(self) -> None:
        def bad(name, expected, found):
            raise GraphError(f"EGRU field {name!r}: expected shape {expected}, got {found}")

        if self.weight_hh.ndim != 2 or self.weight_hh.shape[0] != 3 * self.weight_hh.shape[1]:
            bad("weight_hh", "(3*hidden, hidden)", self.weight_hh.shape)
        hidden = self.weight_hh.shape[1]
        if self.weight_ih.ndim != 2 or self.weight_ih.shape[0] != 3 * hidden:
            bad("weight_ih", f"({3 * hidden}, input)", self.weight_ih.shape)
        for name in ("bias_ih", "bias_hh"):
            if getattr(self, name).shape != (3 * hidden,):
                bad(name, (3 * hidden,), getattr(self, name).shape)
        if self.threshold.shape != (hidden,):
            bad("threshold", (hidden,), self.threshold.shape)
        for name in ("pseudo_derivative_width", "pseudo_derivative_dampening", "trace_decay"):
            if getattr(self, name).ndim != 0:
                bad(name, "() (a scalar)", getattr(self, name).shape)
        if self.pseudo_derivative_dampening < 0:
            raise GraphError(f"EGRU field 'pseudo_derivative_dampening': must be >= 0, got {float(self.pseudo_derivative_dampening):g}")
        if not 0 <= self.trace_decay < 1:
            raise GraphError(f"EGRU field 'trace_decay': expected 0 <= a < 1, got {float(self.trace_decay):g}")

    def input_shape(self):
        return (self.input_size,)

    def output_shape(self, input_shape):
        super().output_shape(input_shape)
        return (self.hidden_size,)
