"""A long task without download: 1.26 s DVS streams at 1 ms bins (T = 1260), trained with lean
exact BPTT, truncated BPTT and the online rule (OTTT); accuracy and peak memory of each.

Each sample is a stream of four DigitSaccades recordings (N-MNIST-style DVS events of real
handwritten digits, 315 ms each) of four different writers' versions of the same digit, played one
after the other; the label is that digit. Events are binned at 1 ms and pooled 2x2 (17x17 pixels,
ON/OFF: 578 inputs). Batches are sparse COO tensors ``[1260, B, 578]``: the strategies densify one
chunk at a time. Network: 578-128-10 LIF (tau 20 ms, subtractive reset), loss cross-entropy on the
output spike rate.

Each strategy trains in its own process (the same seed and data); the figure reported is that
process's peak resident set during training above the resident set after loading the data, with
glibc's dynamic mmap threshold off (see :mod:`spikeflow.train.planner`).

Run: ``.venv/bin/python examples/long_digit_streams.py [--epochs 4] [--train 640] [--test 320]
[--strategies bptt,tbptt,ottt]`` (``full``, plain BPTT on the densified batch, is a fourth choice).
Writes ``examples/out/long_digit_streams.json`` (ignored by git).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import spikeflow as sf
from spikeflow.ir import nodes as n

OUT = Path(__file__).parent / "out"
RECORDINGS, STEP_US, POOL = 4, 1000, 2
SIDE = 34 // POOL
N_IN = 2 * SIDE * SIDE
T = RECORDINGS * 315
HIDDEN, CLASSES, BATCH = 128, 10, 32
DT, TAU = 1e-3, 20e-3
CHUNK = 105  # 12 chunks per stream; the truncation length of TBPTT (a third of one recording)
RATE_SCALE = 20.0  # logits = scale * output spike rate


def streams(train: bool, count: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``count`` streams: per stream the (time step, input index) of every event, and the labels."""
    ds = sf.datasets.DigitSaccades(OUT / "data", train=train, progress=True)
    rng = np.random.default_rng(seed)
    by_class = {c: np.flatnonzero(ds.targets == c) for c in range(CLASSES)}
    labels = rng.integers(0, CLASSES, count)
    out = []
    for label in labels:
        parts = []
        for k, i in enumerate(rng.choice(by_class[int(label)], RECORDINGS, replace=False)):
            ev = ds[int(i)][0]
            step = np.minimum(ev["t"] // STEP_US, 314) + 315 * k
            channel = ev["p"].astype(np.int64) * SIDE * SIDE + (ev["y"] // POOL) * SIDE + ev["x"] // POOL
            parts.append(np.stack([step, channel]))
        out.append(np.concatenate(parts, axis=1))
    return out, labels


def batch(events: list[np.ndarray], index: np.ndarray) -> torch.Tensor:
    """A sparse COO ``[T, B, 578]`` of event counts."""
    cols = [np.vstack([e[0], np.full(e.shape[1], b), e[1]]) for b, e in enumerate(events[i] for i in index)]
    idx = torch.as_tensor(np.concatenate(cols, axis=1))
    return torch.sparse_coo_tensor(idx, torch.ones(idx.shape[1]), (T, len(index), N_IN), check_invariants=True).coalesce()


def network(seed: int = 0) -> sf.Graph:
    rng = np.random.default_rng(seed)
    return sf.Graph.sequential(
        n.Input(shape=(N_IN,)),
        n.Affine(weight=rng.normal(size=(HIDDEN, N_IN)) * 2.0 / np.sqrt(N_IN), bias=np.zeros(HIDDEN)),
        n.LIF(tau=TAU, v_threshold=1.0, r=TAU / DT, reset="subtract"),
        n.Affine(weight=rng.normal(size=(CLASSES, HIDDEN)) * 2.0 / np.sqrt(HIDDEN), bias=np.zeros(CLASSES)),
        n.LIF(tau=TAU, v_threshold=1.0, r=TAU / DT, reset="subtract"),
        dt=DT,
    )


def train_one(strategy: str, epochs: int, n_train: int, n_test: int, lr: float) -> dict:
    """Train with one strategy in this process; return accuracy, peak memory and time."""
    from spikeflow.train.long_sequences import chunked_outputs, train_step
    from spikeflow.train.planner import _status

    torch.manual_seed(0)
    train_x, train_y = streams(True, n_train, seed=1)
    test_x, test_y = streams(False, n_test, seed=2)
    net = sf.to_torch(network(), dtype=torch.float32)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    ce = torch.nn.CrossEntropyLoss()
    # warm-up (kernels loaded or compiled, allocator caches) on a short piece; its gradient is dropped
    train_step(net, batch(train_x, np.arange(2)).to_dense()[: 2 * CHUNK], lambda y: y.sum(), strategy=strategy, chunk=CHUNK)
    net.zero_grad(set_to_none=True)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status("VmRSS")
    rng = np.random.default_rng(0)
    start, history = time.perf_counter(), []
    for epoch in range(epochs):
        order = rng.permutation(n_train)
        correct = 0
        for s in range(0, n_train - BATCH + 1, BATCH):
            index = order[s : s + BATCH]
            x, target = batch(train_x, index), torch.as_tensor(train_y[index])
            optimizer.zero_grad(set_to_none=True)
            res = train_step(net, x, lambda y: ce(RATE_SCALE * y.mean(0), target), strategy=strategy, chunk=CHUNK)
            optimizer.step()
            correct += int((res.scores.argmax(-1) == target).sum())
        history.append(correct / (n_train // BATCH * BATCH))
        print(f"{strategy}: epoch {epoch + 1}: train acc {history[-1]:.3f}", flush=True)
    seconds = time.perf_counter() - start
    hits = 0
    for s in range(0, n_test, BATCH):
        index = np.arange(s, min(s + BATCH, n_test))
        y = chunked_outputs(net, batch(test_x, index), CHUNK)
        hits += int((y.sum(0).argmax(-1) == torch.as_tensor(test_y[index])).sum())
    return {"strategy": strategy, "test_acc": hits / n_test, "train_acc": history, "peak_bytes": _status("VmHWM") - base,
            "train_seconds": seconds, "T": T, "chunk": CHUNK, "epochs": epochs, "n_train": n_train, "n_test": n_test}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train", type=int, default=640)
    parser.add_argument("--test", type=int, default=320)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--strategies", default="bptt,tbptt,ottt")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(train_one(args.child, args.epochs, args.train, args.test, args.lr)))
        return
    from spikeflow.train.planner import measure_env

    sf.datasets.DigitSaccades(OUT / "data", train=True)  # generate the cache once, before the children
    sf.datasets.DigitSaccades(OUT / "data", train=False)
    results = []
    for strategy in args.strategies.split(","):
        cmd = [sys.executable, __file__, "--child", strategy, "--epochs", str(args.epochs), "--train", str(args.train),
               "--test", str(args.test), "--lr", str(args.lr)]
        proc = subprocess.run(cmd, env=measure_env(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{strategy} failed:\n{proc.stderr[-2000:]}")
        print(proc.stdout.strip().rsplit("\n", 1)[0])
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"\nDigit streams, T = {T} steps of 1 ms, {args.train} train / {args.test} test streams, {args.epochs} epochs, batch {BATCH}")
    print("| strategy | test accuracy | peak memory during training (MiB) | training time (s) |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['strategy']} | {r['test_acc']:.3f} | {r['peak_bytes'] / 2**20:.1f} | {r['train_seconds']:.0f} |")
    OUT.mkdir(exist_ok=True)
    from spikeflow._atomic import atomic_path

    with atomic_path(OUT / "long_digit_streams.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
