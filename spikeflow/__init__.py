"""spikeflow: one spiking graph IR, trained in PyTorch, simulated with numba, exchanged through NIR.

Heavy dependencies (torch, numba, brian2, tonic) load on first use of the name that needs them.
"""

from importlib import import_module
from typing import Any

from spikeflow import _threads

_threads.configure()  # before numba or torch load their OpenMP runtimes (see spikeflow/_threads.py)

from spikeflow import ir  # noqa: E402
from spikeflow.exit import policy as _exit_policy  # noqa: F401, E402  (registers the graph's exit-policy check)
from spikeflow.errors import BackendError, DataError, FormatError, GraphError, SpikeflowError  # noqa: E402
from spikeflow.ir import Graph  # noqa: E402

from spikeflow._version import __version__

# public name -> module that defines it (imported lazily)
_LAZY = {
    "save": "spikeflow.io.hdf5",
    "load": "spikeflow.io.hdf5",
    "from_nir": "spikeflow.io.nir_bridge",
    "to_nir": "spikeflow.io.nir_bridge",
    "from_snntorch": "spikeflow.io.peers",
    "from_norse": "spikeflow.io.peers",
    "from_sinabs": "spikeflow.io.peers",
    "from_rockpool": "spikeflow.io.peers",
    "to_torch": "spikeflow.torch.lowering",
    "to_graph": "spikeflow.torch.lowering",
    "Trainer": "spikeflow.train.trainer",
    "simulate": "spikeflow.backends",
    "export": "spikeflow.backends",
    "load_export": "spikeflow.backends",
    "set_threads": "spikeflow._threads",
}
# public submodule name -> module (imported lazily)
_SUBMODULES = {
    "datasets": "spikeflow.datasets",
    "backends": "spikeflow.backends",
    "torch": "spikeflow.torch",
    "train": "spikeflow.train",
    "plots": "spikeflow.plots",
    "cli": "spikeflow.cli",
    "exit": "spikeflow.exit",
    "continual": "spikeflow.continual",
    "models": "spikeflow.models",
    "convert": "spikeflow.convert",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return import_module(_SUBMODULES[name])
    raise AttributeError(f"module 'spikeflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    # only the public API (no helpers such as import_module or the lazy tables)
    return sorted(set(__all__) | set(_SUBMODULES) | {"__version__"})


__all__ = [
    "BackendError", "DataError", "FormatError", "Graph", "GraphError", "SpikeflowError", "ir",
    *_LAZY,
]
