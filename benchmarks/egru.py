"""EGRU: batch-1 per-step latency (numba-event, sparse) and training time per epoch, vs torch.nn.GRU.

Latency: a 1024-unit EGRU layer whose 1024 inputs are the events of a layer like it (so inputs are
as sparse as its own outputs), thresholds calibrated to about 90% and 80% activity sparsity; the
sparsity actually measured during the timed run is reported. The peer is ``torch.nn.GRU`` of the
same size stepped one input at a time, both float32, 2 threads.

Training: one epoch of truncated-BPTT batches (forward, backward, Adam step) for a 256-unit EGRU
(spikeflow's fused numba scan) and a 256-unit ``torch.nn.GRU``, same data, same readout.

Run:  .venv/bin/python benchmarks/egru.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import median_time, record, set_threads, write_results  # noqa: E402

from spikeflow.torch.egru import EGRU  # noqa: E402

from spikeflow.backends.numba import egru as nb


def event_inputs(steps: int, size: int, density: float, seed: int) -> np.ndarray:
    """Event-like inputs: a ``density`` fraction of entries carry a value in [0.2, 1], the rest 0."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random((steps, size)) < density, rng.uniform(0.2, 1.0, (steps, size)), 0.0).astype(np.float32)


def calibrated_node(hidden: int, sparsity: float, x: np.ndarray):
    """An EGRU node with random GRU-initialised weights and one threshold chosen by bisection so
    that the activity sparsity on ``x`` is close to ``sparsity``."""
    torch.manual_seed(0)
    node = EGRU(hidden, hidden, threshold_mean=0.5, dtype=torch.float64).to_nodes()[0]
    low, high = 0.0, 1.0
    for _ in range(14):
        node.threshold[:] = (low + high) / 2
        measured = float((nb.run_egru_events(node, x, dtype=np.float32).output == 0).mean())
        low, high = (node.threshold[0], high) if measured < sparsity else (low, node.threshold[0])
    return node


def latency(hidden: int, sparsity: float, steps: int, repeats: int) -> list[dict]:
    x = event_inputs(steps, hidden, 1 - sparsity, seed=1)
    node = calibrated_node(hidden, sparsity, x)
    stream = nb.EGRUStream(node, weights="dense", dtype=np.float32)
    measured = []

    def run_egru():
        stream.reset()
        for t in range(steps):
            stream.step(x[t])
        measured.append(1 - sum(stream.stats.events) / (steps * hidden))

    gru = torch.nn.GRU(hidden, hidden)
    xt = torch.from_numpy(x).reshape(steps, 1, 1, hidden)

    @torch.no_grad()
    def run_gru():
        h = torch.zeros(1, 1, hidden)
        for t in range(steps):
            _, h = gru(xt[t], h)

    ours = median_time(run_egru, repeats) / steps
    peer = median_time(run_gru, repeats) / steps
    case = f"{hidden}-unit layer, batch 1, {np.median(measured):.1%} activity sparsity"
    print(f"{case}: EGRU numba-event {ours * 1e6:.1f} us/step, torch.nn.GRU {peer * 1e6:.1f} us/step")
    return [record(case, "seconds per step", ours, "torch.nn.GRU", peer, 3.0 if sparsity >= 0.9 else 1.5)]


def training(hidden: int, batches: int, seq: int, batch: int, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    inputs = 64
    data = torch.randn(batches, seq, batch, inputs)
    targets = torch.randn(batches, seq, batch, 16)

    def epoch_fn(rnn):
        readout = torch.nn.Linear(hidden, 16)
        opt = torch.optim.Adam(list(rnn.parameters()) + list(readout.parameters()), lr=1e-3)

        def epoch():
            for i in range(batches):
                out, _ = rnn(data[i])
                loss = ((readout(out) - targets[i]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()

        return epoch

    egru = EGRU(inputs, hidden, threshold_mean=0.3)
    ours = median_time(epoch_fn(egru), repeats)
    sparsity = egru.last_stats[0]["activity_sparsity"]
    peer = median_time(epoch_fn(torch.nn.GRU(inputs, hidden)), repeats)
    case = f"{hidden}-unit layer, {batches} batches of {batch}x{seq} steps ({sparsity:.0%} activity sparsity)"
    print(f"training {case}: EGRU {ours:.2f} s/epoch, torch.nn.GRU {peer:.2f} s/epoch")
    return [record(case, "seconds per epoch", ours, "torch.nn.GRU", peer, 0.5)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = ap.parse_args(argv)
    set_threads(2)
    hidden, steps, repeats = (256, 50, 5) if args.quick else (1024, 200, 5)
    records = []
    for sparsity in (0.9, 0.8):
        records += latency(hidden, sparsity, steps, repeats)
    records += training(64 if args.quick else 256, 2 if args.quick else 8, 50, 32, repeats)
    if args.quick:  # a smoke run does not replace the recorded results
        from _common import table

        print(table(records))
    else:
        write_results(__file__, records)


if __name__ == "__main__":
    main()
