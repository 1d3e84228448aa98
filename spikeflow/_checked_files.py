"""Reading files that may be damaged or hostile without hanging, leaking or returning wrong data.

One place for the three defences every spikeflow reader uses (see ``docs/files.md``):

* **Seals** (spikeflow's own files): the first :data:`SEAL_SIZE` bytes of the file hold a small
  text header with the SHA-256 of everything after it. In HDF5 files that header is the HDF5 *user
  block* (libhdf5 skips it; ``h5dump`` still reads the file). The reader checks the digest before
  any parser sees a byte, so a damaged file is refused before libhdf5 can hang on it or return
  silently changed weights.
* **Bounded HDF5 walks** (every HDF5 file, sealed or foreign): before reading data,
  :func:`check_hdf5_tree` visits every object and refuses soft, external and user-defined links,
  objects reached twice, deep nesting, external or virtual storage, unexpected filters, and any
  dataset or attribute whose declared size exceeds what the file really holds or what memory holds.
* **A hang guard** (foreign files, e.g. NIR made by other tools, which carry no seal):
  :func:`run_guarded` first runs the parse in a forked child with a time limit; only when the child
  finishes does the caller parse the same bytes itself. A parse that loops or crashes inside a C
  library becomes a ``FormatError``.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from spikeflow._atomic import atomic_path, fsync_path
from spikeflow.errors import FormatError, SpikeflowError

SEAL_SIZE = 512
"""Bytes reserved at the start of a sealed file (the HDF5 user block; a power of two >= 512)."""
SEAL_MAGIC = b"spikeflow-seal 1\n"
HANG_TIMEOUT_S = 20.0
"""Seconds a guarded parse may take before the file is refused as one that hangs the parser."""
MAX_DEPTH = 64
MAX_OBJECTS = 200_000
# HDF5 filter ids a spikeflow reader accepts when the format allows compression.
FILTER_LZF, FILTER_DEFLATE, FILTER_SHUFFLE, FILTER_FLETCHER32 = 32000, 1, 2, 3
_PY_FILTER_NAMES = {FILTER_LZF: "lzf", FILTER_DEFLATE: "deflate", FILTER_SHUFFLE: "shuffle", FILTER_FLETCHER32: "fletcher32"}


# ------------------------------------------------------------------------------------ seals


def _seal_header(digest: str, length: int) -> bytes:
    text = SEAL_MAGIC + f"sha256 {digest}\nlength {length}\n".encode()
    return text + bytes(SEAL_SIZE - len(text))


def seal_file(path: str | os.PathLike) -> None:
    """Write the seal header into the first :data:`SEAL_SIZE` bytes of ``path`` (already reserved)."""
    sha = hashlib.sha256()
    length = 0
    with open(path, "r+b") as f:
        f.seek(SEAL_SIZE)
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
            length += len(block)
        f.seek(0)
        f.write(_seal_header(sha.hexdigest(), length))


def seal_bytes(data: bytes) -> bytes:
    """Return ``data`` (a file whose first :data:`SEAL_SIZE` bytes are reserved) with its seal written."""
    payload = memoryview(data)[SEAL_SIZE:]
    return _seal_header(hashlib.sha256(payload).hexdigest(), len(payload)) + bytes(payload)


def _parse_seal(head: bytes, where: str) -> tuple[str, int]:
    if not head.startswith(SEAL_MAGIC):
        raise FormatError(
            f"{where}: no spikeflow checksum at the start of the file (not written by this spikeflow, written "
            "before checksums were added, or its first bytes are damaged); refused because a damaged file "
            "could hang the HDF5 library: see docs/files.md"
        )
    lines = head[len(SEAL_MAGIC):].split(b"\x00", 1)[0].decode("ascii", "replace").splitlines()
    fields = dict(line.split(" ", 1) for line in lines if " " in line)
    digest, length = fields.get("sha256", ""), fields.get("length", "")
    if len(digest) != 64 or not length.isdigit():
        raise FormatError(f"{where}: damaged checksum header")
    return digest, int(length)


def read_sealed(path: str | os.PathLike, where: str | None = None, max_bytes: int | None = None) -> bytes:
    """Read a sealed file whole and return its bytes (header included) once the digest matches.

    Raises:
        FormatError: missing file, no or damaged seal, wrong length, digest mismatch, too large.
    """
    where = where or str(path)
    try:
        size = os.path.getsize(path)
        if max_bytes is not None and size > max_bytes + SEAL_SIZE:
            raise FormatError(f"{where}: {size} bytes exceed the limit of {max_bytes}")
        check_memory(size, where)
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FormatError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise FormatError(f"{where}: is a folder, expected a file") from None
    except OSError as err:
        raise FormatError(f"{where}: cannot read: {err.strerror or err}") from None
    return verify_sealed_bytes(data, where)


def verify_sealed_bytes(data: bytes, where: str) -> bytes:
    """Check the seal of a whole file held in memory; return ``data`` when it matches."""
    digest, length = _parse_seal(data[:SEAL_SIZE], where)
    if length != len(data) - SEAL_SIZE:
        raise FormatError(f"{where}: checksum header says {length} bytes follow it, the file holds {len(data) - SEAL_SIZE} (truncated or extended)")
    if hashlib.sha256(memoryview(data)[SEAL_SIZE:]).hexdigest() != digest:
        raise FormatError(f"{where}: checksum mismatch: the file is damaged")
    return data


def verify_sealed(path: str | os.PathLike, where: str | None = None) -> int:
    """Check a sealed file's digest by streaming it (for large files opened by path); return its size."""
    where = where or str(path)
    try:
        with open(path, "rb") as f:
            digest, length = _parse_seal(f.read(SEAL_SIZE), where)
            size = os.fstat(f.fileno()).st_size
            if length != size - SEAL_SIZE:
                raise FormatError(f"{where}: checksum header says {length} bytes follow it, the file holds {size - SEAL_SIZE} (truncated or extended)")
            sha = hashlib.sha256()
            for block in iter(lambda: f.read(1 << 22), b""):
                sha.update(block)
    except FileNotFoundError:
        raise FormatError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise FormatError(f"{where}: is a folder, expected a file") from None
    except OSError as err:
        raise FormatError(f"{where}: cannot read: {err.strerror or err}") from None
    if sha.hexdigest() != digest:
        raise FormatError(f"{where}: checksum mismatch: the file is damaged")
    return size


