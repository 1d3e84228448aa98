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
  :func:`parse_isolated` runs the parse in a helper process with a time limit and returns plain
  data (dicts, strings, arrays); a parse that loops or crashes inside a C library becomes a
  ``FormatError`` and never blocks the caller.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from spikeflow._atomic import atomic_path
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
    text = head[len(SEAL_MAGIC):].split(b"\x00", 1)[0]
    if head[len(SEAL_MAGIC) + len(text):].strip(b"\x00"):
        raise FormatError(f"{where}: damaged checksum header (its padding is not zero)")
    lines = text.decode("ascii", "replace").splitlines()
    fields = dict(line.split(" ", 1) for line in lines if " " in line)
    digest, length = fields.get("sha256", ""), fields.get("length", "")
    if len(digest) != 64 or not length.isdigit() or head != _seal_header(digest, int(length)):
        # Byte for byte what the writer wrote: no change anywhere in the file goes unnoticed.
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


def load_sealed_hdf5(path: str | os.PathLike, reader: Callable[[Any, str], Any], where: str | None = None, **limits) -> Any:
    """Verify a sealed HDF5 file, then read it with ``reader(h5file, where)`` in the parse helper.

    The helper opens the verified bytes (not the path again: no window for a change), runs
    :func:`check_hdf5_tree` with ``limits``, then ``reader`` (a module-level function returning
    plain data: dicts, lists, strings, numbers, arrays). So even a crafted file with a valid seal
    cannot hang or crash the caller. Errors come back as ``FormatError`` naming the file.
    """
    where = where or str(path)
    data = read_sealed(path, where)
    return parse_isolated(_read_hdf5_image, data, where, args=(_name_of(reader), limits))


def _read_hdf5_image(data: bytes, where: str, reader: str, limits: dict) -> Any:
    import importlib

    import h5py

    module, name = reader.split(":")
    with as_format_error(where):
        with h5py.File(io.BytesIO(data), "r") as f:
            check_hdf5_tree(f, where, len(data), **limits)
            return getattr(importlib.import_module(module), name)(f, where)


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
    whole: bool = False,
) -> None:
    """Check every object of an open HDF5 file before any data is read.

    Refuses soft, external and user-defined links, an object reached twice, nesting deeper than
    ``max_depth``, more than ``max_objects`` objects, external or virtual storage, filters not in
    ``filters``, and datasets or attributes that declare more bytes than the file could hold
    (``file_bytes``, times ``max_ratio`` for compressed datasets) or than memory holds (with
    ``whole``, the caller reads every dataset: their total must fit in memory).

    Raises:
        FormatError: naming the object and the rule.
    """
    import h5py
    from h5py import h5a, h5l, h5o

    seen = {h5o.get_info(h5file.id).addr}
    count = total = 0
    budget = max(file_bytes, 1)
    link_kinds = {h5l.TYPE_SOFT: "soft link", h5l.TYPE_EXTERNAL: "external link"}

    def check_attrs(oid, n_attrs: int, name: str) -> None:
        for i in range(n_attrs):
            aid = h5a.open(oid, index=i)
            _check_extent(aid.shape, aid.dtype, budget, where, f"{name} attribute {aid.name.decode(errors='replace')!r}")

    # The low-level API: one call per check instead of h5py's object wrappers (10x faster).
    def visit(gid, name: str, depth: int) -> None:
        nonlocal count, total
        if depth > max_depth:
            raise FormatError(f"{where}: group {name!r} is nested deeper than {max_depth} levels")
        for key in gid:
            child = f"{name.rstrip('/')}/{key.decode(errors='replace')}"
            link = gid.links.get_info(key)
            if link.type != h5l.TYPE_HARD:
                kind = link_kinds.get(link.type, "user-defined link")
                raise FormatError(f"{where}: {child!r} is a {kind}; spikeflow reads only plain groups and datasets")
            if link.u in seen:
                raise FormatError(f"{where}: {child!r} is an object reached twice (a hard-link loop or alias)")
            seen.add(link.u)
            count += 1
            if count > max_objects:
                raise FormatError(f"{where}: more than {max_objects} objects")
            oid = h5o.open(gid, key)
            info = h5o.get_info(oid)
            check_attrs(oid, info.num_attrs, child)
            if info.type == h5o.TYPE_GROUP:
                visit(oid, child, depth + 1)
            elif info.type == h5o.TYPE_DATASET:
                _check_dataset(oid, child, budget, filters, max_ratio, where)
                total += oid.shape and int(np.prod(oid.shape, dtype=object)) * oid.dtype.itemsize or oid.dtype.itemsize
            else:
                raise FormatError(f"{where}: {child!r} is a named datatype or unknown object, expected a group or dataset")

    check_attrs(h5file.id, h5o.get_info(h5file.id).num_attrs, "/")
    visit(h5file.id, "/", 0)
    if whole:
        check_memory(total, where, "reading every dataset")


