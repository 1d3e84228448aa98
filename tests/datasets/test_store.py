"""HDF5 event store: round trip, time windows against a reference mask, append, damaged files."""

import io

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikeflow.datasets.events import make_events, sort_events
from spikeflow.datasets.store import EventStore, EventStoreWriter, write_store
from spikeflow.errors import DataError, FormatError, SpikeflowError
from spikeflow._checked_files import seal_bytes, seal_file

SENSOR = (34, 34, 2)


def fuzz(n):
    return settings(max_examples=n, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def sample(n, seed, t_max=100_000):
    rng = np.random.default_rng(seed)
    return sort_events(make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, t_max, n), rng.integers(0, 2, n)))


@pytest.fixture(scope="module")
def samples():
    return [sample(n, seed) for seed, n in enumerate([0, 1, 37, 500, 3000, 64])]


@pytest.fixture()
def store_path(tmp_path, samples):
    # Small chunks and blocks so that windows cross many chunk and block boundaries.
    return write_store(tmp_path / "ev.h5", samples, list(range(len(samples))), SENSOR, metadata={"origin": "test"}, chunk_events=16)


def test_round_trip(store_path, samples):
    with EventStore(store_path) as s:
        assert len(s) == len(samples) and s.sensor_size == SENSOR and s.metadata == {"origin": "test"}
        for i, ev in enumerate(samples):
            got, label = s[i]
            assert label == i and np.array_equal(got, ev) and got.dtype == ev.dtype
        assert np.array_equal(s[-1][0], samples[-1])
        with pytest.raises(IndexError):
            s[len(samples)]


@fuzz(150)
@given(data=st.data())
def test_window_reads_match_a_mask(store_path, samples, data):
    i = data.draw(st.integers(0, len(samples) - 1))
    a = data.draw(st.integers(-10, 110_000))
    b = data.draw(st.integers(a, 120_000))
    ev = samples[i]
    with EventStore(store_path) as s:
        assert np.array_equal(s.read_window(i, a, b), ev[(ev["t"] >= a) & (ev["t"] < b)])


def test_window_with_equal_timestamps_at_block_edges(tmp_path):
    ev = make_events(np.zeros(100), np.zeros(100), np.repeat([5, 7, 9, 11], 25), np.ones(100))
    path = write_store(tmp_path / "eq.h5", [ev], [0], SENSOR, chunk_events=8)
    with EventStore(path) as s:
        for a, b in [(7, 9), (5, 6), (6, 12), (11, 11), (0, 5)]:
            assert np.array_equal(s.read_window(0, a, b), ev[(ev["t"] >= a) & (ev["t"] < b)])
        with pytest.raises(DataError, match="before its start"):
            s.read_window(0, 10, 5)


def test_append_keeps_old_samples(store_path, samples):
    extra = sample(200, 99)
    with EventStoreWriter(store_path, SENSOR, append=True, metadata={"more": 1}) as w:
        assert w.append(extra, label=42) == len(samples)
    with EventStore(store_path) as s:
        assert len(s) == len(samples) + 1 and s.metadata == {"origin": "test", "more": 1}
        assert np.array_equal(s.read(len(samples)), extra) and s.labels[-1] == 42
        assert np.array_equal(s.read(3), samples[3])
        assert np.array_equal(s.read_window(len(samples), 0, 50_000), extra[extra["t"] < 50_000])
    with pytest.raises(DataError, match="cannot append"):
        EventStoreWriter(store_path, (128, 128, 2), append=True)


def test_one_dimensional_events(tmp_path):
    dtype = np.dtype([("t", np.int64), ("x", np.int64), ("p", np.int64)])
    ev = np.zeros(10, dtype=dtype)
    ev["t"], ev["x"], ev["p"] = np.arange(10) * 3, np.arange(10) * 70, 1
    path = write_store(tmp_path / "shd.h5", [ev], [3], (700, 1, 1))
    with EventStore(path) as s:
        assert np.array_equal(s.read(0), ev) and s.dtype == dtype
    # Fields are matched by name, not position.
    other = np.zeros(2, dtype=[("x", np.int64), ("p", np.int64), ("t", np.int64)])
    other["t"], other["x"] = [40, 41], [5, 6]
    with EventStoreWriter(path, (700, 1, 1), dtype=dtype, append=True) as w:
        w.append(other, 4)
    with EventStore(path) as s:
        assert s.read(1)["t"].tolist() == [40, 41] and s.read(1)["x"].tolist() == [5, 6]


def test_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "bad.h5"
    with pytest.raises(DataError, match="sample 1: timestamps decrease"):
        with EventStoreWriter(path, SENSOR) as w:
            w.append(sample(10, 0))
            w.append(sample(10, 1)[::-1])
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_damaged_layouts_are_named(store_path):
    def edit(fn):
        with h5py.File(store_path, "r+") as f:
            fn(f)
        seal_file(store_path)  # edited by a tool that knows the format: the checks behind the seal must catch it

    edit(lambda f: f.attrs.__setitem__("complete", 0))
    with pytest.raises(FormatError, match="half-written"):
        EventStore(store_path)
    edit(lambda f: (f.attrs.__setitem__("complete", 1), f.attrs.__setitem__("version", 3)))
    with pytest.raises(FormatError, match="newer"):
        EventStore(store_path)
    edit(lambda f: f.attrs.__setitem__("version", 2))
    edit(lambda f: f["events"].resize((5,)))
    with pytest.raises(FormatError, match="dataset 'events' has shape"):
        EventStore(store_path)