@contextmanager
def sealed_hdf5_writer(path: str | os.PathLike, **kwargs) -> Iterator[Any]:
    """Yield a new ``h5py.File`` whose user block will carry the seal; atomic and durable on exit."""
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", userblock_size=SEAL_SIZE, **kwargs) as f:
            yield f
        seal_file(tmp)


def write_sealed_bytes(path: str | os.PathLike, payload: bytes) -> None:
    """Write ``payload`` behind a seal header, atomically (for non-HDF5 formats, e.g. checkpoints)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(_seal_header(hashlib.sha256(payload).hexdigest(), len(payload)))
            f.write(payload)


@contextmanager
def open_sealed_hdf5(path: str | os.PathLike, where: str | None = None, **limits) -> Iterator[Any]:
    """Verify a sealed HDF5 file, then open it from the verified bytes and check its structure.

    ``limits`` go to :func:`check_hdf5_tree`. Every error inside the block that is not a
    ``SpikeflowError`` becomes a ``FormatError`` naming the file.
    """
    import h5py

    where = where or str(path)
    data = read_sealed(path, where)
    with as_format_error(where):
        # Parsing the bytes that were verified (not the path again) leaves no window for a change.
        with h5py.File(io.BytesIO(data), "r") as f:
            check_hdf5_tree(f, where, len(data), **limits)
            yield f


# ------------------------------------------------------------------------------ HDF5 structure


@contextmanager
def as_format_error(where: str) -> Iterator[None]:
    """Turn anything a parser raises that is not a ``SpikeflowError`` into a ``FormatError``.

    h5py raises OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError and more on
    damaged files; spikeflow's readers promise one error family.
    """
    try:
        yield
    except SpikeflowError:
        raise
    except RecursionError:
        raise FormatError(f"{where}: nested too deeply") from None
    except MemoryError:
        raise FormatError(f"{where}: declares more data than memory holds") from None
    except Exception as err:  # noqa: BLE001 - see docstring
        text = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise FormatError(f"{where}: not readable ({type(err).__name__}: {text})") from None


def available_memory() -> int:
    """Bytes of memory available now (physical, from the OS), or a large number when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_memory(nbytes: int, where: str, what: str = "it", error: type[SpikeflowError] = FormatError) -> None:
    """Refuse (``error``, a ``SpikeflowError``) an allocation of ``nbytes`` that memory cannot hold."""
    free = available_memory()
    if nbytes > free:
        raise error(f"{where}: {what} needs {nbytes / 2**30:.2f} GiB, but only {free / 2**30:.2f} GiB of memory is available")


