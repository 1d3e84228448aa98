"""Event storage and generation: spikeflow's HDF5 event store against tonic's DiskCachedDataset.

10 million events (100 samples of 100k events over 1 s each) are written and read through both;
then a 10 ms window is read from every sample (the store reads only that window, tonic's cache
loads the whole sample and masks it; target: >= 5x). Finally DigitSaccades generation (1797
digits) is timed against the real time the saccades would take on a sensor.

Run: ``.venv/bin/python benchmarks/events.py``
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import median_time, record, set_threads, write_results  # noqa: E402

N_SAMPLES = 100
EVENTS_PER_SAMPLE = 100_000
SAMPLE_US = 1_000_000
WINDOW_US = 10_000
SENSOR = (128, 128, 2)


def make_samples() -> list[np.ndarray]:
    from spikeflow.datasets.events import make_events

    rng = np.random.default_rng(0)
    out = []
    for _ in range(N_SAMPLES):
        n = EVENTS_PER_SAMPLE
        out.append(make_events(rng.integers(0, 128, n), rng.integers(0, 128, n), np.sort(rng.integers(0, SAMPLE_US, n)), rng.integers(0, 2, n)))
    return out


def main() -> None:
    from tonic import DiskCachedDataset

    from spikeflow.datasets.digits import DigitSaccades
    from spikeflow.datasets.store import EventStore, write_store

    set_threads(2)
    samples = make_samples()
    labels = list(range(N_SAMPLES))
    n_events = N_SAMPLES * EVENTS_PER_SAMPLE
    dataset = list(zip(samples, labels))
    work = Path(tempfile.mkdtemp(prefix="sf-bench-events-"))
    store_path = work / "events.h5"
    cache_dir = work / "tonic-cache"
    starts = np.random.default_rng(1).integers(0, SAMPLE_US - WINDOW_US, N_SAMPLES)
    records = []
    try:
        def store_write():
            write_store(store_path, samples, labels, SENSOR)

        def tonic_write():
            cache = DiskCachedDataset(dataset, cache_path=str(cache_dir), reset_cache=True)
            for i in range(N_SAMPLES):
                cache[i]

        t_ours = median_time(store_write)
        t_peer = median_time(tonic_write)
        records.append(record("write 10M events", "s", t_ours, "tonic DiskCachedDataset", t_peer, 1.0))
        print(f"write: store {n_events / t_ours / 1e6:.1f} M events/s, tonic cache {n_events / t_peer / 1e6:.1f} M events/s")

        cache = DiskCachedDataset(None, cache_path=str(cache_dir))
        store = EventStore(store_path)

        def store_read():
            for i in range(N_SAMPLES):
                store.read(i)

        def tonic_read():
            for i in range(N_SAMPLES):
                cache[i]

        t_ours, t_peer = median_time(store_read), median_time(tonic_read)
        records.append(record("read 10M events (whole samples)", "s", t_ours, "tonic DiskCachedDataset", t_peer, 1.0))
        print(f"read: store {n_events / t_ours / 1e6:.1f} M events/s, tonic cache {n_events / t_peer / 1e6:.1f} M events/s")

        def store_window():
            return [store.read_window(i, s, s + WINDOW_US) for i, s in enumerate(starts)]

        def tonic_window():
            out = []
            for i, s in enumerate(starts):
                ev, _ = cache[i]
                out.append(ev[(ev["t"] >= s) & (ev["t"] < s + WINDOW_US)])
            return out

        for a, b in zip(store_window(), tonic_window()):
            assert np.array_equal(a, b), "window reads disagree"
        t_ours, t_peer = median_time(store_window), median_time(tonic_window)
        records.append(record("read a 10 ms window of each 1 s sample", "s", t_ours, "tonic DiskCachedDataset + mask", t_peer, 5.0))
        store.close()

        def generate():
            root = Path(tempfile.mkdtemp(dir=work))
            DigitSaccades(root, progress=False)
            shutil.rmtree(root)

        t_gen = median_time(generate, repeats=5, warmup=1)
        sensor_time = 1797 * DigitSaccades.duration_us * 1e-6
        records.append(record("generate DigitSaccades (1797 digits, both splits)", "s", t_gen, "real time of the saccades", sensor_time, 10.0))
        root = Path(tempfile.mkdtemp(dir=work))
        n_gen = sum(len(DigitSaccades(root, train=tr, progress=False)[i][0]) for tr in (True, False) for i in range(3))
        print(f"DigitSaccades: {t_gen:.2f} s for 1797 digits (~{n_gen / 6:.0f} events per digit)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_results(__file__, records)


if __name__ == "__main__":
    main()
