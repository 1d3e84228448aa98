"""Steady run time: the same short training in 10 fresh processes, with and without spikeflow's
thread settings (spikeflow/_threads.py), and the spread of the times.

numba's parallel kernels and torch each keep an OpenMP pool; with idle threads spinning (libgomp's
default) the two pools fight over 2 cores and the same training swung from 2.9 s to 122 s. Each run
here is a new Python process, as a user starting a script: it trains the digits MLP of
``spikeflow train`` for 2 epochs (``spikeflow.workflows.train_digits``) and reports the training's
seconds (start-up and numba's cached load excluded). "without" sets ``OMP_WAIT_POLICY`` to an
empty value, which libgomp ignores (its default: spin, then sleep) and spikeflow leaves alone, so
only the wait policy differs. The two kinds of run alternate, so that a shared machine's slow
minutes fall on both. Not a test: nothing here asserts a time.

Run: ``.venv/bin/python benchmarks/steady.py [--runs 10] [--epochs 2]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import record, write_results  # noqa: E402

CHILD = (
    "import tempfile, spikeflow as sf\n"
    "from spikeflow.workflows import train_digits\n"
    "with tempfile.TemporaryDirectory() as out:\n"
    "    print(train_digits(out, epochs={epochs}, progress=True)['train_seconds'])\n"
)
# what a new user's shell has: no thread settings of our own (the developer's are dropped)
DROP = ("OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER_PRIORITY", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def train_once(epochs: int, spikeflow_settings: bool) -> float:
    env = {k: v for k, v in os.environ.items() if k not in DROP}
    if not spikeflow_settings:
        env["OMP_WAIT_POLICY"] = ""  # set, so spikeflow keeps it; empty, so libgomp uses its default
    done = subprocess.run([sys.executable, "-c", CHILD.format(epochs=epochs)], env=env, capture_output=True, text=True, check=True, timeout=1800)
    return float(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    train_once(args.epochs, True)  # warm-up: fills numba's cache and the digits data
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(args.runs):
        for settings in (True, False):
            times[settings].append(train_once(args.epochs, settings))
        print(f"run {i + 1}/{args.runs}: with {times[True][-1]:.2f} s, without {times[False][-1]:.2f} s", flush=True)
    case = f"digits MLP, {args.epochs} epochs, {args.runs} fresh processes"
    peer = "same without spikeflow's thread settings (libgomp default waiting)"
    ours, theirs = times[True], times[False]
    records = [
        record(case, "slowest / median training time", max(ours) / statistics.median(ours), peer, max(theirs) / statistics.median(theirs), 0.0),
        record(case, "median training seconds", statistics.median(ours), peer, statistics.median(theirs), 0.0),
        record(case, "slowest training seconds", max(ours), peer, max(theirs), 0.0),
    ]
    for label, values in (("with", ours), ("without", theirs)):
        print(f"{label}: " + ", ".join(f"{t:.2f}" for t in sorted(values)))
    write_results(__file__, records)


if __name__ == "__main__":
    main()
