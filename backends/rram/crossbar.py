"""Crossbar mapping: weight matrices onto tiles of RRAM cells, converters as a fixed-point format.

Every Affine/Linear node (feed-forward or recurrent) is one ``W x`` on the crossbar: its inputs drive
the rows (word lines) through a DAC, its outputs are column currents read by an ADC. A matrix larger
than a tile is cut into row tiles (``tile_rows`` inputs each) and column tiles; each row tile's
columns are converted on their own and the digital periphery adds the converted partial sums.

A convolution (Conv1d/Conv2d) is its im2col matrix (:func:`kernel_matrix`: rows are the
``in_channels x kh x kw`` taps, columns the output channels), programmed once and read at every
output position with that position's input patch on the rows (time-multiplexed reads, one ADC
conversion per output channel and position). Its row tiles hold whole input channels where a
channel's ``kh x kw`` taps fit a tile. Pooling (SumPool2d, AvgPool2d) runs in the digital periphery.

The converters are expressed as a :class:`~spikeflow.backends.numba.fixed_point.FixedPoint`, so the
numba simulators run exactly what an ideal crossbar computes:

* a weight is an integer number of conductance levels ``q`` times ``2**-f`` (``f`` per row tile,
  the most fractional bits at which the tile's largest weight fits the levels), so the ADC's gain
  is a power of two (a shift in the periphery);
* the DAC turns each input into a ``dac_bits`` code with ``state_frac`` fractional bits (a spike
  is one read pulse);
* the ADC rounds the column current ``sum_j q_ij x_j`` (in level x input units) half up to
  ``2**f`` units and saturates to ``adc_bits``, which is also the word of the digital neurons.

So ``FixedPoint(weight_bits=level bits, state_bits=adc_bits, state_frac=..., ...)`` and a graph whose
row-tile nodes carry the weights ``q 2**-f`` reproduce the ideal crossbar bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from spikeflow.errors import BackendError
from spikeflow.ir import nodes as n

from ..numba.fixed_point import FixedPoint, best_frac, quantise
from .device import ENCODINGS, Device

#: Node types the crossbar target runs: matrices on the array, the LIF family in digital periphery.
MATRIX_NODES = (n.Affine, n.Linear)
CONV_NODES = (n.Conv1d, n.Conv2d)
NEURON_NODES = (n.LIF, n.LI, n.IF, n.I, n.CubaLIF, n.CubaLI)
PLAIN_NODES = (n.Input, n.Output, n.Flatten, n.Scale, n.Threshold, n.SumPool2d, n.AvgPool2d)

#: Energy constants (pJ) used by the report; order-of-magnitude figures for a 40 nm macro, see docs/rram.md.
ENERGY_PJ = {
    "adc_per_level": 0.01,  # SAR ADC: ~10 fJ per conversion step (Walden figure of merit), x 2**bits
    "row_drive": 0.05,  # one word-line read pulse through a 1-bit DAC/driver
    "cell_read_per_us": 0.0004,  # V**2 G t with 0.2 V, 10 ns: 0.4 fJ per µS of cell conductance
    "neuron_update": 0.1,  # one digital LIF update (multiply-add, compare) per neuron per step
}


@dataclass(frozen=True)
class Crossbar:
    """How matrices are laid out and read.

    Attributes:
        tile_rows, tile_cols: cells per tile (the 40 nm macro of Lin et al. is 512 x 512).
        encoding: "differential" (a weight is G+ - G-, two columns) or "offset" (one column plus a
            shared reference column per tile).
        dac_bits: input DAC width (codes in the neurons' state format; a spike is one pulse).
        adc_bits: ADC width; also the word of the digital neurons after it.
        state_frac: fractional bits of that word; None picks them so twice the largest threshold fits.
        coef_bits, coef_frac: digital decay/gain coefficients.
        ir_drop_ohm: wire resistance per cell segment (0: no IR drop). First-order model: a cell at
            row r, column c of its tile sees ``G / (1 + G R (r + c + 2))``.
        max_tiles: tiles on the chip (None: as many as needed); more needed is an impossible mapping.
    """

    tile_rows: int = 512
    tile_cols: int = 512
    encoding: str = "differential"
    dac_bits: int = 10
    adc_bits: int = 10
    state_frac: int | None = None
    coef_bits: int = 16
    coef_frac: int = 14
    ir_drop_ohm: float = 0.0
    max_tiles: int | None = None

    def __post_init__(self):
        if self.encoding not in ENCODINGS:
            raise BackendError(f"crossbar field 'encoding': expected one of {ENCODINGS}, got {self.encoding!r}")
        for name in ("tile_rows", "tile_cols"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 2:
                raise BackendError(f"crossbar field {name!r}: expected an integer >= 2, got {value!r}")
        for name in ("dac_bits", "adc_bits"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or not 2 <= value <= 24:
                raise BackendError(f"crossbar field {name!r}: expected an integer 2..24, got {value!r}")
        if self.dac_bits > self.adc_bits:
            raise BackendError(f"crossbar fields 'dac_bits' ({self.dac_bits}) > 'adc_bits' ({self.adc_bits}): "
                               "inputs share the neurons' word, so the DAC cannot be wider than the ADC")
        if not (math.isfinite(self.ir_drop_ohm) and self.ir_drop_ohm >= 0):
            raise BackendError(f"crossbar field 'ir_drop_ohm': expected a finite value >= 0, got {self.ir_drop_ohm!r}")

    @classmethod
    def from_options(cls, **options) -> "Crossbar":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise BackendError(f"unknown crossbar options {unknown}; known: {sorted(known)}")
        return cls(**options)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def weights_per_tile(self) -> int:
        """Output columns of weights per tile (a differential pair uses two physical columns)."""
        return self.tile_cols // 2 if self.encoding == "differential" else self.tile_cols - 1

    def weight_bits(self, device: Device) -> int:
        """Signed integer width of a weight in levels: ±(levels-1) differential, -L/2..L/2-1 offset."""
        if self.encoding == "differential":
            return int(math.floor(math.log2(device.levels))) + 1
        return int(math.floor(math.log2(device.levels)))

    def precision(self, device: Device, thresholds=()) -> FixedPoint:
        """The fixed-point format that reproduces this crossbar with an ideal ``device``."""
        frac = self.state_frac
        if frac is None:
            top = max([float(np.max(np.abs(t), initial=0.0)) for t in thresholds] + [1.0])
            frac = max(0, best_frac(2.0 * top, self.adc_bits))
        return FixedPoint(weight_bits=min(self.weight_bits(device), 32), state_bits=self.adc_bits, state_frac=int(frac),
                          threshold_bits=self.adc_bits, coef_bits=self.coef_bits, coef_frac=self.coef_frac)


@dataclass
class TileMap:
    """One row tile of a matrix node: its rows, its integer levels and the ADC shift ``frac``."""

    node: str
    name: str
    rows: tuple[int, int]
    frac: int
    levels: np.ndarray
    """int64 ``[n_out, rows]``: weights ``levels * 2**-frac``."""
    bias: np.ndarray | None
    """float64 bias (state units) added after conversion, on the first row tile only."""
    col_tiles: int
    reads: int = 1
    """Array reads per step: 1 for a matrix, the output positions of a convolution."""


def kernel_matrix(node) -> np.ndarray:
    """The im2col matrix ``[out_channels, in_channels * kh * kw]`` of a Conv1d/Conv2d (rows in
    (channel, ky, kx) order); a grouped convolution becomes its block-diagonal dense kernel."""
    w = np.asarray(node.weight, np.float64)
    c_out, per_in = w.shape[:2]
    per_out = c_out // node.groups
    full = np.zeros((c_out, per_in * node.groups) + w.shape[2:])
    for g in range(node.groups):
        full[g * per_out : (g + 1) * per_out, g * per_in : (g + 1) * per_in] = w[g * per_out : (g + 1) * per_out]
    return full.reshape(c_out, -1)


def conv_row_step(node, crossbar: Crossbar) -> int:
    """Rows per row tile of a convolution: as many whole input channels as fit a tile (a channel's
    taps split only when one channel's ``kh x kw`` exceeds the tile)."""
    taps = math.prod(node.weight.shape[2:])
    return taps * (crossbar.tile_rows // taps) if taps <= crossbar.tile_rows else crossbar.tile_rows


def split_rows(name: str, weight: np.ndarray, bias, crossbar: Crossbar, device: Device, fixed: FixedPoint,
               step: int | None = None, reads: int = 1) -> list[TileMap]:
    """Quantise a ``[n_out, n_in]`` matrix per row tile (``step`` rows, default a tile's) into
    integer levels that fit the device; each tile is read ``reads`` times per step."""
    n_out, n_in = weight.shape
    bits = fixed.weight_bits
    step = step or crossbar.tile_rows
    starts = list(range(0, max(n_in, 1), step))
    tiles = []
    for k, lo in enumerate(starts):
        hi = min(lo + step, n_in)
        part = weight[:, lo:hi]
        frac = best_frac(part, bits)
        levels, _ = quantise(part, bits, frac)
        tiles.append(TileMap(
            node=name, name=name if len(starts) == 1 else f"{name}__rows{k}", rows=(lo, hi), frac=int(frac),
            levels=levels, bias=None if (bias is None or k) else np.asarray(bias, np.float64),
            col_tiles=max(1, math.ceil(n_out / crossbar.weights_per_tile)), reads=int(reads),
        ))
    return tiles


def effective_levels(g_plus: np.ndarray, g_minus: np.ndarray, device: Device, crossbar: Crossbar) -> np.ndarray:
    """``(G+ - G-) / step`` after the first-order IR drop of each cell's position in its tile."""
    if crossbar.ir_drop_ohm == 0:
        return (g_plus - g_minus) / device.step
    n_out, n_in = g_plus.shape
    row = (np.arange(n_in) % crossbar.tile_rows)[None, :]
    col = (np.arange(n_out) % crossbar.weights_per_tile)[:, None]
    if crossbar.encoding == "differential":
        col = 2 * col
    path = crossbar.ir_drop_ohm * 1e-6 * (row + col + 2)  # Ω x µS -> dimensionless
    return (g_plus / (1 + g_plus * path) - g_minus / (1 + g_minus * path)) / device.step


def physical_cells(n_out: int, n_rows: int, crossbar: Crossbar) -> int:
    """Cells a row tile of ``n_rows`` inputs and ``n_out`` outputs programs (columns include the pair/reference)."""
    cols = 2 * n_out if crossbar.encoding == "differential" else n_out + math.ceil(n_out / crossbar.weights_per_tile)
    return n_rows * cols
