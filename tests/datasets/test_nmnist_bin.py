"""N-MNIST .bin: round trip through tonic's own reader, overflow markers, fuzzed reader."""

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikeflow.datasets.events import make_events
from spikeflow.datasets.nmnist_bin import OVERFLOW_Y, encode_nmnist, read_nmnist_bin, write_nmnist_bin
from spikeflow.errors import DataError, FormatError, SpikeflowError



def fuzz(n):
    """Hypothesis settings for n cases: no deadline (shared CPUs), no example database on disk."""
    return settings(max_examples=n, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def tonic_read(data: bytes):
    import tonic

    return tonic.io.read_mnist_file(io.BytesIO(data), dtype=tonic.datasets.NMNIST.dtype, is_stream=True)


@st.composite
def event_arrays(draw, max_events=30):
    n = draw(st.integers(1, max_events))
    xs = draw(st.lists(st.integers(0, 33), min_size=n, max_size=n))
    ys = draw(st.lists(st.integers(0, 33), min_size=n, max_size=n))
    ps = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    # Mostly small gaps, sometimes one that needs one or many overflow markers.
    big = st.sampled_from([2**23 - 1, 2**23 + 8191, 2**23 + 3 * 8192])
    gaps = draw(st.lists(st.one_of(st.integers(0, 1000), st.integers(0, 10), big), min_size=n, max_size=n))
    return make_events(xs, ys, np.cumsum(gaps), ps)


def seeded_events(n, seed, n_big=0):
    """Random valid events from a seed (cheaper for hypothesis than drawing every field)."""
    rng = np.random.default_rng(seed)
    gaps = rng.integers(0, 1000, n)
    gaps[rng.integers(0, n, n_big)] += 2**23
    return make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), np.cumsum(gaps), rng.integers(0, 2, n))


fast_events = st.builds(seeded_events, st.integers(1, 40), st.integers(0, 2**32), st.integers(0, 2))


@fuzz(150)
@given(st.one_of(event_arrays(), fast_events))
def test_round_trip_through_tonic_reader(ev):
    data = encode_nmnist(ev)
    theirs = tonic_read(data)
    for f in "xytp":
        assert np.array_equal(theirs[f].astype(np.int64), ev[f].astype(np.int64)), f
    ours = read_nmnist_bin(data)
    assert np.array_equal(ours, ev)


def test_file_round_trip_and_overflow_markers(tmp_path):
    ev = make_events([0, 33, 5], [0, 33, 7], [0, 2**23 + 5, 3 * 2**23], [1, 0, 1])
    path = write_nmnist_bin(tmp_path / "00001.bin", ev)
    data = path.read_bytes()
    markers = np.frombuffer(data, np.uint8).reshape(-1, 5)[:, 1] == OVERFLOW_Y
    assert markers.sum() >= 2 and len(data) % 5 == 0
    assert np.array_equal(read_nmnist_bin(path), ev)
    import tonic

    theirs = tonic.io.read_mnist_file(str(path), dtype=tonic.datasets.NMNIST.dtype)
    assert theirs["t"].tolist() == ev["t"].tolist()


def test_writer_refuses_what_the_format_cannot_hold(tmp_path):
    with pytest.raises(DataError, match="zero events"):
        encode_nmnist(make_events([], [], [], []))
    with pytest.raises(DataError, match="non-decreasing"):
        encode_nmnist(make_events([1, 1], [1, 1], [10, 5], [0, 0]))
    with pytest.raises(DataError, match="does not fit"):
        encode_nmnist(make_events([1], [240], [0], [0]))
    with pytest.raises(DataError, match="outside"):
        write_nmnist_bin(tmp_path / "a.bin", make_events([34], [1], [0], [0]))
    assert not (tmp_path / "a.bin").exists()


def test_reader_messages():
    with pytest.raises(FormatError, match="empty"):
        read_nmnist_bin(b"")
    assert len(read_nmnist_bin(b"", allow_empty=True)) == 0
    with pytest.raises(FormatError, match="not a multiple of 5; truncated after record 1"):
        read_nmnist_bin(bytes(7))
    with pytest.raises(FormatError, match="outside the 34x34 sensor"):
        read_nmnist_bin(bytes([200, 0, 0, 0, 0]))
    with pytest.raises(FormatError, match="exceed the limit"):
        read_nmnist_bin(bytes(50), max_records=5)
    with pytest.raises(FormatError, match="cannot read"):
        read_nmnist_bin("/nonexistent/x.bin")


def assert_clean(data, **kw):
    """Either a full, valid result or a SpikeflowError; nothing else."""
    try:
        ev = read_nmnist_bin(data, **kw)
    except SpikeflowError:
        return None
    assert len(ev) > 0 and ev["x"].max() < 34 and ev["y"].max() < 34 and np.all(np.diff(ev["t"]) >= 0)
    return ev


@fuzz(400)
@given(fast_events, st.data())
def test_fuzz_truncated(ev, data):
    raw = encode_nmnist(ev)
    cut = data.draw(st.integers(0, len(raw) - 1))
    out = assert_clean(raw[:cut])
    if cut % 5:
        assert out is None  # a torn record is always refused, never read partially
    else:
        assert out is None or np.array_equal(out, ev[: len(out)])


@fuzz(400)
@given(st.binary(min_size=0, max_size=400))
def test_fuzz_garbage(raw):
    assert_clean(raw)


@fuzz(200)
@given(fast_events, st.integers(1, 39))
def test_fuzz_oversized(ev, limit):
    raw = encode_nmnist(ev)
    n_records = len(raw) // 5
    if n_records > limit:
        with pytest.raises(FormatError, match="exceed the limit"):
            read_nmnist_bin(raw, max_records=limit)
        with pytest.raises(FormatError, match="exceed the limit"):
            read_nmnist_bin(io.BytesIO(raw), max_records=limit)
    else:
        assert np.array_equal(read_nmnist_bin(raw, max_records=limit), ev)


@fuzz(100)
@given(fast_events, st.integers(0, 10**6), st.integers(0, 255))
def test_fuzz_byte_flip(ev, pos, value):
    raw = bytearray(encode_nmnist(ev))
    raw[pos % len(raw)] = value
    assert_clean(bytes(raw))
