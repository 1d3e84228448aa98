"""Fuzz every file reader with 10,000 seeded byte-damaged files each (issue 17).

Each reader must, for every damaged file, either return exactly what was written or raise a
SpikeflowError: no hang (a per-case time limit fails the test), no other exception (a leak), no
silently different result. Seeds are fixed, so a failure names a case that reproduces.
"""

import io
import os
import shutil
import tempfile
from pathlib import Path

import nir
import pytest
import numpy as np
import torch

import spikeflow as sf
from spikeflow import _checked_files
from spikeflow._checked_files import SEAL_SIZE, seal_bytes
from spikeflow.datasets.events import make_events, sort_events
from spikeflow.datasets.nmnist_bin import encode_nmnist, read_nmnist_bin
from spikeflow.datasets.store import EventStore, write_store
from spikeflow.train import Trainer
from tests.fuzz_harness import classify, damage, run_cases

CASES = 10_000


def mlp() -> sf.Graph:
    rng = np.random.default_rng(0)
    return sf.Graph.sequential(
        sf.ir.Input(shape=(4,)), sf.ir.Affine(weight=rng.normal(size=(6, 4)), bias=np.zeros(6)),
        sf.ir.LIF(tau=0.01, v_threshold=np.ones(6)), sf.ir.Affine(weight=rng.normal(size=(2, 6)), bias=np.zeros(2)),
        sf.ir.LIF(tau=0.01, v_threshold=np.ones(2)),
    )


@pytest.fixture
def scratch(tmp_path):
    """A folder in memory (tmpfs) when there is one: 10,000 file writes on a busy disk take minutes."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix="spikeflow-fuzz-", dir=base)) if base else tmp_path
    yield folder
    if base:
        shutil.rmtree(folder, ignore_errors=True)


def _fuzz_file(folder, clean: bytes, read, same, seed: int, start: int = 0):
    """Write each damaged copy to one path and read it; a successful read must equal ``same``."""
    path = folder / "fuzzed"

    def case(i: int) -> str:
        rng = np.random.default_rng([seed, i])
        path.write_bytes(damage(clean, rng, start))
        result = {}
        outcome = classify(lambda: result.setdefault("value", read(path)))
        if outcome == "ok" and not same(result["value"]):
            return "LEAK silent: damaged file read back different content"
        return outcome

    return case


def test_fuzz_graph_files(scratch):
    sf.save(mlp(), scratch / "clean.h5")
    clean = (scratch / "clean.h5").read_bytes()
    counts = run_cases(_fuzz_file(scratch, clean, sf.load, lambda g: g == mlp(), seed=1), CASES)
    assert counts == {"refused FormatError": CASES}, counts  # every damaged file refused: 0 loads, 0 leaks


def test_fuzz_crafted_graph_files(scratch, monkeypatch):
    """Damaged, then sealed again (what a hand-edited or malicious file looks like): the seal passes,
    so libhdf5 parses damaged bytes; it does so in the parse helper, so nothing hangs or leaks."""
    sf.save(mlp(), scratch / "clean.h5")
    clean = (scratch / "clean.h5").read_bytes()
    monkeypatch.setattr(_checked_files, "HANG_TIMEOUT_S", 0.3)
    path = scratch / "crafted"

    def case(i: int) -> str:
        path.write_bytes(seal_bytes(damage(clean, np.random.default_rng([6, i]), start=SEAL_SIZE)))
        return classify(lambda: sf.load(path))

    counts = run_cases(case, 1_000)
    assert sum(counts.values()) == 1_000, counts
    print(counts)


def test_fuzz_event_stores(scratch):
    rng = np.random.default_rng(0)
    samples = [sort_events(make_events(rng.integers(0, 8, 40), rng.integers(0, 8, 40), rng.integers(0, 5000, 40), rng.integers(0, 2, 40))) for _ in range(3)]
    write_store(scratch / "clean.h5", samples, [0, 1, 2], (8, 8, 2), chunk_events=16)
    clean = (scratch / "clean.h5").read_bytes()

    def read(path):
        with EventStore(path) as s:
            return [s[i] for i in range(len(s))] + [s.read_window(1, 1000, 3000)]

    def same(got):
        want = [(ev, i) for i, ev in enumerate(samples)]
        window = samples[1][(samples[1]["t"] >= 1000) & (samples[1]["t"] < 3000)]
        return all(np.array_equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(got[:3], want)) and np.array_equal(got[3], window)

    counts = run_cases(_fuzz_file(scratch, clean, read, same, seed=2), CASES)
    assert counts == {"refused FormatError": CASES}, counts  # every damaged file refused: 0 loads, 0 leaks


def test_fuzz_checkpoints(scratch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    trainer = Trainer(model, progress=False)
    trainer.save_checkpoint(scratch / "clean.h5")
    clean = (scratch / "clean.h5").read_bytes()
    want = {k: v.clone() for k, v in model.state_dict().items()}

    def read(path):
        trainer.load_checkpoint(path)
        return {k: v.clone() for k, v in model.state_dict().items()}

    same = lambda got: all(torch.equal(got[k], want[k]) for k in want)  # noqa: E731
    counts = run_cases(_fuzz_file(scratch, clean, read, same, seed=3), CASES)
    assert counts == {"refused FormatError": CASES}, counts  # every damaged file refused: 0 loads, 0 leaks


def test_fuzz_nir_files(scratch, monkeypatch):
    # A foreign NIR file (no spikeflow metadata, no seal): only the bounded, guarded parse protects.
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([3])}),
            "fc": nir.Affine(weight=np.arange(6.0).reshape(2, 3), bias=np.zeros(2)),
            "lif": nir.LIF(tau=np.full(2, 0.01), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2), v_reset=np.zeros(2)),
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")],
    )
    nir.write(scratch / "clean.nir", graph)
    clean = (scratch / "clean.nir").read_bytes()
    monkeypatch.setattr(_checked_files, "HANG_TIMEOUT_S", 0.3)  # ~1% of damaged NIR files hang libhdf5: 0.3 s each, not 20
    read = lambda path: sf.from_nir(path, dt=1e-3)  # noqa: E731
    counts = run_cases(_fuzz_file(scratch, clean, read, lambda g: True, seed=4), CASES)
    # NIR files carry no checksum: a damaged weight can load (nothing can tell); the point here
    # is that nothing hangs, crashes or leaks an exception that is not a SpikeflowError.
    assert sum(counts.values()) == CASES, counts
    print(counts)


def test_fuzz_nmnist_bin():
    rng = np.random.default_rng(5)
    clean = encode_nmnist(sort_events(make_events(rng.integers(0, 34, 200), rng.integers(0, 34, 200), rng.integers(0, 2**24, 200), rng.integers(0, 2, 200))))

    def case(i: int) -> str:
        data = damage(clean, np.random.default_rng([5, i]))
        return classify(lambda: read_nmnist_bin(io.BytesIO(data)))

    counts = run_cases(case, CASES)
    assert sum(counts.values()) == CASES, counts
    print(counts)