def check_hdf5_tree(
    h5file,
    where: str,
    file_bytes: int,
    filters: tuple[int, ...] = (),
    max_ratio: float = 1.0,
    max_depth: int = MAX_DEPTH,
    max_objects: int = MAX_OBJECTS,
) -> None:
    """Check every object of an open HDF5 file before any data is read.

    Refuses soft, external and user-defined links, an object reached twice, nesting deeper than
    ``max_depth``, more than ``max_objects`` objects, external or virtual storage, filters not in
    ``filters``, and datasets or attributes that declare more bytes than the file could hold
    (``file_bytes``, times ``max_ratio`` for compressed datasets) or than memory holds.

    Raises:
        FormatError: naming the object and the rule.
    """
    import h5py

    seen: set[int] = set()
    count = 0
    budget = max(file_bytes, 1)

    def check_attrs(obj, name: str) -> None:
        for key in obj.attrs.keys():
            aid = h5py.h5a.open(obj.id, key.encode() if isinstance(key, str) else key)
            _check_extent(aid.shape, aid.dtype, budget, where, f"{name} attribute {key!r}")

    def visit(group, name: str, depth: int) -> None:
        nonlocal count
        if depth > max_depth:
            raise FormatError(f"{where}: group {name!r} is nested deeper than {max_depth} levels")
        check_attrs(group, name)
        for key in group.keys():
            child = f"{name.rstrip('/')}/{key}"
            link = group.get(key, getlink=True)
            if not isinstance(link, h5py.HardLink):
                kind = type(link).__name__.replace("Link", " link").lower()
                raise FormatError(f"{where}: {child!r} is a {kind}; spikeflow reads only plain groups and datasets")
            obj = group[key]
            addr = h5py.h5o.get_info(obj.id).addr
            if addr in seen:
                raise FormatError(f"{where}: {child!r} is an object reached twice (a hard-link loop or alias)")
            seen.add(addr)
            count += 1
            if count > max_objects:
                raise FormatError(f"{where}: more than {max_objects} objects")
            if isinstance(obj, h5py.Group):
                visit(obj, child, depth + 1)
            elif isinstance(obj, h5py.Dataset):
                _check_dataset(obj, child, budget, filters, max_ratio, where)
                check_attrs(obj, child)
            else:
                raise FormatError(f"{where}: {child!r} is a {type(obj).__name__}, expected a group or dataset")

    seen.add(h5py.h5o.get_info(h5file.id).addr)
    visit(h5file, "/", 0)


def _check_extent(shape, dtype, budget: int, where: str, what: str) -> None:
    import h5py
    import numpy as np

    shape = () if shape is None else tuple(shape)
    count = int(np.prod(shape, dtype=object)) if shape else 1
    string = h5py.check_string_dtype(dtype)
    if h5py.check_vlen_dtype(dtype) is not None or (string is not None and string.length is None):
        # Variable-length data: each element takes at least 16 bytes of the file (its heap id).
        need = count * 16
    else:
        need = count * dtype.itemsize
    if need > budget:
        raise FormatError(f"{where}: {what} declares {count:,} elements of {dtype} ({need:,} bytes), more than the file's {budget:,} bytes can hold")