def test_corrupt_offsets_and_values(store_path):
    with h5py.File(store_path, "r+") as f:
        f["samples/offsets"][2] = 10**6
    with pytest.raises(FormatError, match="checksum mismatch"):
        EventStore(store_path)
    seal_file(store_path)
    with pytest.raises(FormatError, match="offsets"):
        EventStore(store_path)


def test_replaced_events_are_refused_on_read(tmp_path):
    path = write_store(tmp_path / "v.h5", [sample(50, 1)], [0], SENSOR, compression=None)
    with h5py.File(path, "r+") as f:
        f["events"][3] = np.array((99, 1, f["events"][3]["t"], True), dtype=f["events"].dtype)
    with pytest.raises(FormatError, match="checksum mismatch"):
        EventStore(path)
    seal_file(path)  # the block CRCs are a second line behind the seal
    with EventStore(path) as s:
        with pytest.raises(FormatError, match=r"block 0 \(events 0:50\) fails its checksum"):
            s.read(0)


def test_missing_file_and_not_hdf5(tmp_path):
    with pytest.raises(FormatError, match="no such file"):
        EventStore(tmp_path / "nope.h5")
    (tmp_path / "x.h5").write_text("hello")
    with pytest.raises(FormatError, match="no spikeflow checksum"):
        EventStore(tmp_path / "x.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["a"] = 1
    with pytest.raises(FormatError, match="no spikeflow checksum"):
        EventStore(tmp_path / "other.h5")
    with h5py.File(tmp_path / "other.h5", "w", userblock_size=512) as f:
        f["a"] = 1
    seal_file(tmp_path / "other.h5")
    with pytest.raises(FormatError, match="not a spikeflow event store"):
        EventStore(tmp_path / "other.h5")


# -- fuzzing: every outcome is a full valid read or a SpikeflowError ----------------------------
@pytest.fixture(scope="module")
def valid_bytes(tmp_path_factory, samples):
    path = write_store(tmp_path_factory.mktemp("fz") / "f.h5", samples, list(range(len(samples))), SENSOR, chunk_events=64)
    return path.read_bytes()


def read_all(raw: bytes, samples=None):
    try:
        with EventStore(io.BytesIO(raw)) as s:
            out = [s.read(i) for i in range(len(s))]
            windows = [s.read_window(i, 10_000, 60_000) for i in range(len(s))]
    except SpikeflowError:
        return None
    if samples is not None:
        # Anything that reads without error must read back exactly what was written.
        assert len(out) == len(samples)
        for got, want, win in zip(out, samples, windows):
            assert np.array_equal(got, want)
            assert np.array_equal(win, want[(want["t"] >= 10_000) & (want["t"] < 60_000)])
    return out


@fuzz(300)
@given(data=st.data())
def test_fuzz_truncated(valid_bytes, samples, data):
    cut = data.draw(st.integers(0, len(valid_bytes) - 1))
    read_all(valid_bytes[:cut], samples)


@fuzz(300)
@given(raw=st.binary(max_size=3000))
def test_fuzz_garbage(raw):
    read_all(raw)


@fuzz(150)
@given(prefix=st.binary(max_size=100))
def test_fuzz_garbage_with_hdf5_signature(prefix):
    read_all(b"\x89HDF\r\n\x1a\n" + prefix + bytes(2048))


@fuzz(300)
@given(data=st.data())
def test_fuzz_byte_flips(valid_bytes, samples, data):
    raw = bytearray(valid_bytes)
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    read_all(bytes(raw), samples)


def test_empty_file(tmp_path):
    assert read_all(b"") is None
    (tmp_path / "e.h5").write_bytes(b"")
    with pytest.raises(FormatError):
        EventStore(tmp_path / "e.h5")


def test_fuzz_base_file_is_as_expected(valid_bytes, samples):
    assert sum(map(len, samples)) == 3602 and read_all(valid_bytes, samples) is not None


@fuzz(100)
@given(n_samples=st.integers(7, 2**40), n_events=st.integers(3603, 2**40), sensor=st.integers(35, 2**40))
def test_fuzz_oversized_header(valid_bytes, n_samples, n_events, sensor):
    """Counts and sizes larger than the data (the file holds 6 samples, 3602 events, 34x34)."""
    buf = io.BytesIO(valid_bytes)
    with h5py.File(buf, "r+") as f:
        f.attrs["n_samples"], f.attrs["n_events"] = n_samples, n_events
        f.attrs["sensor_size"] = np.array([sensor, 34, 2])
    with pytest.raises(FormatError, match="checksum mismatch|truncated or extended"):
        EventStore(io.BytesIO(buf.getvalue()))
    with pytest.raises(FormatError, match="n_samples|n_events|sensor|header checksum|has shape"):
        EventStore(io.BytesIO(seal_bytes(buf.getvalue())))
