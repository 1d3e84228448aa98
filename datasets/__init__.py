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

from spikeflow.datasets.events import EVENT_DTYPE, EventCollate, bin_events, check_events, make_events, sort_events, to_frames

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
    "plot_frame_grid": "plots",
    "plot_raster": "plots",
    "event_image": "plots",
    "pydoc_topics_text": "text",
    "split_text": "text",
    "encode_text": "text",
    "char_streams": "text",
}


# registered event datasets by command-line name -> class name; each takes (root, train=, transform=)
# and has a sensor_size (W, H, P); ``spikeflow train --dataset NAME`` takes its choices from here
DATASETS = {
    "digit-saccades": "DigitSaccades",
    "spoken-digits": "SpokenDigits",
    "nmnist": "NMNIST",
    "dvs-gesture": "DVSGesture",
    "shd": "SHD",
    "ntidigits18": "NTIDIGITS18",
    "pokerdvs": "POKERDVS",
}


def dataset(name: str, root, train: bool = True, **options: Any):
    """A registered event dataset by name (see ``DATASETS``), e.g. ``dataset("nmnist", root="data")``."""
    from spikeflow.errors import DataError

    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; registered: {sorted(DATASETS)}")
    cls = globals().get(DATASETS[name]) or __getattr__(DATASETS[name])
    return cls(root, train=train, **options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f"spikeflow.datasets.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spikeflow.datasets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["DATASETS", "EVENT_DTYPE", "EventCollate", "bin_events", "check_events", "dataset", "make_events", "sort_events", "to_frames", *_LAZY]
