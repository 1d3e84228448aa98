"""spikeflow's own graph file: versioned HDF5 written by one generic dict <-> HDF5 walker.

Layout of a graph file::

    /                attrs: format = "spikeflow-graph", format_version = 1, spikeflow_version
    /graph           Graph.to_dict(): one group per node under /graph/nodes, nested graphs
                     are groups whose attribute ``type`` is "Graph"

The walker (:func:`write_tree` / :func:`read_tree`) knows nothing about node types: arrays become
datasets, ``str``/``int``/``float``/``bool`` become attributes, lists of strings become string
datasets and dicts become groups. A sparse Affine/Linear weight is therefore a group: attribute
``format = "csr"`` and datasets ``shape``, ``indptr``, ``indices``, ``data`` (never densified).
Reading checks the header, then the schema (every field of every node, with its kind), then
builds and validates the graph; each problem is a :class:`~spikeflow.errors.SpikeflowError`
naming the file, node and field. No pickle anywhere.
"""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any, Mapping

import numpy as np

from spikeflow._atomic import atomic_path
from spikeflow.errors import FormatError, GraphError, SpikeflowError
from spikeflow.ir.graph import Graph
from spikeflow.ir.nodes import NODE_TYPES, SPARSE_FORMAT, SPARSE_KEYS

FORMAT_NAME = "spikeflow-graph"
FORMAT_VERSION = 1
"""Bumped whenever a file written now could not be read by an older reader."""

_GRAPH_FIELDS = {
    "type": str, "nodes": dict, "node_order": list, "edges": list, "dt": float, "integration": str, "metadata": str,
}
# The Python type a node field of each coercion kind must arrive as (see spikeflow.ir.nodes._param).
_KIND_TYPES = {"array": np.ndarray, "positive": np.ndarray, "shape": np.ndarray, "ints": np.ndarray, "int": int, "choice": str}


# ------------------------------------------------------------------------------------ walker


def write_tree(group, data: Mapping[str, Any]) -> None:
    """Write a nested dict into an h5py group.

    Arrays (and lists of numbers) become datasets, lists of strings (nested to any depth) become
    string datasets, ``str``/``int``/``float``/``bool`` become attributes, dicts become groups.

    Raises:
        FormatError: a value of a type the walker cannot store (names the key).
    """
    import h5py

    for key, value in data.items():
        key = str(key)
        if isinstance(value, Mapping):
            write_tree(group.create_group(key, track_order=True), value)
        elif isinstance(value, (str, bool, int, float, np.bool_, np.integer, np.floating)):
            group.attrs[key] = value
        elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            group.create_dataset(key, data=value)
        elif isinstance(value, (list, tuple)) and _all_strings(value):
            arr = np.array(value, dtype=object) if len(value) else np.zeros(0, dtype=object)
            group.create_dataset(key, data=arr, dtype=h5py.string_dtype())
        elif isinstance(value, (list, tuple)):
            arr = np.asarray(value)
            if arr.dtype.kind not in "biuf":
                raise FormatError(f"field {key!r}: cannot store a list of {arr.dtype} in HDF5")
            group.create_dataset(key, data=arr)
        else:
            raise FormatError(f"field {key!r}: cannot store a value of type {type(value).__name__} in HDF5")


def _all_strings(value) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_all_strings(v) for v in value)
    return isinstance(value, str)


def read_tree(group) -> dict[str, Any]:
    """Read a group written by :func:`write_tree` back into a nested dict.

    Attributes come back as ``str``/``int``/``float``/``bool``, numeric datasets as NumPy arrays
    (0-d included), string datasets as (nested) lists of ``str``, groups as dicts.
    """
    import h5py

    out: dict[str, Any] = {}
    for key, value in group.attrs.items():
        out[key] = _python_scalar(value)
    for key, item in group.items():
        if isinstance(item, h5py.Group):
            out[key] = read_tree(item)
        elif h5py.check_string_dtype(item.dtype) is not None:
            out[key] = item.asstr()[()].tolist() if item.ndim else item.asstr()[()]
        else:
            out[key] = np.asarray(item[()])
    return out