def _check_dataset(dset, name: str, file_bytes: int, filters: tuple[int, ...], max_ratio: float, where: str) -> None:
    import h5py

    dcpl = dset.id.get_create_plist()
    if dcpl.get_layout() not in (h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED, h5py.h5d.COMPACT):
        raise FormatError(f"{where}: dataset {name!r} uses virtual storage (it reads other files)")
    if dcpl.get_external_count():
        raise FormatError(f"{where}: dataset {name!r} stores its data in external files")
    used = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
    bad = [f for f in used if f not in filters]
    if bad:
        raise FormatError(f"{where}: dataset {name!r} uses HDF5 filter {bad[0]} ({_PY_FILTER_NAMES.get(bad[0], 'not allowed here')}); allowed: {[_PY_FILTER_NAMES.get(f, f) for f in filters]}")
    ratio = max_ratio if used else 1.0
    _check_extent(dset.shape, dset.dtype, int(file_bytes * ratio), where, f"dataset {name!r}")
    nbytes = dset.size * dset.dtype.itemsize
    if not used and dset.dtype.kind != "O" and nbytes and dset.id.get_storage_size() < nbytes:
        # Unallocated parts would read back as fill values: data the writer never wrote.
        raise FormatError(f"{where}: dataset {name!r} declares {nbytes:,} bytes but stores {dset.id.get_storage_size():,}")
    if not used:  # compressed data is read in bounded pieces by its reader, never whole
        check_memory(nbytes, where, f"dataset {name!r}")


# ---------------------------------------------------------------------------------- hang guard


def run_guarded(parse: Callable[[], Any], where: str, timeout: float | None = None) -> None:
    """Run ``parse()`` in a forked child first; refuse the input if it hangs or crashes there.

    Returns once the child has finished (whatever it raised: the caller's own parse reports
    errors with their full message). Raises ``FormatError`` when the child ran longer than
    ``timeout`` seconds (default :data:`HANG_TIMEOUT_S`) or died from a signal (a crash in C code).
    Without ``os.fork`` (Windows) the parse is not guarded.
    """
    if not hasattr(os, "fork"):
        return
    timeout = HANG_TIMEOUT_S if timeout is None else timeout
    pid = os.fork()
    if pid == 0:  # child: parse, report by exit status only, never run the parent's cleanup
        code = 0
        try:
            parse()
        except BaseException:  # noqa: BLE001 - the exit status is the report
            code = 1
        os._exit(code)
    deadline = time.monotonic() + timeout
    pause = 0.0005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise FormatError(f"{where}: parsing did not finish within {timeout:g} s (a damaged file that hangs the HDF5 library)")
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
    if os.WIFSIGNALED(status):
        raise FormatError(f"{where}: the parser crashed on this file (signal {os.WTERMSIG(status)}): a damaged file")


def file_bytes(path: str | os.PathLike, where: str, max_bytes: int) -> bytes:
    """Read a whole (foreign) file after checking its size against ``max_bytes`` and memory."""
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise FormatError(f"{where}: {size:,} bytes exceed the limit of {max_bytes:,}")
        check_memory(size, where)
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise FormatError(f"{where}: is a folder, expected a file") from None
    except OSError as err:
        raise FormatError(f"{where}: cannot read: {err.strerror or err}") from None


__all__ = [
    "SEAL_SIZE", "seal_file", "seal_bytes", "read_sealed", "verify_sealed", "verify_sealed_bytes", "sealed_hdf5_writer", "write_sealed_bytes",
    "open_sealed_hdf5", "as_format_error", "check_hdf5_tree", "check_memory", "run_guarded", "file_bytes",
    "fsync_path",
]
