"""What several commands share: reading a graph file, and the exit status of an unavailable command."""

from __future__ import annotations

from pathlib import Path

from spikeflow.errors import FormatError

EXIT_UNAVAILABLE = 2


def load_graph(path: str | Path, dt: float | None = None):
    """A graph from a spikeflow HDF5 file (``.h5``/``.hdf5``) or a NIR file (``.nir``, ``dt`` if it has none)."""
    import spikeflow as sf

    path = Path(path)
    if not path.exists():
        raise FormatError(f"{path}: no such file")
    if path.suffix.lower() in (".h5", ".hdf5"):
        return sf.load(path)
    if path.suffix.lower() == ".nir":
        return sf.from_nir(path, dt=dt)
    raise FormatError(f"{path}: unknown graph file type {path.suffix!r}; expected .h5, .hdf5 or .nir")