def _python_scalar(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value  # an array attribute written by someone else: leave it for the schema check
    return value


# ------------------------------------------------------------------------------------ header


def write_header(h5file, format_name: str, version: int) -> None:
    """Stamp a file with its format name and integer version (shared by spikeflow's HDF5 formats)."""
    from spikeflow._version import __version__

    h5file.attrs["format"] = format_name
    h5file.attrs["format_version"] = int(version)
    h5file.attrs["spikeflow_version"] = __version__


def check_header(h5file, path: str | os.PathLike, format_name: str, max_version: int) -> int:
    """Check the format name and version written by :func:`write_header`; return the version.

    Raises:
        FormatError: wrong or missing format name, or a version newer than ``max_version``.
    """
    found = _python_scalar(h5file.attrs.get("format"))
    if found != format_name:
        raise FormatError(f"{path}: expected a {format_name!r} file, found format {found!r}")
    version = _python_scalar(h5file.attrs.get("format_version"))
    if not isinstance(version, int) or isinstance(version, bool):
        raise FormatError(f"{path}: attribute 'format_version' must be an integer, found {version!r}")
    if version > max_version:
        raise FormatError(
            f"{path}: written by a newer spikeflow (format version {version}); this version reads "
            f"{format_name!r} up to version {max_version}: upgrade spikeflow"
        )
    if version < 1:
        raise FormatError(f"{path}: invalid format version {version}")
    return version


# --------------------------------------------------------------------------------- save/load


def save(graph: Graph, path: str | os.PathLike) -> None:
    """Validate ``graph`` and write it to ``path`` (HDF5) atomically.

    Example:
        >>> import numpy as np, pathlib, tempfile, spikeflow as sf
        >>> g = sf.Graph.sequential(sf.ir.Input(shape=(2,)), sf.ir.LIF(tau=0.01, v_threshold=np.ones(2)))
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "net.h5"
        >>> sf.save(g, path)
        >>> sf.load(path) == g
        True
    """
    import h5py

    graph.validate()
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            write_header(f, FORMAT_NAME, FORMAT_VERSION)
            write_tree(f.create_group("graph", track_order=True), graph.to_dict())


def load(path: str | os.PathLike) -> Graph:
    """Read and validate a graph written by :func:`save`.

    Raises:
        FormatError: not an HDF5 file, truncated, wrong format or newer version, schema mismatch.
        GraphError: a node or edge is invalid (the message names the file, node and field).
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            check_header(f, path, FORMAT_NAME, FORMAT_VERSION)
            extra = sorted(set(f.keys()) - {"graph"})
            if "graph" not in f:
                raise FormatError(f"{path}: missing group 'graph'")
            if extra:
                raise FormatError(f"{path}: unexpected group {extra[0]!r}")
            data = read_tree(f["graph"])
        _check_graph_dict(data, "graph")
        return Graph.from_dict(data).validate()
    except FileNotFoundError:
        raise FormatError(f"{path}: no such file") from None
    except SpikeflowError as err:
        text = str(err)
        raise type(err)(text if text.startswith(f"{path}:") else f"{path}: {err}") from None
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as err:
        raise FormatError(f"{path}: not a readable spikeflow graph file (truncated or not HDF5?): {err}") from None


def _check_graph_dict(data: dict, where: str) -> None:
    """Schema check of one (possibly nested) graph dict: fields, their types, every node's fields."""
    for key, kind in _GRAPH_FIELDS.items():
        if key not in data:
            raise FormatError(f"{where}: missing field {key!r}")
        value = data[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else isinstance(value, kind)
        if not ok:
            raise FormatError(f"{where} field {key!r}: expected {kind.__name__}, found {type(value).__name__}")
    extra = sorted(set(data) - set(_GRAPH_FIELDS))
    if extra:
        raise FormatError(f"{where}: unexpected field {extra[0]!r}")
    if data["type"] != "Graph":
        raise FormatError(f"{where} field 'type': expected 'Graph', found {data['type']!r}")
    edges = data["edges"]
    if edges and (not all(isinstance(e, list) and len(e) == 2 for e in edges)):
        raise FormatError(f"{where} field 'edges': expected a list of (source, target) pairs")
    for name, node in data["nodes"].items():
        here = f"{where}, node {name!r}" if where != "graph" else f"node {name!r}"
        if not isinstance(node, dict):
            raise FormatError(f"{here}: expected a group, found a {type(node).__name__}")
        kind = node.get("type")
        if kind == "Graph":
            _check_graph_dict(node, here)
            continue
        cls = NODE_TYPES.get(kind)
        if cls is None:
            raise GraphError(f"{here}: unknown node type {kind!r}; known: {sorted(NODE_TYPES)}")
        for f in fields(cls):
            if f.name not in node:
                continue  # Node.from_dict reports missing fields (defaults are allowed)
            expected = _KIND_TYPES[f.metadata["kind"]]
            value = node[f.name]
            if f.metadata.get("sparse") and isinstance(value, dict):
                _check_sparse_group(value, f"{here} field {f.name!r}")
                continue
            if not isinstance(value, expected) or (
                expected is np.ndarray and value.dtype.kind not in ("iu" if f.metadata["kind"] in ("shape", "ints") else "iuf")
            ):
                found = f"array of {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
                raise FormatError(f"{here} field {f.name!r}: expected {_describe(f.metadata['kind'])}, found {found}")


def _check_sparse_group(group: dict, here: str) -> None:
    """Types of a sparse weight's group; its structure (indptr, index range) is checked when the
    node is built, which raises GraphError naming the node and field."""
    keys = sorted(group)
    if keys != sorted(SPARSE_KEYS):
        raise FormatError(f"{here}: a sparse weight group needs exactly the entries {sorted(SPARSE_KEYS)}, found {keys}")
    if group["format"] != SPARSE_FORMAT:
        raise FormatError(f"{here}: attribute 'format' must be {SPARSE_FORMAT!r}, found {group['format']!r}")
    for key in ("shape", "indptr", "indices", "data"):
        value = group[key]
        kinds = "iuf" if key == "data" else "iu"
        if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind not in kinds:
            found = f"array of {value.dtype} with shape {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
            expected = "numbers" if key == "data" else "integers"
            raise FormatError(f"{here}: CSR {key!r} must be a 1-d dataset of {expected}, found {found}")


def _describe(kind: str) -> str:
    return {
        "array": "a numeric array", "positive": "a numeric array", "shape": "an integer array",
        "ints": "an integer array", "int": "an integer attribute", "choice": "a string attribute",
    }[kind]
