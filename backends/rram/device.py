"""Resistive-memory (RRAM) device model: conductance levels, forming/breakdown statistics,
programming and read noise, drift and stuck-at faults; seeded, and the sampled chip is kept.

Conductances are in µS. A weight is stored as an integer number of conductance levels
``q`` (``|q| <= levels - 1``) on a differential pair ``(G+, G-)`` or against an offset column;
the crossbar reads ``G+ - G-`` in units of the level step ``(g_max - g_min) / (levels - 1)``.

The defaults are data from the literature (see docs/rram.md): a 0–25 µS programming window
(aihwkit, CrossSim, MemTorch use 25–40 µS), programming noise whose σ grows with the target
conductance, read noise per read, drift ``G(t) = G (t / t0)^-ν`` with ν ≈ 0.05–0.1, stuck-at-on/off
cells (test chips show up to ~10%), and, as the source of random reservoir weights, forming by
dielectric breakdown (Lin et al. 2024): pristine cells ~10 MΩ, broken-down cells below 20 kΩ,
breakdown voltage roughly normal, so the programming voltage sets the fraction of conducting cells.

Example:
    >>> import numpy as np
    >>> dev = Device.preset("ideal")
    >>> chip = dev.program(np.array([[3, -2], [0, 1]]), seed=0)
    >>> bool((chip.read_levels(age_s=1e5) == [[3, -2], [0, 1]]).all())
    True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from spikeflow.errors import BackendError

ENCODINGS = ("differential", "offset")


@dataclass(frozen=True)
class Device:
    """Parameters of one RRAM technology (all overridable; defaults from the papers cited above).

    Attributes:
        g_min, g_max: programming window in µS (level 0 and level ``levels - 1``).
        levels: distinguishable conductance levels per cell.
        prog_noise: programming noise σ as a fraction of the target conductance (grows with g).
        prog_noise_floor: programming noise σ floor, as a fraction of ``g_max`` (every level).
        read_noise: read noise σ per read, as a fraction of the cell conductance.
        drift_nu, drift_nu_std: drift exponent ν (mean, spread across cells), ``G (t/t0)^-ν``.
        drift_t0_s: time after programming at which conductances are as programmed (seconds).
        age_s: default time between programming and reading (seconds).
        drift_compensation: rescale each tile's outputs by its known mean drift (a reference read).
        stuck_on, stuck_off: fractions of cells stuck at the highest / lowest conductance.
        g_pristine: conductance of an unformed cell (µS; ~10 MΩ).
        g_breakdown: median conductance of a broken-down cell (µS; below 20 kΩ means above 50).
        g_breakdown_spread: lognormal σ of broken-down conductances.
        g_breakdown_min: broken-down cells conduct at least this (µS; 20 kΩ).
        v_breakdown, v_breakdown_std: breakdown voltage (V), normally distributed across cells.
    """

    g_min: float = 0.0
    g_max: float = 25.0
    levels: int = 32
    prog_noise: float = 0.02
    prog_noise_floor: float = 0.002
    read_noise: float = 0.01
    drift_nu: float = 0.06
    drift_nu_std: float = 0.02
    drift_t0_s: float = 20.0
    age_s: float = 20.0
    drift_compensation: bool = True
    stuck_on: float = 0.0005
    stuck_off: float = 0.0005
    g_pristine: float = 0.1
    g_breakdown: float = 80.0
    g_breakdown_spread: float = 0.25
    g_breakdown_min: float = 50.0
    v_breakdown: float = 3.0
    v_breakdown_std: float = 0.3

    def __post_init__(self):
        if not (isinstance(self.levels, (int, np.integer)) and 2 <= self.levels <= 1 << 15):
            raise BackendError(f"device field 'levels': expected an integer 2..32768, got {self.levels!r}")
        if not 0 <= self.g_min < self.g_max:
            raise BackendError(f"device fields 'g_min', 'g_max': need 0 <= g_min < g_max, got {self.g_min}, {self.g_max}")
        for name in ("prog_noise", "prog_noise_floor", "read_noise", "drift_nu", "drift_nu_std", "stuck_on", "stuck_off",
                     "g_breakdown_spread", "v_breakdown_std"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise BackendError(f"device field {name!r}: expected a finite value >= 0, got {value!r}")
        if self.stuck_on + self.stuck_off > 1:
            raise BackendError(f"device fields 'stuck_on' + 'stuck_off' = {self.stuck_on + self.stuck_off} > 1")
        if not (self.drift_t0_s > 0 and self.age_s > 0):
            raise BackendError(f"device fields 'drift_t0_s', 'age_s': expected > 0, got {self.drift_t0_s}, {self.age_s}")

    @classmethod
    def preset(cls, name: str | "Device" | dict | None = None, **overrides) -> "Device":
        """``"default"`` (or None), ``"ideal"`` (exact levels, no noise, drift or faults), a dict of
        fields, or a Device; ``overrides`` replace fields (e.g. ``prog_noise=0.1``)."""
        if isinstance(name, Device):
            base = name
        elif isinstance(name, dict):
            base = cls.from_dict(name)
        elif name in (None, "default"):
            base = cls()
        elif name == "ideal":
            base = cls(prog_noise=0.0, prog_noise_floor=0.0, read_noise=0.0, drift_nu=0.0, drift_nu_std=0.0,
                       stuck_on=0.0, stuck_off=0.0)
        else:
            raise BackendError(f"argument 'device': expected 'default', 'ideal', a dict of fields or a Device, got {name!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise BackendError(f"unknown device fields {unknown}; known: {sorted(known)}")
        return replace(base, **overrides)

    @property
    def ideal(self) -> bool:
        """No programming or read noise, no drift and no stuck cells: reads return exact levels."""
        return not any((self.prog_noise, self.prog_noise_floor, self.read_noise, self.drift_nu, self.drift_nu_std,
                        self.stuck_on, self.stuck_off))

    @property
    def step(self) -> float:
        """Conductance of one level (µS)."""
        return (self.g_max - self.g_min) / (self.levels - 1)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Device":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BackendError(f"unknown device fields {unknown}; known: {sorted(known)}")
        return cls(**data)

    # ------------------------------------------------------------------------ random weights

    def breakdown_voltage_for(self, density: float) -> float:
        """The programming voltage at which a fraction ``density`` of pristine cells breaks down."""
        from scipy.stats import norm

        if not 0 < density < 1:
            raise BackendError(f"argument 'density': expected 0 < density < 1, got {density!r}")
        return float(self.v_breakdown + self.v_breakdown_std * norm.ppf(density))

    def breakdown(self, shape, density: float, seed=None) -> np.ndarray:
        """Conductances (µS) of a fresh array after one forming pulse: the cells whose breakdown
        voltage is below the pulse that gives ``density`` conduct (lognormal around
        ``g_breakdown``), the rest stay pristine."""
        rng = np.random.default_rng(seed)
        v_pulse = self.breakdown_voltage_for(density)
        broken = rng.normal(self.v_breakdown, self.v_breakdown_std, size=shape) < v_pulse
        g_on = np.maximum(self.g_breakdown * np.exp(self.g_breakdown_spread * rng.standard_normal(shape)), self.g_breakdown_min)
        return np.where(broken, g_on, self.g_pristine)

    def random_weights(self, shape, density: float, seed=None) -> np.ndarray:
        """Random signed weights from a differential pair of formed arrays, ``(G+ - G-) / g_breakdown``:
        about ``2 density`` of them nonzero (pristine-pristine pairs cancel to ~0)."""
        rng = np.random.default_rng(seed)
        g_plus = self.breakdown(shape, density, rng)
        g_minus = self.breakdown(shape, density, rng)
        return (g_plus - g_minus) / self.g_breakdown

    # ------------------------------------------------------------------------- programming

    def program(self, levels, encoding: str = "differential", seed=None) -> "Chip":
        """Program integer weights ``levels`` (``|q| <= levels - 1``; offset: ``-L/2 <= q < L/2``)
        into a fresh array: programming noise, stuck cells and drift exponents are sampled once."""
        q = np.asarray(levels)
        if encoding not in ENCODINGS:
            raise BackendError(f"argument 'encoding': expected one of {ENCODINGS}, got {encoding!r}")
        if q.ndim != 2:
            raise BackendError(f"argument 'levels': expected a 2-d [outputs, inputs] array, got shape {q.shape}")
        rng = np.random.default_rng(seed)
        top = self.levels - 1
        if encoding == "differential":
            if q.size and np.abs(q).max() > top:
                raise BackendError(f"weight levels up to {int(np.abs(q).max())} do not fit {self.levels} device levels")
            plus, minus = np.maximum(q, 0), np.maximum(-q, 0)
        else:
            half = self.levels // 2
            if q.size and (q.min() < -half or q.max() > top - half):
                raise BackendError(f"weight levels {int(q.min())}..{int(q.max())} do not fit offset encoding of {self.levels} levels ({-half}..{top - half})")
            # one reference cell per input row, shared by every output column of the array
            plus, minus = q + half, np.full((1, q.shape[1]), half)
        g_plus, g_minus = (self._programmed(np.asarray(t, np.float64), rng) for t in (plus, minus))
        g_minus = np.broadcast_to(g_minus, q.shape).copy()
        nu = np.clip(self.drift_nu + self.drift_nu_std * rng.standard_normal((2, *q.shape)), 0.0, None)
        if encoding == "offset":
            nu[1] = nu[1, :1]
        return Chip(self, encoding, g_plus, g_minus, nu, (plus - minus).astype(np.int64))

    def _programmed(self, target_levels: np.ndarray, rng) -> np.ndarray:
        """Conductances after programming ``target_levels``: noise σ(g), then stuck cells."""
        g = self.g_min + target_levels * self.step
        sigma = self.prog_noise * g + self.prog_noise_floor * self.g_max
        if sigma.any():
            g = np.clip(g + sigma * rng.standard_normal(g.shape), 0.0, None)
        if self.stuck_on or self.stuck_off:
            u = rng.random(g.shape)
            g = np.where(u < self.stuck_on, self.g_max, g)
            g = np.where((u >= self.stuck_on) & (u < self.stuck_on + self.stuck_off), self.g_min, g)
        return g


@dataclass
class Chip:
    """One sampled array: programmed conductances (µS) of the positive and negative (or offset)
    cells, each cell's drift exponent, and the integer levels that were asked for."""

    device: Device
    encoding: str
    g_plus: np.ndarray
    g_minus: np.ndarray
    nu: np.ndarray
    target: np.ndarray = field(repr=False)

    def conductances(self, age_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(G+, G-)`` after ``age_s`` seconds (default: the device's ``age_s``) of drift."""
        d = self.device
        age = d.age_s if age_s is None else float(age_s)
        if not age > 0:
            raise BackendError(f"argument 'age_s': expected > 0 seconds, got {age_s!r}")
        factor = (max(age, d.drift_t0_s) / d.drift_t0_s) ** -self.nu
        return self.g_plus * factor[0], self.g_minus * factor[1]

    def compensation(self, g_plus: np.ndarray, g_minus: np.ndarray) -> float:
        """Drift compensation: one gain per array that restores its programmed total conductance
        (a reference read, as aihwkit's global drift compensation); 1 when switched off."""
        total = float(g_plus.sum() + g_minus.sum())
        if not self.device.drift_compensation or total <= 0:
            return 1.0
        return float(self.g_plus.sum() + self.g_minus.sum()) / total

    def read_levels(self, age_s: float | None = None) -> np.ndarray:
        """The stored weights, in levels, that a noiseless read sees after ``age_s`` of drift and
        its compensation; an ideal device reads exactly the programmed levels."""
        if self.device.ideal:
            return self.target.astype(np.float64)
        gp, gm = self.conductances(age_s)
        gain = self.compensation(gp, gm)
        return (gp - gm) * gain / self.device.step
