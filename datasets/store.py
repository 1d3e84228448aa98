"""HDF5 event store: many samples of events in one file, read a sample or a time window cheaply.

Layout (version 2)::

    user block        512 bytes: the seal, SHA-256 of the rest of the file (spikeflow._checked_files)
    /                 attrs: format="spikeflow-events", version=2, complete=1, sensor_size=(W, H, P),
                             fields=[...], dtypes=[...], n_samples, n_events, block, metadata (JSON)
    /events           1-D compound (x, y, t, p), chunked and compressed; all samples back to back
    /samples/offsets  int64 [n_samples + 1]: sample i is events[offsets[i]:offsets[i + 1]]
    /samples/labels   int64 [n_samples]
    /index/block_t    int64: t at every ``block``-th event, a coarse time index for window reads
    /index/block_crc  int64 [n_blocks]: CRC-32 of each block's event bytes

Timestamps are non-decreasing within each sample, so a time window is found by a search in the
coarse index (in memory) plus a search in at most two blocks of ``t``; only the blocks that hold the
window are read (in one HDF5 call). Reads verify the blocks' CRCs (HDF5's own checksums cannot see
a chunk that a damaged chunk index points to the wrong place), and the attribute ``header_crc``
covers the layout attributes and the small index arrays, so a damaged file gives an error, never
wrong events: what reads back is exactly what the writer checked and wrote. Before that, opening a
store verifies the seal over the whole file, so libhdf5 never parses a damaged file (a damaged HDF5
file can make it loop forever), and checks the file's structure (no links, declared sizes that the
file can hold). Writers (new stores and appends) hold a lock on the store, so two processes that
append to one store both land. Every error on reading or writing is a ``FormatError`` or ``DataError``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from spikeflow._atomic import atomic_path, file_lock
from spikeflow._checked_files import (
    FILTER_DEFLATE, FILTER_LZF, FILTER_SHUFFLE, SEAL_SIZE, as_format_error, check_hdf5_tree, seal_file, verify_sealed,
    verify_sealed_bytes,
)
from spikeflow.datasets.events import EVENT_DTYPE, check_events, check_index, check_integer_times, check_sensor_size
from spikeflow.errors import DataError, FormatError

FORMAT = "spikeflow-events"
VERSION = 2
MAX_SENSOR = 1 << 16
ALLOWED_FIELDS = ("x", "y", "t", "p")


#: Filters a store may use (``compression=`` "lzf" or "gzip", with or without shuffle), and the most
#: its compressed events may expand: a file declaring more is refused before anything is read.
STORE_FILTERS = (FILTER_LZF, FILTER_DEFLATE, FILTER_SHUFFLE)
MAX_COMPRESSION = 1000.0


class EventStoreWriter:
    """Write samples of events into a new store (or append to an existing one), atomically.

    Events are buffered and written in chunks of ``chunk_events``; the file appears at ``path``
    only when :meth:`close` succeeds (use as a context manager).

    Example:
        >>> import tempfile, pathlib
        >>> from spikeflow.datasets.events import make_events
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "ev.h5"
        >>> with EventStoreWriter(path, sensor_size=(34, 34, 2)) as w:
        ...     w.append(make_events([1, 2], [3, 4], [10, 20], [1, 0]), label=7)
        0
        >>> with EventStore(path) as s:
        ...     s[0][1], s.read_window(0, 15, 100)["t"].tolist()
        (7, [20])
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sensor_size: Sequence[int],
        dtype: np.dtype = EVENT_DTYPE,
        metadata: dict | None = None,
        append: bool = False,
        chunk_events: int = 4096,
        compression: str | None = "lzf",
    ):
        import h5py

        self.path = Path(path)
        self.sensor_size = check_sensor_size(sensor_size, str(self.path))
        try:
            self.dtype = np.dtype(dtype)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{self.path}: dtype must be a structured event dtype, got {dtype!r} ({exc})") from None
        if metadata is not None and not isinstance(metadata, dict):
            raise DataError(f"{self.path}: metadata must be a dict, got {type(metadata).__name__}")
        self.metadata = dict(metadata or {})
        _metadata_json(self.metadata, str(self.path))
        _check_layout_args(self.sensor_size, self.dtype, str(self.path))
        if isinstance(chunk_events, bool) or not isinstance(chunk_events, (int, np.integer)) or not 1 <= chunk_events <= 1 << 24:
            raise DataError(f"{self.path}: chunk_events must be an int in [1, 2**24], got {chunk_events!r}")
        if compression not in (None, "lzf", "gzip"):
            raise DataError(f"{self.path}: compression must be None, 'lzf' or 'gzip', got {compression!r}")
        # Held until close: a second writer (or appender) of this store waits instead of losing data.
        self._lock = file_lock(self.path)
        self._lock.__enter__()
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._closed = False
        try:
            if append and self.path.exists():
                with EventStore(self.path) as old:
                    if old.sensor_size != self.sensor_size or old.dtype != self.dtype:
                        raise DataError(
                            f"{self.path}: cannot append events of sensor {self.sensor_size}, dtype {self.dtype} "
                            f"to a store of sensor {old.sensor_size}, dtype {old.dtype}"
                        )
                    self.offsets = [int(v) for v in old.offsets]
                    self.labels = [int(v) for v in old.labels]
                    self.block = old.block
                    self.block_t = [int(v) for v in old.block_t]
                    self.block_crc = [int(v) for v in old.block_crc]
                    # A partial last block keeps its running CRC: crc32 continues from it.
                    self._run = self.block_crc.pop() if old.n_events % old.block else 0
                    self.metadata = {**old.metadata, **self.metadata}
                shutil.copyfile(self.path, self._tmp)
                self.file = h5py.File(self._tmp, "r+")
                self.file.attrs["complete"] = 0
                for name in ("offsets", "labels"):
                    del self.file["samples"][name]
                del self.file["index"]["block_t"]
                del self.file["index"]["block_crc"]
            else:
                self.offsets, self.labels, self.block_t, self.block_crc = [0], [], [], []
                self._run = 0
                self.block = int(chunk_events)
                self.file = h5py.File(self._tmp, "w", userblock_size=SEAL_SIZE)
                self.file.attrs["complete"] = 0
                # One compound dataset: a window or a sample is one HDF5 read, not one per field.
                self.file.create_dataset(
                    "events", shape=(0,), maxshape=(None,), chunks=(self.block,), dtype=self.dtype, compression=compression
                )
                self.file.create_group("samples")
                self.file.create_group("index")
        except BaseException:
            self._abort()
            raise
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._written = self.offsets[-1]

    def append(self, events: np.ndarray, label: int = -1) -> int:
        """Add one sample (time-sorted events within the sensor); return its index."""
        if self._closed:
            raise DataError(f"{self.path}: writer is closed")
        what = f"{self.path}: sample {len(self.labels)}"
        check_events(events, self.sensor_size, sorted_t=True, what=what)
        check_integer_times(events, what)
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not -(2**63) <= int(label) < 2**63:
            raise DataError(f"{what}: label must be an int64 integer, got {label!r}")
        if set(events.dtype.names) != set(self.dtype.names):
            raise DataError(f"{what}: fields {events.dtype.names} differ from the store's {self.dtype.names}")
        # By name: astype between structured dtypes would match fields by position.
        converted = np.empty(len(events), dtype=self.dtype)
        for name in self.dtype.names:
            converted[name] = events[name]
        self._buffer.append(converted)
        self._buffered += len(events)
        self.offsets.append(self.offsets[-1] + len(events))
        self.labels.append(int(label))
        if self._buffered >= self.block * 8:
            self._flush()
        return len(self.labels) - 1

    def _flush(self) -> None:
        if not self._buffer:
            return
        chunk = np.concatenate(self._buffer)
        start, stop = self._written, self._written + len(chunk)
        dset = self.file["events"]
        dset.resize((stop,))
        dset[start:stop] = chunk
        first_block = -(-start // self.block)
        positions = np.arange(first_block * self.block, stop, self.block)
        self.block_t.extend(int(v) for v in chunk["t"][positions - start])
        pos = start
        while pos < stop:
            end = min(stop, (pos // self.block + 1) * self.block)
            self._run = zlib.crc32(chunk[pos - start : end - start].tobytes(), self._run)
            if end % self.block == 0:
                self.block_crc.append(self._run)
                self._run = 0
            pos = end
        self._written = stop
        self._buffer, self._buffered = [], 0

    def close(self) -> Path:
        """Write the index and attributes, then move the file into place."""
        if self._closed:
            return self.path
        try:
            self._flush()
            f = self.file
            if self._written % self.block:
                self.block_crc.append(self._run)
            arrays = {
                "samples/offsets": np.asarray(self.offsets, dtype=np.int64),
                "samples/labels": np.asarray(self.labels, dtype=np.int64),
                "index/block_t": np.asarray(self.block_t, dtype=np.int64),
                "index/block_crc": np.asarray(self.block_crc, dtype=np.int64),
            }
            for name, arr in arrays.items():
                f.create_dataset(name, data=arr)
            attrs = dict(
                format=FORMAT, version=VERSION, sensor_size=list(self.sensor_size),
                fields=list(self.dtype.names), dtypes=[self.dtype[n].str for n in self.dtype.names],
                n_samples=len(self.labels), n_events=self.offsets[-1], block=self.block,
                metadata=_metadata_json(self.metadata, str(self.path)),
            )
            f.attrs.update(attrs)
            f.attrs["header_crc"] = _header_crc(attrs, arrays)
            # Written last: a reader treats a file without it as half-written.
            f.attrs["complete"] = 1
            f.close()
            seal_file(self._tmp)
            self._atomic.__exit__(None, None, None)
        except BaseException:
            self._abort()
            raise
        self._closed = True
        self._lock.__exit__(None, None, None)
        return self.path

    def _abort(self) -> None:
        self._closed = True
        try:
            if getattr(self, "file", None) is not None and self.file.id.valid:
                self.file.close()
        finally:
            try:
                self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)
            finally:
                self._lock.__exit__(None, None, None)

    def __enter__(self) -> "EventStoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif not self._closed:
            self._abort()


def write_store(path: str | os.PathLike, samples: Sequence[np.ndarray], labels: Sequence[int], sensor_size: Sequence[int], metadata: dict | None = None, **kwargs) -> Path:
    """Write a list of event arrays and their labels to a new store."""
    if len(samples) != len(labels):
        raise DataError(f"{path}: {len(samples)} samples but {len(labels)} labels")
    dtype = samples[0].dtype if len(samples) else EVENT_DTYPE
    with EventStoreWriter(path, sensor_size, dtype=dtype, metadata=metadata, **kwargs) as w:
        for ev, label in zip(samples, labels):
            w.append(ev, label)
    return Path(path)


def _metadata_json(metadata: dict, where: str) -> str:
    try:
        return json.dumps(metadata, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise DataError(f"{where}: metadata must be JSON-serialisable (str keys; str, number, bool, None, list, dict values): {exc}") from None


def _header_crc(attrs: dict, arrays: dict) -> int:
    keys = ("format", "version", "sensor_size", "fields", "dtypes", "n_samples", "n_events", "block", "metadata")
    text = json.dumps([attrs[k] for k in keys])
    crc = zlib.crc32(text.encode())
    for name in sorted(arrays):
        crc = zlib.crc32(np.ascontiguousarray(arrays[name], dtype="<i8").tobytes(), crc)
    return crc


def _check_layout_args(sensor_size: tuple, dtype: np.dtype, where: str) -> None:
    if len(sensor_size) != 3 or not all(1 <= s <= MAX_SENSOR for s in sensor_size):
        raise DataError(f"{where}: sensor_size must be 3 ints in [1, {MAX_SENSOR}], got {sensor_size}")
    names = dtype.names or ()
    if "t" not in names or any(n not in ALLOWED_FIELDS for n in names):
        raise DataError(f"{where}: event fields must include 't' and come from {ALLOWED_FIELDS}, got {names}")
    for n in names:
        if dtype[n].kind not in "iub":
            raise DataError(f"{where}: field {n!r} must be integer or bool, got {dtype[n]}")


class EventStore:
    """Read a store written by :class:`EventStoreWriter`: ``store[i] -> (events, label)``.

    Args:
        source: a path or a binary file object (e.g. ``io.BytesIO``).

    Raises:
        FormatError: the file is missing, not HDF5, not an event store, half-written, of a newer
            version, or inconsistent (lengths, offsets, index, sensor).
    """

    def __init__(self, source: str | os.PathLike | io.IOBase):
        import h5py

        self.where = str(source) if not hasattr(source, "read") else getattr(source, "name", "<stream>")
        self.file = None
        # The seal is checked over the whole file before libhdf5 parses any of it.
        if hasattr(source, "read"):
            with as_format_error(f"{self.where}: cannot read event store stream"):
                source.seek(0)
                data = source.read()
            source = io.BytesIO(verify_sealed_bytes(data, self.where))
            size = len(data)
        else:
            size = verify_sealed(source, self.where)
        with as_format_error(f"{self.where}: not a readable HDF5 event store"):
            self.file = h5py.File(source, "r")
        try:
            with as_format_error(f"{self.where}: damaged event store"):
                check_hdf5_tree(self.file, self.where, size, filters=STORE_FILTERS, max_ratio=MAX_COMPRESSION)
                self._load_header(size)
        except BaseException:
            self.close()
            raise

    def _load_header(self, size: int) -> None:
        f, w = self.file, self.where
        attrs = f.attrs
        if attrs.get("format") != FORMAT:
            raise FormatError(f"{w}: not a spikeflow event store (attribute 'format' is {attrs.get('format')!r}, expected {FORMAT!r})")
        version = int(attrs.get("version", -1))
        if version > VERSION:
            raise FormatError(f"{w}: event store version {version} is newer than supported version {VERSION}")
        if version != VERSION:
            raise FormatError(f"{w}: unknown event store version {version}, expected {VERSION}")
        if int(attrs.get("complete", 0)) != 1:
            raise FormatError(f"{w}: half-written event store (attribute 'complete' is not set)")
        sensor = np.asarray(attrs["sensor_size"]).astype(np.int64).reshape(-1)
        fields = [str(v) for v in np.asarray(attrs["fields"]).reshape(-1)]
        dtypes = [str(v) for v in np.asarray(attrs["dtypes"]).reshape(-1)]
        if len(fields) != len(dtypes) or len(set(fields)) != len(fields):
            raise FormatError(f"{w}: attributes 'fields' {fields} and 'dtypes' {dtypes} do not match")
        try:
            self.dtype = np.dtype([(n, np.dtype(d)) for n, d in zip(fields, dtypes)])
            self.sensor_size = tuple(int(s) for s in sensor)
            _check_layout_args(self.sensor_size, self.dtype, w)
        except (DataError, TypeError, ValueError) as exc:
            raise FormatError(f"{w}: bad layout attributes: {exc}") from exc
        self.n_samples = int(attrs["n_samples"])
        self.n_events = int(attrs["n_events"])
        self.block = int(attrs["block"])
        if self.n_samples < 0 or self.n_events < 0 or self.block < 1:
            raise FormatError(f"{w}: bad counts n_samples={self.n_samples}, n_events={self.n_events}, block={self.block}")
        metadata_text = str(attrs.get("metadata", "{}"))
        self.metadata = json.loads(metadata_text)
        if not isinstance(self.metadata, dict):
            raise FormatError(f"{w}: attribute 'metadata' is not a JSON object")
        n_blocks = -(-self.n_events // self.block)
        small = {
            "samples/offsets": (self.n_samples + 1,),
            "samples/labels": (self.n_samples,),
            "index/block_t": (n_blocks,),
            "index/block_crc": (n_blocks,),
        }
        arrays = {}
        for name, shape in small.items():
            dset = f[name]
            # Stored uncompressed, so a genuine array can never be larger than the file itself.
            if dset.shape != shape or dset.dtype.kind != "i" or dset.size * dset.dtype.itemsize > size:
                raise FormatError(f"{w}: dataset {name!r} has shape {dset.shape}, dtype {dset.dtype}; expected {shape} integers")
            arrays[name] = dset[()].astype(np.int64)
        header = dict(
            format=FORMAT, version=version, sensor_size=list(self.sensor_size), fields=fields, dtypes=dtypes,
            n_samples=self.n_samples, n_events=self.n_events, block=self.block, metadata=metadata_text,
        )
        if int(attrs.get("header_crc", -1)) != _header_crc(header, arrays):
            raise FormatError(f"{w}: header checksum mismatch: the layout attributes or index arrays are damaged")
        self.offsets = arrays["samples/offsets"]
        self.labels = arrays["samples/labels"]
        self.block_t = arrays["index/block_t"]
        self.block_crc = arrays["index/block_crc"]
        if self.offsets[0] != 0 or self.offsets[-1] != self.n_events or np.any(np.diff(self.offsets) < 0):
            raise FormatError(f"{w}: 'samples/offsets' must rise from 0 to n_events={self.n_events}")
        dset = f["events"]
        if dset.shape != (self.n_events,) or dset.dtype != self.dtype:
            raise FormatError(f"{w}: dataset 'events' has shape {dset.shape}, dtype {dset.dtype}; expected ({self.n_events},) {self.dtype}")
        chunk = (dset.chunks or (self.n_events or 1,))[0]
        if self.n_events and dset.id.get_num_chunks() != -(-self.n_events // chunk):
            raise FormatError(f"{w}: dataset 'events' is missing chunks (truncated or half-written)")
        self._events = dset

    # -- reading -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.n_samples

    def __getitem__(self, index) -> tuple[np.ndarray, int]:
        i = check_index(index, self.n_samples, self.where)
        return self.read(i), int(self.labels[i])

    def read(self, index) -> np.ndarray:
        """All events of sample ``index``."""
        i = check_index(index, self.n_samples, self.where)
        return self._read_range(int(self.offsets[i]), int(self.offsets[i + 1]), i)

    def read_window(self, index, t_start: float, t_end: float) -> np.ndarray:
        """Events of sample ``index`` with ``t_start <= t < t_end`` (µs), reading only that part."""
        i = check_index(index, self.n_samples, self.where)
        if not t_end >= t_start:
            raise DataError(f"{self.where}: window end {t_end} is before its start {t_start}")
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        if a >= b:
            return np.empty(0, dtype=self.dtype)
        # The coarse index brackets both ends of the window; one read covers the bracket.
        k_lo, k_hi = -(-a // self.block), -(-b // self.block)
        first_t = self.block_t[k_lo:k_hi]
        j0 = int(np.searchsorted(first_t, t_start, side="left"))
        j1 = int(np.searchsorted(first_t, t_end, side="left"))
        lo = a if j0 == 0 else (k_lo + j0 - 1) * self.block
        hi = b if k_lo + j1 >= k_hi else (k_lo + j1) * self.block
        seg = self._read_range(lo, hi, i)
        return seg[np.searchsorted(seg["t"], t_start, side="left") : np.searchsorted(seg["t"], t_end, side="left")]

    def _read_range(self, start: int, stop: int, sample: int) -> np.ndarray:
        """Events ``start:stop``, read as whole blocks whose CRCs are checked."""
        if stop <= start:
            return np.empty(0, dtype=self.dtype)
        k0, k1 = start // self.block, -(-stop // self.block)
        lo, hi = k0 * self.block, min(k1 * self.block, self.n_events)
        with as_format_error(f"{self.where}: sample {sample}: cannot read events {start}:{stop}"):
            data = self._events[lo:hi]
        if data.dtype != self.dtype or data.shape != (hi - lo,):
            raise FormatError(f"{self.where}: sample {sample}: events {lo}:{hi} read back as {data.dtype}, {data.shape}")
        for k in range(k0, k1):
            a, b = (k - k0) * self.block, min((k - k0 + 1) * self.block, hi - lo)
            if zlib.crc32(data[a:b].tobytes()) != self.block_crc[k] & 0xFFFFFFFF:
                raise FormatError(f"{self.where}: block {k} (events {lo + a}:{lo + b}) fails its checksum")
        return data[start - lo : stop - lo]

    def close(self) -> None:
        """Close the file (reads afterwards fail)."""
        if self.file is not None:
            try:
                self.file.close()
            except Exception:  # noqa: BLE001 - closing a damaged file must not mask the real error
                pass
            self.file = None

    def __enter__(self) -> "EventStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