def _check_extent(shape, dtype, budget: int, where: str, what: str) -> None:
    import h5py

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


def _check_dataset(did, name: str, file_bytes: int, filters: tuple[int, ...], max_ratio: float, where: str) -> None:
    import h5py

    dcpl = did.get_create_plist()
    if dcpl.get_layout() not in (h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED, h5py.h5d.COMPACT):
        raise FormatError(f"{where}: dataset {name!r} uses virtual storage (it reads other files)")
    if dcpl.get_external_count():
        raise FormatError(f"{where}: dataset {name!r} stores its data in external files")
    used = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
    bad = [f for f in used if f not in filters]
    if bad:
        raise FormatError(f"{where}: dataset {name!r} uses HDF5 filter {bad[0]} ({_PY_FILTER_NAMES.get(bad[0], 'not allowed here')}); allowed: {[_PY_FILTER_NAMES.get(f, f) for f in filters]}")
    ratio = max_ratio if used else 1.0
    shape, dtype = did.shape, did.dtype
    _check_extent(shape, dtype, int(file_bytes * ratio), where, f"dataset {name!r}")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize if shape else dtype.itemsize
    if not used and dtype.kind != "O" and nbytes and did.get_storage_size() < nbytes:
        # Unallocated parts would read back as fill values: data the writer never wrote.
        raise FormatError(f"{where}: dataset {name!r} declares {nbytes:,} bytes but stores {did.get_storage_size():,}")
    if not used:  # compressed data is read in bounded pieces by its reader, never whole
        check_memory(nbytes, where, f"dataset {name!r}")


# ---------------------------------------------------------------------------------- hang guard


class _Worker:
    """A helper process, forked on first use, that runs parses of untrusted files one at a time.

    A parse that loops inside a C library (libhdf5 does on some damaged files) cannot be stopped
    in-process: the worker is killed instead and the next call forks a new one. Forking once,
    not per file, keeps a guarded parse about as fast as an unguarded one. Results come back as
    JSON plus raw array bytes (never pickle: the worker parsed untrusted data).
    """

    def __init__(self) -> None:
        self.pid = 0
        self.owner = 0
        self.lock = threading.Lock()

    def _start(self) -> None:
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: serve requests until the parent closes its end
            # Keep only its two pipes: an inherited descriptor (a file lock, a socket, another
            # pipe's write end) would otherwise stay open, and locks stay held, while it lives.
            low, high = sorted((down_r, up_w))
            os.closerange(3, low)
            os.closerange(low + 1, high)
            os.closerange(high + 1, _max_fd())
            code = 0
            try:
                import faulthandler
                import gc

                faulthandler.disable()  # a crash here is an expected, reported outcome: no dump on stderr
                gc.freeze()  # leave the parent's objects alone: no copy-on-write of their pages
                _serve(down_r, up_w)
            except BaseException:  # noqa: BLE001 - the parent sees a closed pipe
                code = 1
            os._exit(code)
        os.close(down_r)
        os.close(up_w)
        self.pid, self.owner, self.down, self.up = pid, os.getpid(), down_w, up_r

    def stop(self) -> None:
        if self.pid and self.owner == os.getpid():
            for fd in (self.down, self.up):
                try:
                    os.close(fd)
                except OSError:
                    pass
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except OSError:
                pass
        self.pid = 0

    def run(self, parse: Callable[..., Any], data: bytes, where: str, timeout: float, args: tuple = ()) -> Any:
        with self.lock:
            if not self.pid or self.owner != os.getpid():  # none yet, or inherited through a fork
                self.pid = 0
                self._start()
            head = json.dumps({"fn": _name_of(parse), "where": where, "args": list(args)}).encode()
            try:
                _send(self.down, head)
                _send(self.down, data)
                status = _recv(self.up, time.monotonic() + timeout)
                reply = _recv(self.up, time.monotonic() + timeout)
            except TimeoutError:
                self.stop()
                raise FormatError(f"{where}: parsing did not finish within {timeout:g} s (a damaged file that hangs the HDF5 library)") from None
            except (OSError, EOFError):
                pid = self.pid
                self.stop()
                raise FormatError(f"{where}: the parser crashed on this file (helper process {pid} died): a damaged file") from None
        if status == b"error":
            raise FormatError(reply.decode("utf8", "replace"))
        return _decode(reply)


def _name_of(fn: Callable) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


def _max_fd() -> int:
    try:
        return max(int(os.sysconf("SC_OPEN_MAX")), 1024)
    except (ValueError, OSError):
        return 1 << 16


def _send(fd: int, payload: bytes) -> None:
    view = memoryview(len(payload).to_bytes(8, "little") + payload)
    while view:
        view = view[os.write(fd, view):]


