"""Fixed-point precision: integer formats, the public quantiser, and saturating arithmetic rules.

Every value on an edge and every state is a signed ``state_bits`` integer with ``state_frac``
fractional bits (a spike is ``1 << state_frac``). Weights are ``weight_bits`` integers with a
fraction chosen per node (as many bits as the largest ``|w|`` allows, unless ``weight_frac`` is
given); decay and gain coefficients are ``coef_bits`` integers with ``coef_frac`` fractional bits;
thresholds are ``threshold_bits`` integers in the state format. A product is brought back to the
state format by a rounding shift (half up), and every result saturates to the state range; each
saturation is counted. Hardware exports reuse :func:`quantise` and :class:`FixedPoint`.

The update of a LIF neuron, for example, is (all integers)::

    v = sat( shift(a*v, coef_frac) + shift(c*x, coef_frac) + b )
    z = v > v_threshold;  v = v_reset (or sat(v - v_threshold)) where z
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spikeflow.errors import BackendError


def quantise(values, bits: int, frac: int) -> tuple[np.ndarray, int]:
    """Round ``values * 2**frac`` half up to signed ``bits``-bit integers, saturating.

    Returns the int64 array and how many values saturated.

    Example:
        >>> quantise([0.5, -1.0, 3.0], bits=4, frac=2)
        (array([ 2, -4,  7]), 1)
    """
    if not 2 <= int(bits) <= 62:
        raise BackendError(f"argument 'bits': expected 2..62, got {bits!r}")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    scaled = np.floor(np.asarray(values, dtype=np.float64) * 2.0**frac + 0.5)
    saturated = int(np.count_nonzero((scaled < lo) | (scaled > hi)))
    return np.clip(scaled, lo, hi).astype(np.int64), saturated


def dequantise(values, frac: int) -> np.ndarray:
    """Integers in a format with ``frac`` fractional bits back to float64."""
    return np.asarray(values, dtype=np.float64) / 2.0**frac


def best_frac(values, bits: int) -> int:
    """The most fractional bits with which the largest ``|value|`` still fits ``bits`` signed bits."""
    top = float(np.max(np.abs(values), initial=0.0))
    if top == 0.0:
        return bits - 1
    return int(math.floor(math.log2(((1 << (bits - 1)) - 1) / top)))


@dataclass(frozen=True)
class FixedPoint:
    """Integer widths (and fractional bits) of weights, state, thresholds and coefficients."""

    weight_bits: int = 8
    state_bits: int = 16
    state_frac: int = 8
    threshold_bits: int = 16
    coef_bits: int = 16
    coef_frac: int = 14
    weight_frac: int | None = None
    """Fractional bits of every weight; None picks them per node with :func:`best_frac`."""

    def __post_init__(self):
        for name in ("weight_bits", "state_bits", "threshold_bits", "coef_bits"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or not 2 <= value <= 32:
                raise BackendError(f"fixed-point field {name!r}: expected an integer 2..32, got {value!r}")
        for name in ("state_frac", "coef_frac"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or not 0 <= value < 32:
                raise BackendError(f"fixed-point field {name!r}: expected an integer 0..31, got {value!r}")

    @property
    def state_range(self) -> tuple[int, int]:
        return -(1 << (self.state_bits - 1)), (1 << (self.state_bits - 1)) - 1

    def weight_frac_for(self, weights) -> int:
        return self.weight_frac if self.weight_frac is not None else best_frac(weights, self.weight_bits)

    def quantise_role(self, values, role: str, frac: int | None = None) -> tuple[np.ndarray, int]:
        """Quantise parameters by role: weight, state (biases, resets, inputs), coef, threshold."""
        if role == "weight":
            return quantise(values, self.weight_bits, self.weight_frac_for(values) if frac is None else frac)
        if role == "state":
            return quantise(values, self.state_bits, self.state_frac)
        if role == "coef":
            return quantise(values, self.coef_bits, self.coef_frac)
        if role == "threshold":
            return quantise(values, self.threshold_bits, self.state_frac)
        raise BackendError(f"unknown fixed-point role {role!r}")

    def kernel_format(self) -> np.ndarray:
        """The array the integer interpreter reads: [state_lo, state_hi, state_frac, coef_frac]."""
        lo, hi = self.state_range
        return np.array([lo, hi, self.state_frac, self.coef_frac], dtype=np.int64)


def as_fixed_point(precision) -> FixedPoint | None:
    """``"fixed"`` (default widths) or a :class:`FixedPoint` -> FixedPoint; float names -> None."""
    if isinstance(precision, FixedPoint):
        return precision
    if precision == "fixed":
        return FixedPoint()
    return None
