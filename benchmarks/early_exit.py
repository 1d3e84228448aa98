"""Early exit vs running every sample to T_max: wall-clock per sample and accuracy, same run.

Cases: numba-event at batch 1 (each sample simulated alone; early exit stops it at its exit step)
and torch at batch 64 (early exit runs adaptive chunks of steps through the module's state API,
``GraphModule.run_chunk``, drops finished samples after each chunk and admits the next waiting
samples in their place, so at most 64 are in flight; without early exit the test set runs in
batches of 64 to T_max), for the directly
trained and the converted DigitSaccades networks of ``examples/early_exit_digits.py`` (trained
there and saved with their calibrated policies; trained here if missing). The "peer" is the same
network without early exit; at batch 1 twice: the same compiled exit driver with a policy that
never stops before T_max (only the exit differs), and the streaming ``Simulator`` (the plain way
to run a sample to T_max, which also checks every step's input). Targets: 1.5x at batch 1, 1.3x
at batch 64.

Run: ``python benchmarks/early_exit.py [--samples 120]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))

from _common import median_time, record, set_threads, write_results

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "early_exit"


def load_models():
    from early_exit_digits import load_frames, main

    import spikeflow as sf

    if not all((OUT / f"{name}.h5").exists() for name in ("direct", "converted")):
        main(OUT, ROOT / "out" / "data", progress=True)
    data = load_frames(ROOT / "out" / "data")
    return {name: sf.load(OUT / f"{name}.h5") for name in ("direct", "converted")}, data


def numba_batch1(graph, x, labels):
    """Seconds per sample with early exit and without it (the same compiled driver with a policy
    that never stops before T_max, and the streaming ``Simulator``); accuracy with / without."""
    import dataclasses

    from spikeflow.backends import Simulator
    from spikeflow.exit.runners import ExitSimulator

    exit_sim = ExitSimulator(graph, "numba-event")
    t_max = exit_sim.policy.steps_for(x.shape[0])
    never = dataclasses.replace(exit_sim.policy, min_steps=t_max, max_steps=t_max)
    full_sim, stream = ExitSimulator(graph, "numba-event", policy=never), Simulator(graph, "numba-event")

    def full():
        return np.concatenate([full_sim.run(x[:, i : i + 1]).predictions for i in range(x.shape[1])])

    def streamed():
        preds = []
        for i in range(x.shape[1]):
            stream.reset()
            preds.append(int(stream.step(x[:t_max, i : i + 1]).output.sum(0)[0].argmax()))
        return np.array(preds)

    def early():
        return np.concatenate([exit_sim.run(x[:, i : i + 1]).predictions for i in range(x.shape[1])])

    n = x.shape[1]
    times = {name: median_time(fn, repeats=7) / n for name, fn in (("early", early), ("full", full), ("stream", streamed))}
    return times, (float(np.mean(full() == labels)), float(np.mean(early() == labels)))


def torch_batch64(graph, x, labels, batch=64):
    import torch

    import spikeflow as sf
    from spikeflow.exit.runners import TorchExitRunner

    net = sf.to_torch(graph, dtype=torch.float64).eval()
    runner = TorchExitRunner(graph)
    t_max = runner.policy.steps_for(x.shape[0])
    xt = torch.as_tensor(x)
    chunks = [xt[:, i : i + batch] for i in range(0, x.shape[1], batch)]

    def full():
        with torch.no_grad():
            return np.concatenate([net(c[:t_max]).sum(0).argmax(1).numpy() for c in chunks])

    def early():  # at most `batch` samples in flight; an exit makes room for the next sample
        return runner.run(xt, batch_size=batch).predictions

    n = x.shape[1]
    times = (median_time(full, repeats=5) / n, median_time(early, repeats=5) / n)
    return times, (float(np.mean(full() == labels)), float(np.mean(early() == labels)))


def main(samples: int) -> list[dict]:
    set_threads(2)
    models, data = load_models()
    from early_exit_digits import direct_encoding

    y_all = data["y_test"]
    records = []
    for name, graph in models.items():
        # as in the example: raw event frames for the direct net, the averaged frame for the converted one
        x = direct_encoding(data["x_test"]) if name == "converted" else data["x_test"]
        x_all = np.ascontiguousarray(np.swapaxes(x, 0, 1), dtype=np.float64)
        n = samples
        label = f"{name} SNN, numba-event batch 1 ({n} test samples)"
        times, (a_full, a_exit) = numba_batch1(graph, x_all[:, :n], y_all[:n])
        records.append(record(label, "seconds per sample", times["early"], "same net and driver, no early exit (T_max)", times["full"], 1.5))
        records.append(record(label, "seconds per sample", times["early"], "same net, no early exit, streaming Simulator", times["stream"], 1.5))
        records.append(record(label, "test accuracy", a_exit, "same net, no early exit (T_max)", a_full, 0.99, lower_is_better=False))
        n = x_all.shape[1]
        label = f"{name} SNN, torch batch 64 ({n} test samples)"
        (t_full, t_exit), (a_full, a_exit) = torch_batch64(graph, x_all, y_all)
        records.append(record(label, "seconds per sample", t_exit, "same net, no early exit (T_max)", t_full, 1.3))
        records.append(record(label, "test accuracy", a_exit, "same net, no early exit (T_max)", a_full, 0.99, lower_is_better=False))
    return records


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=120, help="test samples timed at batch 1")
    args = parser.parse_args()
    write_results(__file__, main(args.samples))
