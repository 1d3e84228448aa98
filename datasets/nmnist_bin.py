"""The N-MNIST / N-Caltech101 ``.bin`` format: 5 bytes per event, with timestamp-overflow markers.

Each record is ``x`` (8 bits), ``y`` (8 bits), then 24 big-endian bits: the polarity in the top bit
and a 23-bit timestamp in µs. A record whose ``y`` byte is 240 is not an event but an overflow
marker: every later timestamp is offset by another 2**13 µs (the increment the original
``eventvision.py`` reader and tonic's ``read_mnist_file`` apply).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from spikeflow._atomic import atomic_path
from spikeflow.datasets.events import EVENT_DTYPE, check_events, check_integer_times
from spikeflow.errors import DataError, FormatError

RECORD_BYTES = 5
OVERFLOW_Y = 240
OVERFLOW_STEP = 2**13
TIME_BITS = 23
NMNIST_SENSOR = (34, 34, 2)
#: A reader refuses files above this many records unless told otherwise (N-MNIST samples hold ~5k).
DEFAULT_MAX_RECORDS = 20_000_000


def encode_nmnist(events: np.ndarray) -> bytes:
    """Encode sorted events into ``.bin`` bytes, inserting overflow markers where needed."""
    if len(events) == 0:
        raise DataError("N-MNIST .bin: cannot encode zero events (a recording holds at least one)")
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    t = events["t"].astype(np.int64)
    p = events["p"].astype(np.int64)
    bad = np.flatnonzero((x < 0) | (x > 255) | (y < 0) | (y >= OVERFLOW_Y))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"N-MNIST .bin: event {i} at (x={x[i]}, y={y[i]}) does not fit (x < 256, y < {OVERFLOW_Y})")
    bad = np.flatnonzero((p != 0) & (p != 1))
    if bad.size:
        raise DataError(f"N-MNIST .bin: event {int(bad[0])} has polarity {p[bad[0]]}, expected 0 or 1")
    if t[0] < 0 or np.any(np.diff(t) < 0):
        i = 0 if t[0] < 0 else int(np.flatnonzero(np.diff(t) < 0)[0]) + 1
        raise DataError(f"N-MNIST .bin: timestamps must be >= 0 and non-decreasing; event {i} has t={t[i]}")
    # Offsets only grow, so each event uses the fewest markers that bring t below 2**23.
    need = np.maximum(0, -(-(t - (2**TIME_BITS - 1)) // OVERFLOW_STEP))
    markers_before = np.maximum.accumulate(need)
    if len(t) + int(markers_before[-1]) > DEFAULT_MAX_RECORDS:
        # A late timestamp costs one 5-byte marker per 8.192 ms: t = 2**40 µs would write 671 MB.
        raise DataError(
            f"N-MNIST .bin: the last event at t={int(t[-1])} µs needs {int(markers_before[-1]):,} overflow markers; "
            f"a file holds at most {DEFAULT_MAX_RECORDS:,} records (t up to ~{(DEFAULT_MAX_RECORDS - len(t)) * OVERFLOW_STEP / 1e6:.0f} s)"
        )
    raw_t = t - markers_before * OVERFLOW_STEP
    total = len(t) + int(markers_before[-1])
    rec = np.zeros((total, RECORD_BYTES), dtype=np.uint8)
    # Position of each event after the markers inserted before it.
    pos = np.arange(len(t)) + markers_before
    is_event = np.zeros(total, dtype=bool)
    is_event[pos] = True
    rec[~is_event, 1] = OVERFLOW_Y
    word = (p << TIME_BITS) | raw_t
    rec[pos, 0] = x
    rec[pos, 1] = y
    rec[pos, 2] = (word >> 16) & 0xFF
    rec[pos, 3] = (word >> 8) & 0xFF
    rec[pos, 4] = word & 0xFF
    return rec.tobytes()


def write_nmnist_bin(path: str | os.PathLike, events: np.ndarray, sensor_size=NMNIST_SENSOR) -> Path:
    """Write events to an N-MNIST ``.bin`` file atomically.

    Example:
        >>> import tempfile, pathlib
        >>> from spikeflow.datasets.events import make_events
        >>> ev = make_events([1, 2], [3, 4], [10, 9_000_000], [1, 0])
        >>> f = write_nmnist_bin(pathlib.Path(tempfile.mkdtemp()) / "00001.bin", ev)
        >>> read_nmnist_bin(f)["t"].tolist()
        [10, 9000000]
    """
    check_events(events, sensor_size, sorted_t=True, what=f"N-MNIST events for {path}")
    check_integer_times(events, f"N-MNIST events for {path}")
    data = encode_nmnist(events)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def decode_nmnist(data: bytes, sensor_size=NMNIST_SENSOR, source: str = "<bytes>", max_records: int = DEFAULT_MAX_RECORDS, allow_empty: bool = False) -> np.ndarray:
    """Decode ``.bin`` bytes into events; any malformed input raises ``FormatError``."""
    n = len(data)
    if n == 0:
        if allow_empty:
            return np.zeros(0, dtype=EVENT_DTYPE)
        raise FormatError(f"{source}: empty file, expected 5-byte N-MNIST event records")
    if n % RECORD_BYTES:
        raise FormatError(
            f"{source}: {n} bytes is not a multiple of {RECORD_BYTES}; truncated after record {n // RECORD_BYTES}"
        )
    if n // RECORD_BYTES > max_records:
        raise FormatError(f"{source}: {n // RECORD_BYTES} records exceed the limit of {max_records}")
    rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_BYTES).astype(np.int64)
    marker = rec[:, 1] == OVERFLOW_Y
    offset = np.cumsum(marker) * OVERFLOW_STEP
    ev = rec[~marker]
    if len(ev) == 0 and not allow_empty:
        raise FormatError(f"{source}: only overflow markers, no events")
    t = ((ev[:, 2] & 0x7F) << 16 | ev[:, 3] << 8 | ev[:, 4]) + offset[~marker]
    events = np.empty(len(ev), dtype=EVENT_DTYPE)
    events["x"] = ev[:, 0]
    events["y"] = ev[:, 1]
    events["t"] = t
    events["p"] = (ev[:, 2] >> 7).astype(bool)
    w, h, _ = sensor_size
    bad = np.flatnonzero((ev[:, 0] >= w) | (ev[:, 1] >= h))
    if bad.size:
        i = int(bad[0])
        raise FormatError(f"{source}: event {i} at (x={ev[i, 0]}, y={ev[i, 1]}) lies outside the {w}x{h} sensor")
    down = np.flatnonzero(np.diff(t) < 0)
    if down.size:
        i = int(down[0]) + 1
        raise FormatError(f"{source}: timestamps decrease at event {i} ({int(t[i - 1])} -> {int(t[i])} µs)")
    return events


def read_nmnist_bin(source: str | os.PathLike | io.IOBase | bytes, sensor_size=NMNIST_SENSOR, max_records: int = DEFAULT_MAX_RECORDS, allow_empty: bool = False) -> np.ndarray:
    """Read an N-MNIST ``.bin`` file (path, bytes or binary file object) into events.

    Raises:
        FormatError: the file is missing, empty, truncated, too large, or holds events outside
            ``sensor_size`` or timestamps that go backwards.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_nmnist(bytes(source), sensor_size, "<bytes>", max_records, allow_empty)
    if hasattr(source, "read"):
        name = getattr(source, "name", "<stream>")
        try:
            data = source.read(max_records * RECORD_BYTES + 1)
        except (OSError, ValueError) as exc:
            raise FormatError(f"{name}: cannot read N-MNIST stream: {exc}") from exc
        if len(data) > max_records * RECORD_BYTES:
            raise FormatError(f"{name}: more than {max_records} records exceed the limit of {max_records}")
        return decode_nmnist(data, sensor_size, name, max_records, allow_empty)
    path = Path(source)
    try:
        size = path.stat().st_size
        if size > max_records * RECORD_BYTES:
            raise FormatError(f"{path}: {size // RECORD_BYTES} records exceed the limit of {max_records}")
        data = path.read_bytes()
    except OSError as exc:
        raise FormatError(f"{path}: cannot read N-MNIST file: {exc.strerror or exc}") from exc
    return decode_nmnist(data, sensor_size, str(path), max_records, allow_empty)
