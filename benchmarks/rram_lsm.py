"""Readout-only LSM vs BPTT training on DigitSaccades, and the crossbar simulation's throughput.

1. Training cost to similar accuracy. LSM: a fixed 200-neuron random LIF reservoir (578 binary
   inputs: DigitSaccades events pooled 2x2, 50 steps), simulated once over the training set
   (numba-event), spike-count/trace features, a linear probe trained in torch (60 epochs); its
   time is the simulation plus the readout training, median of 5 runs. BPTT: the spiking MLP of
   the model zoo (578 -> 128 LIF -> 10 LI) trained with spikeflow's Trainer (surrogate gradients,
   Adam, batch 64) on the same inputs; each epoch is timed (at least 5 epochs, median epoch time),
   and its time is the epochs needed to reach the LSM's test accuracy minus 1 point times the median
   epoch time. Both sides run in this process with 2 threads; evaluation is not timed.
2. Crossbar reference simulation (numpy, reading the export, ideal device) vs the numba
   fixed-point simulator running ``prog.graph`` at ``prog.precision``: the same spikes (asserted),
   test-set samples per second, median of 5 runs.

Run: ``python benchmarks/rram_lsm.py [--threads 2]``. On a loaded machine the linear probe's tiny
torch ops suffer most from 2 spinning threads; ``--threads 1`` shows both sides on one core.
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
from spikeflow.models.lsm import binary_frames, reservoir  # noqa: E402
from spikeflow.models.readout import features, train_readout  # noqa: E402
from spikeflow.train.trainer import Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1] / "data"
STEPS, REPEATS, MAX_EPOCHS, MIN_EPOCHS = 50, 5, 15, 5


def data():
    out = {}
    for split in ("train", "test"):
        frames, y = sf.datasets.DigitSaccades(ROOT, train=split == "train").frames(STEPS)
        out[split] = (binary_frames(frames), y)
    return out


def lsm_train(graph, x, y):
    spikes = sf.simulate(graph, x, record=["lif"]).spikes["lif"]
    return train_readout(features(spikes, windows=5), y, epochs=60, seed=0)


def lsm_accuracy(graph, readout, x, y) -> float:
    return readout.accuracy(features(sf.simulate(graph, x, record=["lif"]).spikes["lif"], windows=5), y)


def bptt(d, target: float):
    (xtr, ytr), (xte, yte) = d["train"], d["test"]
    to_batch_first = lambda x: torch.tensor(np.ascontiguousarray(x.transpose(1, 0, 2)), dtype=torch.float32)  # noqa: E731
    train, test = (to_batch_first(xtr), torch.tensor(ytr)), (to_batch_first(xte), torch.tensor(yte))
    trainer = Trainer(spiking_mlp(xtr.shape[2], 128, 10, seed=0), loss="membrane_mean_ce", lr=2e-3, epochs=0, batch_size=64, progress=False)
    times, accs, reached = [], [], None
    for epoch in range(1, MAX_EPOCHS + 1):
        trainer.epochs = epoch
        start = time.perf_counter()
        trainer.fit(train)
        times.append(time.perf_counter() - start)
        accs.append(trainer.evaluate(test)["acc"])
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
    readout = lsm_train(g, xtr, ytr)  # warm-up (compiles numba, loads torch kernels)
    lsm_seconds = median_time(lambda: lsm_train(g, xtr, ytr), repeats=REPEATS, warmup=0)
    lsm_acc = lsm_accuracy(g, readout, xte, yte)
    reached, times, accs = bptt(d, lsm_acc - 0.01)
    epoch_s = statistics.median(times)
    print(f"LSM: {lsm_acc:.1%} test in {lsm_seconds:.1f} s; BPTT test accuracy per epoch {[round(a, 3) for a in accs]}, "
          f"median epoch {epoch_s:.1f} s, reached {lsm_acc - 0.01:.1%} at epoch {reached}")
    records = []
    if reached is not None:
        records.append(record(f"DigitSaccades to {lsm_acc - 0.01:.0%} test accuracy (LSM {lsm_acc:.1%}, BPTT {accs[reached - 1]:.1%})",
                              "training time (s)", lsm_seconds, "BPTT spiking MLP 578-128-10 (spikeflow Trainer)", reached * epoch_s, 10.0))
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
