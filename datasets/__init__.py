"""Event data for spikeflow: tonic-style event arrays, the HDF5 event store, tonic-backed loaders
with offline roots, the DVS emulator, the built-in DigitSaccades set, spike encoders and pictures.

Heavy dependencies (tonic, torch, h5py, matplotlib) load on first use of the name that needs them.

Example:
    >>> import spikeflow as sf
    >>> ev = sf.datasets.make_events([1], [2], [30], [1])
    >>> ev.dtype.names
    ('x', 'y', 't', 'p')
"""

from importlib import import_module
from typing import Any

from spikeflow.datasets.events import EVENT_DTYPE, EventCollate, check_events, make_events, sort_events, to_frames

# public name -> module of this package that defines it (imported lazily)
_LAZY = {
    "read_nmnist_bin": "nmnist_bin",
    "write_nmnist_bin": "nmnist_bin",
    "EventStore": "store",
    "EventStoreWriter": "store",
    "write_store": "store",
    "emulate_dvs": "emulator",
    "saccade_frames": "emulator",
    "SACCADE_PATH": "emulator",
    "DigitSaccades": "digits",
    "digit_saccade_frames": "digits",
    "SpokenDigits": "spoken_digits",
    "NMNIST": "tonic_sets",
    "DVSGesture": "tonic_sets",
    "SHD": "tonic_sets",
    "NTIDIGITS18": "tonic_sets",
    "POKERDVS": "tonic_sets",
    "rate_encode": "encode",
    "latency_encode": "encode",
    "delta_encode": "encode",
    "plot_event_frame": "plots",
    "plot_frame_strip": "plots",
    "plot_raster": "plots",
    "event_image": "plots",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f"spikeflow.datasets.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spikeflow.datasets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["EVENT_DTYPE", "EventCollate", "check_events", "make_events", "sort_events", "to_frames", *_LAZY]