def _recv(fd: int, deadline: float | None) -> bytes:
    import select

    def read(n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise TimeoutError
            chunk = os.read(fd, min(n - len(out), 1 << 20))
            if not chunk:
                raise EOFError
            out += chunk
        return bytes(out)

    return read(int.from_bytes(read(8), "little"))


def _serve(down: int, up: int) -> None:
    import importlib

    while True:
        try:
            head = json.loads(_recv(down, None))
        except EOFError:
            return
        data = _recv(down, None)
        try:
            module, name = head["fn"].split(":")
            result = _encode_tree(getattr(importlib.import_module(module), name)(data, head["where"], *head["args"]))
            status = b"ok"
        except SpikeflowError as err:
            status, result = b"error", str(err).encode()
        except BaseException as err:  # noqa: BLE001 - reported to the parent as a FormatError
            text = str(err).strip().splitlines()[0] if str(err).strip() else ""
            status, result = b"error", f"{head['where']}: not readable ({type(err).__name__}: {text})".encode()
        _send(up, status)
        _send(up, result)


def _encode_tree(tree: Any) -> bytes:
    """dicts of str, bytes, numbers, NumPy arrays and scalars -> JSON + raw array bytes."""
    blobs: list[bytes] = []
    offset = 0

    def enc(v: Any) -> Any:
        nonlocal offset
        if isinstance(v, dict):
            return {"d": {str(k): enc(x) for k, x in v.items()}}
        if isinstance(v, (list, tuple)):
            return {"l": [enc(x) for x in v]}
        if isinstance(v, bytes):
            return {"y": v.decode("latin-1")}
        if isinstance(v, (str, bool, int, float)) or v is None:
            return {"v": v}
        if isinstance(v, (np.ndarray, np.generic)):
            arr = np.asarray(v)
            if arr.dtype.kind == "O":  # variable-length strings: a nested list of bytes or str
                flat = [x.decode("latin-1") if isinstance(x, bytes) else str(x) for x in arr.reshape(-1)]
                kinds = ["b" if isinstance(x, bytes) else "s" for x in arr.reshape(-1)]
                return {"o": [list(arr.shape), flat, kinds]}
            raw = np.ascontiguousarray(arr).tobytes()
            blobs.append(raw)
            offset += len(raw)
            return {"a": [np.lib.format.dtype_to_descr(arr.dtype), list(arr.shape), offset - len(raw), len(raw), isinstance(v, np.generic)]}
        raise TypeError(f"cannot pass a {type(v).__name__} back from the parser")

    head = json.dumps(enc(tree)).encode()
    return len(head).to_bytes(8, "little") + head + b"".join(blobs)


def _decode(payload: bytes) -> Any:
    n = int.from_bytes(payload[:8], "little")
    head, body = json.loads(payload[8 : 8 + n]), memoryview(payload)[8 + n :]

    def dec(v: dict) -> Any:
        kind, x = next(iter(v.items()))
        if kind == "d":
            return {k: dec(e) for k, e in x.items()}
        if kind == "l":
            return [dec(e) for e in x]
        if kind == "y":
            return x.encode("latin-1")
        if kind == "v":
            return x
        if kind == "o":
            shape, flat, kinds = x
            items = [e.encode("latin-1") if k == "b" else e for e, k in zip(flat, kinds)]
            arr = np.empty(len(items), dtype=object)
            arr[:] = items
            return arr.reshape(shape)
        descr, shape, start, size, scalar = x
        arr = np.frombuffer(body[start : start + size], dtype=np.lib.format.descr_to_dtype(descr)).reshape(shape).copy()
        return arr[()] if scalar else arr

    return dec(head)


_WORKER = _Worker()


def parse_isolated(parse: Callable[..., Any], data: bytes, where: str, timeout: float | None = None, args: tuple = ()) -> Any:
    """Run ``parse(data, where)`` in a helper process; return its result, or refuse the input.

    ``parse`` is a module-level function ``parse(data, where, *args)`` (``args`` JSON values)
    returning a tree of dicts, lists, strings, bytes, numbers and NumPy arrays. A ``SpikeflowError`` it raises comes back as a ``FormatError`` with the same
    message, any other exception as a ``FormatError`` naming it. A parse that runs longer than
    ``timeout`` seconds (default :data:`HANG_TIMEOUT_S`) or crashes the helper (a segfault in C
    code) is a ``FormatError`` too, and the helper is replaced. Without ``os.fork`` (Windows)
    the parse runs here, unguarded.
    """
    if not hasattr(os, "fork"):
        with as_format_error(where):
            return parse(data, where, *args)
    return _WORKER.run(parse, data, where, HANG_TIMEOUT_S if timeout is None else timeout, args)


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
    "load_sealed_hdf5", "as_format_error", "check_hdf5_tree", "check_memory", "parse_isolated", "file_bytes",
]
