"""The stage cache: one folder per (stage, key) under ``<run>/cache/``, never unpickled.

A stage's key is the SHA-256 of its name, its options, the keys of the stages it reads and the
content of the files it reads (a changed graph file changes the key). An entry holds the stage's
files (graphs as spikeflow HDF5, arrays as ``.npz`` read with ``allow_pickle=False``, export
folders) and ``entry.json``, written last and atomically: its result (plain JSON) and the SHA-256
of every file. An entry whose ``entry.json`` is missing, unreadable, of another stage or key, or
whose files do not match their hashes is removed and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from spikeflow._atomic import atomic_path

ENTRY = "entry.json"
FORMAT = 1  # bump when the layout of an entry changes


def digest(value: Any) -> str:
    """SHA-256 of a JSON-able value (keys sorted)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (relative names and bytes, sorted)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def stage_key(stage: str, options: Any, upstream: list[str], files: list[str | Path] = ()) -> str:
    """The cache key of a stage run: its options, the upstream keys and its input files' content."""
    from spikeflow._version import __version__

    return digest({"format": FORMAT, "spikeflow": __version__, "stage": stage, "options": options, "upstream": upstream,
                   "files": {str(f): file_digest(f) for f in files}})


class Entry:
    """One cache entry folder: ``path(name)`` for files to write, then :meth:`commit`."""

    def __init__(self, root: Path, stage: str, key: str):
        self.stage, self.key = stage, key
        self.folder = Path(root) / stage / key[:16]

    def path(self, name: str) -> Path:
        return self.folder / name

    def load(self) -> dict[str, Any] | None:
        """The stored result, or None when there is no valid entry (a broken one is removed)."""
        try:
            meta = json.loads((self.folder / ENTRY).read_text())
            ok = (isinstance(meta, dict) and meta.get("stage") == self.stage and meta.get("key") == self.key
                  and isinstance(meta.get("files"), dict)
                  and all(file_digest(self.folder / name) == sha for name, sha in meta["files"].items()))
        except (OSError, ValueError, UnicodeDecodeError):
            ok = False
        if not ok:
            self.clear()
            return None
        return meta["result"]

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def commit(self, result: Any, files: list[str]) -> None:
        """Record ``result`` (JSON) and the hashes of ``files`` (names in the entry folder)."""
        meta = {"stage": self.stage, "key": self.key, "result": result,
                "files": {name: file_digest(self.folder / name) for name in files}}
        write_json(self.folder / ENTRY, meta)


def write_json(path: Path, value: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=1, sort_keys=True, default=_plain))
    return path


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as JSON numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-able: {type(value).__name__}")


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{k: np.asarray(v) for k, v in arrays.items()})
    return path


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
