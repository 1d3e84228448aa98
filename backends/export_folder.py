"""Hardware export folders: data files beside a ``manifest.json`` that names the target, the format
version and the SHA-256 of every file; written atomically, verified before anything is parsed.

A target writes its files into the temporary folder that :func:`writing` yields; on success the
manifest is added and the folder replaces ``path`` in one rename. :func:`read_manifest` checks the
manifest and every hash, so a damaged or half-copied export fails with a :class:`FormatError`
before any data file is opened.

Example:
    >>> import json, pathlib, tempfile
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "export"
    >>> with writing(out, target="demo", version=1, meta={"ticks": 3}) as tmp:
    ...     _ = (tmp / "data.json").write_text(json.dumps([1, 2]))
    >>> m = read_manifest(out, target="demo", max_version=1)
    >>> m["target"], sorted(m["files"]), m["meta"]["ticks"]
    ('demo', ['data.json'], 3)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from spikeflow.errors import FormatError

FORMAT = "spikeflow-export"
MANIFEST = "manifest.json"
_MAX_MANIFEST_BYTES = 1 << 24


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def writing(path: str | os.PathLike, *, target: str, version: int, meta: dict[str, Any] | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it becomes the export at ``path``.

    Files must be written directly in the folder (no subfolders). The manifest records ``target``,
    ``version``, ``meta`` (JSON-serialisable) and each file's size and SHA-256. An existing export at
    ``path`` is replaced only after the new one is complete; an exception leaves it untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not final.is_dir():
        raise FormatError(f"{final}: exists and is not a folder; an export is a folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        files = {}
        for item in sorted(tmp.iterdir()):
            if not item.is_file() or item.is_symlink():
                raise FormatError(f"{item.name}: an export holds plain files only")
            _fsync(item)
            files[item.name] = {"bytes": item.stat().st_size, "sha256": _sha256(item)}
        manifest = {"format": FORMAT, "target": target, "version": int(version), "files": files, "meta": meta or {}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        _fsync(tmp / MANIFEST)
        os.chmod(tmp, 0o755)
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, old / "export")
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_manifest(path: str | os.PathLike, *, target: str | None = None, max_version: int | None = None) -> dict[str, Any]:
    """Read and verify an export's manifest: format, target, version, and every file's size and hash.

    Raises:
        FormatError: naming the folder and what is wrong (missing, wrong target, newer version,
            a file missing, truncated, changed or unexpected).
    """
    folder = Path(path)
    where = f"export {folder}"
    if not folder.is_dir():
        raise FormatError(f"{where}: no such folder")
    file = folder / MANIFEST
    if not file.is_file():
        raise FormatError(f"{where}: no {MANIFEST}; not a spikeflow export (or an incomplete copy)")
    if file.stat().st_size > _MAX_MANIFEST_BYTES:
        raise FormatError(f"{where}: {MANIFEST} is {file.stat().st_size} bytes, more than any manifest")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise FormatError(f"{where}: {MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise FormatError(f"{where}: {MANIFEST} is not a spikeflow export manifest (format {FORMAT!r} expected)")
    found_target, version, files = manifest.get("target"), manifest.get("version"), manifest.get("files")
    if not isinstance(found_target, str) or not isinstance(version, int) or not isinstance(files, dict):
        raise FormatError(f"{where}: {MANIFEST} lacks a target name, an integer version or a file table")
    if not isinstance(manifest.get("meta", {}), dict):
        raise FormatError(f"{where}: {MANIFEST} field 'meta' must be an object")
    if target is not None and found_target != target:
        raise FormatError(f"{where}: made for target {found_target!r}, not {target!r}")
    if max_version is not None and not 1 <= version <= max_version:
        raise FormatError(f"{where}: format version {version}; this spikeflow reads versions 1..{max_version}")
    on_disk = {p.name for p in folder.iterdir()} - {MANIFEST}
    for name, entry in files.items():
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise FormatError(f"{where}: {MANIFEST} names an unsafe file {name!r}")
        if not isinstance(entry, dict) or not isinstance(entry.get("bytes"), int) or not isinstance(entry.get("sha256"), str):
            raise FormatError(f"{where}: {MANIFEST} entry for {name!r} needs 'bytes' and 'sha256'")
        item = folder / name
        if not item.is_file() or item.is_symlink():
            raise FormatError(f"{where}: file {name!r} listed in the manifest is missing")
        size = item.stat().st_size
        if size != entry["bytes"]:
            raise FormatError(f"{where}: file {name!r} has {size} bytes, the manifest says {entry['bytes']}")
        if _sha256(item) != entry["sha256"]:
            raise FormatError(f"{where}: file {name!r} does not match its SHA-256 in the manifest (damaged or edited)")
    extra = sorted(on_disk - set(files))
    if extra:
        raise FormatError(f"{where}: files not in the manifest: {extra}")
    return manifest
