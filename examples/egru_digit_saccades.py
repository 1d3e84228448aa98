"""DigitSaccades events binned into frames, classified by an EGRU and, side by side, a torch GRU.

The built-in event set (:class:`spikeflow.datasets.DigitSaccades`: real handwritten digits moved
along N-MNIST saccades in front of the DVS emulator) is binned into ``--bins`` frames of
2x34x34 event counts, 2x2 sum-pooled to 2x17x17 and flattened: one frame per recurrent step.
Both models read out the time average of a linear layer on the recurrent output. Reports test
accuracy of both, the EGRU's activity sparsity (fraction of zero outputs), and checks the trained
EGRU against the numba-event runner.

Run:  .venv/bin/python examples/egru_digit_saccades.py [--epochs 30] [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numba
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from spikeflow._atomic import atomic_path
from spikeflow.torch.egru import EGRU

HERE = Path(__file__).parent


def load(root: Path, bins: int, subset: int | None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Time-major pooled frames ``[T, N, 578]`` (float32, log-compressed counts) and labels per split."""
    from spikeflow.datasets import DigitSaccades

    out = {}
    for split in ("train", "test"):
        x, y = DigitSaccades(root, train=split == "train", subset=subset).frames(bins, time_major=True)
        T, N = x.shape[:2]
        pooled = x.reshape(T, N, 2, 17, 2, 17, 2).sum(axis=(4, 6))
        out[split] = (torch.from_numpy(np.log1p(pooled).reshape(T, N, -1).astype(np.float32)), torch.from_numpy(y))
    return out


class Classifier(nn.Module):
    def __init__(self, kind: str, inputs: int, hidden: int, **egru_kwargs):
        super().__init__()
        self.kind = kind
        self.rnn = EGRU(inputs, hidden, **egru_kwargs) if kind == "egru" else nn.GRU(inputs, hidden)
        self.readout = nn.Linear(hidden, 10)

    def forward(self, x):
        h, _ = self.rnn(x)
        return self.readout(h).mean(0)


def run(kind: str, data, hidden: int, epochs: int, batch: int, lr: float, act_rate: float, target_rate: float, threshold_mean: float) -> dict:
    torch.manual_seed(0)
    x_train, y_train = data["train"]
    kwargs = dict(threshold_mean=threshold_mean, pseudo_derivative_width=2.0, zoneout=0.05) if kind == "egru" else {}
    model = Classifier(kind, x_train.shape[-1], hidden, **kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    start = time.perf_counter()
    bar = tqdm(range(epochs), desc=f"train {kind}", leave=False)
    for _ in bar:
        model.train()
        perm = torch.randperm(len(y_train))
        for i in range(0, len(perm), batch):
            idx = perm[i : i + batch]
            loss = nn.functional.cross_entropy(model(x_train[:, idx]), y_train[idx])
            if kind == "egru" and act_rate:
                loss = loss + model.rnn.activity_loss(rate=act_rate, target_rate=target_rate)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    seconds = time.perf_counter() - start
    model.eval()
    x_test, y_test = data["test"]
    with torch.no_grad():
        pred = model(x_test).argmax(1)
    result = {"hidden": hidden, "params": sum(p.numel() for p in model.parameters()),
              "train_seconds": round(seconds, 1), "test_accuracy": round(float((pred == y_test).float().mean()), 4)}
    if kind == "egru":
        result["activity_sparsity"] = round(model.rnn.last_stats[0]["activity_sparsity"], 4)
        result["backward_sparsity"] = round(model.rnn.last_stats[0]["backward_sparsity"], 4)
        result["numba_event_exact"] = check_numba_events(model, x_test[:, :8])
    return result


def check_numba_events(model: Classifier, x: torch.Tensor) -> bool:
    """The trained EGRU run by the numba-event runner in float64 gives the torch forward's events."""
    from spikeflow.backends.numba import egru as nb
    from spikeflow.torch.egru import egru_from_node

    nodes = model.rnn.to_nodes()
    with torch.no_grad():
        want, _ = egru_from_node(nodes).eval()(x.double())
    got = nb.run_egru_events(nodes, x.double().numpy()).output
    return bool(np.array_equal(got, want.numpy()))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=HERE / "out" / "data", help="DigitSaccades cache folder")
    ap.add_argument("--bins", type=int, default=15)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threshold-mean", type=float, default=0.3)
    ap.add_argument("--act-rate", type=float, default=5.0, help="weight of the event-rate regulariser")
    ap.add_argument("--target-rate", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1, help="torch and numba threads (1 is fastest on a shared machine)")
    ap.add_argument("--quick", action="store_true", help="a small smoke run (subset of the digits, 2 epochs)")
    ap.add_argument("--out", default=str(HERE / "out" / "egru_digit_saccades.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    subset = 64 if args.quick else None
    epochs = 2 if args.quick else args.epochs
    data = load(args.root, args.bins, subset)
    print(f"DigitSaccades frames: train {tuple(data['train'][0].shape)}, test {tuple(data['test'][0].shape)} (T, N, features)")
    results = {}
    for kind in ("egru", "gru"):
        results[kind] = run(kind, data, args.hidden, epochs, args.batch, args.lr, args.act_rate, args.target_rate, args.threshold_mean)
        print(f"{kind:4s} {results[kind]}")
    gap = results["gru"]["test_accuracy"] - results["egru"]["test_accuracy"]
    results["gru_minus_egru_points"] = round(100 * gap, 2)
    ok = gap <= 0.02 and results["egru"]["activity_sparsity"] >= 0.8
    print(f"GRU - EGRU accuracy = {100 * gap:.1f} points (target <= 2), EGRU activity sparsity = "
          f"{results['egru']['activity_sparsity']:.3f} (target >= 0.80): {'met' if ok else 'NOT met'}")
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
