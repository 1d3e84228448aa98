"""An snnTorch model, imported into spikeflow, trained, simulated event-driven, drawn as a raster.

snnTorch model -> ``sf.from_snntorch`` (through NIR) -> ``sf.Trainer`` (PyTorch, float32) ->
``sf.to_graph`` -> ``sf.simulate`` on numba-event -> ``sf.plots.spike_raster``. No demo wrappers;
see docs/training.md for each step. Run::

    python examples/snntorch_to_spikeflow.py [--out examples/out/snntorch] [--epochs 8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import snntorch as snn
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import spikeflow as sf
from spikeflow.train import RateEncoder

STEPS = 20


def main(out: Path, epochs: int) -> dict:
    torch.manual_seed(0)
    # 1. the snnTorch model, as an snnTorch user writes it (init_hidden=True: a plain Sequential)
    model = nn.Sequential(
        nn.Linear(64, 128), snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(128, 10), snn.Leaky(beta=0.9, init_hidden=True, output=True),
    )
    # 2. into spikeflow through NIR; dt is the time one snnTorch step stands for
    graph = sf.from_snntorch(model, torch.zeros(1, 64), dt=1e-3)

    # 3. train it: batch-first dense digits, rate-coded to [T, B, 64] spikes by the encoder
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.2, stratify=digits.target, random_state=0)
    trainer = sf.Trainer(graph, loss="count_ce", lr=2e-3, epochs=epochs, batch_size=32, encoder=RateEncoder(STEPS), seed=0)
    trainer.fit((x_train, y_train))
    print(f"torch (float32): test accuracy {trainer.evaluate((x_test, y_test))['acc']:.3f}")

    # 4. back to the IR, simulated event-driven on the same spikes (time-major [T, B, 64])
    trained = sf.to_graph(trainer.model)
    spikes = RateEncoder(STEPS)(torch.as_tensor(x_test), torch.Generator().manual_seed(1)).numpy()
    hidden = next(name for name, node in trained.flatten().nodes.items() if node.spiking)
    res = sf.simulate(trained, spikes, backend="numba-event", record=[hidden])
    acc = float((res.output.sum(0).argmax(-1) == y_test).mean())
    print(f"numba-event: test accuracy {acc:.3f}, {res.stats['synaptic_events'] / len(y_test):.0f} synaptic events per sample")

    # 5. one sample's spikes
    out.mkdir(parents=True, exist_ok=True)
    path = sf.plots.spike_raster({"input": spikes[:, 0], hidden: res.spikes[hidden][:, 0], "output": res.output[:, 0]},
                                 out / "raster.png", dt=trained.dt, title="one test digit")
    print(f"wrote {path}")
    return {"numba_acc": acc, "raster": path}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/out/snntorch"))
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    main(args.out, args.epochs)
