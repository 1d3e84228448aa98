"""The SpiNNaker 2 chip as data: every figure the check, partitioner, router and report use.

The figures come from the public descriptions of the chip and of its toolchain (sources below);
each is a field of :class:`Target`, so a call can override any of them
(``sf.export(g, target="spinnaker2", path=..., chip={"data_bytes": 64 * 1024})``).

Sources:
    [chip] Mayr, Höppner, Furber: "SpiNNaker 2: A 10 Million Core Processor System for Brain
        Simulation and Machine Learning" (2019); Höppner et al., "The SpiNNaker 2 Processing
        Element Architecture for Hybrid Digital Neuromorphic Computing" (2021): 152 ARM Cortex-M4F
        PEs per chip, 128 KB SRAM per PE, an int8 MAC array (16x4) with 24-bit accumulators per PE,
        a multicast router with 16,384 key/mask entries, 6 chip-to-chip links.
    [py-spinnaker2] the py-spinnaker2 toolchain (population types lif, lif_curr_exp, lif_no_delay,
        lif_conv2d; projections ``[pre, post, weight, delay]`` with weights in [-15, 15] and delays
        0..7; int8 conv weights; ``max_atoms_per_core`` 250 by default; about 32 KB of a PE's
        SRAM for code, 96 KB for data; 1 ms default time step).
    [egru-lm] Nazeer et al., "Language Modeling on a SpiNNaker 2 Neuromorphic Chip" (2023):
        value-carrying events, weights pruned ~95 % and stored CSR, ~88 KB of a PE's ~96 KB data.
    [estimate] per-operation cycle and energy constants: order-of-magnitude assumptions for an
        M4F at 300 MHz (a few cycles per synaptic event, tens per neuron update), not measurements;
        override them with figures for a real board.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from spikeflow.errors import BackendError

SOURCES = {
    "pes_per_chip": "chip", "app_pes_per_chip": "chip", "sram_bytes": "chip", "code_bytes": "py-spinnaker2",
    "data_bytes": "py-spinnaker2", "router_entries": "chip", "chip_links": "chip", "mac_rows": "chip", "mac_cols": "chip",
    "mac_acc_bits": "chip", "tick_s": "py-spinnaker2", "max_atoms_per_core": "py-spinnaker2", "lif_weight_max": "py-spinnaker2",
    "conv_weight_bits": "py-spinnaker2", "max_delay": "py-spinnaker2", "clock_hz": "estimate", "chips": "call",
    "cycles_per_synapse": "estimate", "cycles_per_neuron": "estimate", "cycles_per_packet": "estimate",
    "cycles_per_mac": "estimate", "energy_per_cycle_j": "estimate", "energy_per_packet_hop_j": "estimate",
    "static_power_per_pe_w": "estimate",
}


@dataclass(frozen=True)
class Target:
    """One SpiNNaker 2 system: chip figures (see the module sources) and the run's chip count."""

    pes_per_chip: int = 152
    app_pes_per_chip: int = 148
    sram_bytes: int = 128 * 1024
    code_bytes: int = 32 * 1024
    data_bytes: int = 96 * 1024
    router_entries: int = 16384
    chip_links: int = 6
    mac_rows: int = 16
    mac_cols: int = 4
    mac_acc_bits: int = 24
    tick_s: float = 1e-3
    max_atoms_per_core: int = 250
    lif_weight_max: int = 15
    conv_weight_bits: int = 8
    max_delay: int = 7
    clock_hz: float = 300e6
    chips: int = 1
    cycles_per_synapse: int = 8
    cycles_per_neuron: int = 40
    cycles_per_packet: int = 30
    cycles_per_mac: float = 1 / 64
    energy_per_cycle_j: float = 10e-12
    energy_per_packet_hop_j: float = 20e-12
    static_power_per_pe_w: float = 1e-3

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise BackendError(f"spinnaker2 target field {f.name!r}: expected a positive number, got {value!r}")
        if self.app_pes_per_chip > self.pes_per_chip:
            raise BackendError(f"spinnaker2 target: app_pes_per_chip {self.app_pes_per_chip} exceeds pes_per_chip {self.pes_per_chip}")
        if self.data_bytes + self.code_bytes > self.sram_bytes:
            raise BackendError(f"spinnaker2 target: data {self.data_bytes} + code {self.code_bytes} bytes exceed the {self.sram_bytes} of SRAM")

    @property
    def pes(self) -> int:
        """Application PEs of the whole system."""
        return self.chips * self.app_pes_per_chip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_target(chip: "Target | Mapping[str, Any] | None" = None, **overrides: Any) -> Target:
    """A :class:`Target` from defaults, a Target, or a dict of overrides (unknown names refused)."""
    base = chip if isinstance(chip, Target) else Target()
    changes = {} if chip is None or isinstance(chip, Target) else dict(chip)
    changes.update(overrides)
    known = {f.name for f in fields(Target)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise BackendError(f"spinnaker2 target: unknown field {unknown[0]!r}; fields are {sorted(known)}")
    return replace(base, **changes)


def precision():
    """The fixed-point setting of the exported arithmetic (see docs/spinnaker2.md).

    State, thresholds and synaptic input are 32-bit integers with 16 fractional bits (the M4F's
    registers), decay and gain coefficients Q2.14 in 16 bits, weights at most 8 bits (int8 conv;
    the 4-bit ``lif`` weights are a subset). A product is brought back by a rounding shift and every
    sum saturates, exactly as in :mod:`spikeflow.backends.numba.fixed_point`.
    """
    from ..numba.fixed_point import FixedPoint

    return FixedPoint(weight_bits=8, state_bits=32, state_frac=16, threshold_bits=32, coef_bits=16, coef_frac=14)
