"""Readout-only LSM vs BPTT training on DigitSaccades, and the crossbar simulation's throughput.

1. Training cost to similar accuracy, on the same data (DigitSaccades events pooled 2x2 into 578
   binary inputs, 50 steps; 1437 training and 360 test samples, float32 in memory on both sides;
   building the arrays is not timed on either side).
   LSM: a fixed 200-neuron random LIF reservoir; its training is (a) running the reservoir over
   the whole training set once (:func:`reservoir_features`: the event-driven numba kernel, spike
   counts in 3 windows = 600 features) and (b) the closed-form ridge readout (float64, penalty
   chosen by generalised cross-validation).
   BPTT: the zoo's spiking MLP (578 -> 128 LIF -> 10 LI) trained by spikeflow's Trainer (surrogate
   gradients, Adam, batch 64, lr 2e-3 as in the examples, the membrane-mean cross-entropy that an
   LI output needs) until its test accuracy reaches the LSM's minus one point; its time is the sum
   of its training epochs up to then.
   Both are timed the same way: ``perf_counter`` around the training calls only (evaluation is not
   timed), after one untimed warm-up each. The LSM's whole training runs once after every BPTT
   epoch (interleaved, so both sides see the same machine load) and its median is reported. Both
   sides: this process, ``--threads``.
2. Crossbar reference simulation (numpy, reading the export, ideal device) vs the numba
   fixed-point simulator running ``prog.graph`` at ``prog.precision``: the same spikes (asserted),
   test-set samples per second, median of 5 runs.

Run: ``python benchmarks/rram_lsm.py [--threads 1]``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import median_time, record, set_threads, write_results  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import spikeflow as sf  # noqa: E402
from spikeflow.models import spiking_mlp  # noqa: E402
from spikeflow.models.lsm import binary_frames, reservoir, reservoir_features  # noqa: E402
from spikeflow.models.readout import train_readout  # noqa: E402
from spikeflow.train.trainer import Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1] / "data"
STEPS, REPEATS, MAX_EPOCHS, MIN_EPOCHS = 50, 5, 15, 5
# counts in 3 windows, no trace: 600 features instead of 800 (the ridge's eigendecomposition costs ~F^3),
# 98.1% instead of 98.3% test accuracy on the seed-0 reservoir
FEATURES = dict(windows=3, trace_decay=None)


def data():
    out = {}
    for split in ("train", "test"):
        frames, y = sf.datasets.DigitSaccades(ROOT, train=split == "train").frames(STEPS)
        out[split] = (binary_frames(frames).astype(np.float32), y)
    return out


def lsm_train(graph, x, y):
    """The LSM's whole training: the reservoir over the training set, then the ridge readout."""
    start = time.perf_counter()
    readout = train_readout(reservoir_features(graph, x, **FEATURES), y)
    return readout, time.perf_counter() - start


def lsm_accuracy(graph, readout, x, y) -> float:
    return readout.accuracy(reservoir_features(graph, x, **FEATURES), y)


def bptt(d, target: float, between):
    """Train epoch by epoch (timed) until the test accuracy reaches ``target`` (and at least
    MIN_EPOCHS epochs for the median); ``between()`` runs after each epoch, untimed here."""
    (xtr, ytr), (xte, yte) = d["train"], d["test"]
    to_batch_first = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2)))  # noqa: E731
    train, test = (to_batch_first(xtr), torch.tensor(ytr)), (to_batch_first(xte), torch.tensor(yte))
    make = lambda: Trainer(spiking_mlp(xtr.shape[2], 128, 10, seed=0), loss="membrane_mean_ce", lr=2e-3, epochs=1, batch_size=64, progress=False)  # noqa: E731
    make().fit((train[0][:256], train[1][:256]))  # warm-up on a throwaway copy (first-call kernel loading), like the LSM's
    trainer = make()
    times, accs, reached = [], [], None
    for epoch in range(1, MAX_EPOCHS + 1):
        trainer.epochs = epoch
        start = time.perf_counter()
        trainer.fit(train)
        times.append(time.perf_counter() - start)
        accs.append(trainer.evaluate(test)["acc"])
        between()
        if reached is None and accs[-1] >= target:
            reached = epoch
        if reached is not None and epoch >= MIN_EPOCHS:
            break
    return reached, times, accs


def main(threads: int = 2) -> None:
    set_threads(threads)
    d = data()
    (xtr, ytr), (xte, yte) = d["train"], d["test"]
    g = reservoir(xtr.shape[2], 200, seed=0)
    readout, _ = lsm_train(g, xtr, ytr)  # warm-up (loads torch kernels)
    lsm_acc = lsm_accuracy(g, readout, xte, yte)
    lsm_times = []
    reached, times, accs = bptt(d, lsm_acc - 0.01, lambda: lsm_times.append(lsm_train(g, xtr, ytr)[1]))
    lsm_seconds = statistics.median(lsm_times)
    start = time.perf_counter()
    reservoir_features(g, xtr, **FEATURES)
    features_s = time.perf_counter() - start
    print(f"LSM: {lsm_acc:.1%} test; whole training median {lsm_seconds:.2f} s of {len(lsm_times)} runs {[round(t, 2) for t in lsm_times]} "
          f"(reservoir over the training set {features_s:.2f} s, ridge penalty {readout.alpha:.3g})")
    print(f"BPTT: test accuracy per epoch {[round(a, 3) for a in accs]}, epoch times {[round(t, 2) for t in times]} s, "
          f"reached {lsm_acc - 0.01:.1%} at epoch {reached}")
    records = []
    if reached is not None:
        bptt_seconds = sum(times[:reached])
        print(f"training time: LSM {lsm_seconds:.2f} s, BPTT {bptt_seconds:.2f} s, ratio {bptt_seconds / lsm_seconds:.1f}x")
        records.append(record(f"DigitSaccades to {lsm_acc - 0.01:.1%} test accuracy (LSM {lsm_acc:.1%}, BPTT {accs[reached - 1]:.1%} after {reached} epochs)",
                              "training time (s)", lsm_seconds, "BPTT spiking MLP 578-128-10 (spikeflow Trainer)", bptt_seconds, 10.0))
    else:
        print(f"BPTT did not reach {lsm_acc - 0.01:.1%} in {MAX_EPOCHS} epochs (best {max(accs):.1%}); no training-time record")
    with tempfile.TemporaryDirectory() as tmp:
        sf.export(g, target="rram-lsm", path=tmp, device="ideal")
        prog = sf.load_export(tmp)
        a = prog.run(xte, record=["lif"]).spikes["lif"]
        b = sf.simulate(prog.graph, xte, precision=prog.precision, record=["lif"]).spikes["lif"]
        assert np.array_equal(a, b), "ideal crossbar and fixed-point simulator disagree"
        ours = median_time(lambda: prog.run(xte, record=["lif"]), repeats=REPEATS)
        peer = median_time(lambda: sf.simulate(prog.graph, xte, precision=prog.precision, record=["lif"]), repeats=REPEATS)
        print(f"crossbar simulation: {int(a.sum())} spikes on both sides")
        records.append(record(f"crossbar simulation, 200-neuron reservoir, {xte.shape[1]} samples x {STEPS} steps",
                              "samples/s", xte.shape[1] / ours, "numba fixed-point (same spikes)", xte.shape[1] / peer, 0.0, lower_is_better=False))
    write_results(__file__, records)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch and numba threads of both sides")
    main(parser.parse_args().threads)
