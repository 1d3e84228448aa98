"""Training time per task: HLOP against plain fine-tuning and against exact-SVD projection.

The permuted-digits setting of ``examples/hlop_permuted_digits.py`` (784 -> 256 LIF -> 10 LI,
8 steps, 3 epochs per task). Each method first learns task 1; then the second task is trained
from that same state (checkpoint reloaded) once as warm-up and five times timed, the methods taking turns. The time counts
everything the method adds: projection of every gradient and step, and the end-of-task work
(HLOP's Hebbian phase, the exact method's SVD of the whole task's activity).

Run: ``python benchmarks/hlop.py``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import record, set_threads, write_results  # noqa: E402

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import spikeflow as sf  # noqa: E402
from spikeflow.continual import ContinualTrainer, ExactProjection, permuted_digits  # noqa: E402
from spikeflow.models import spiking_mlp  # noqa: E402
from spikeflow.continual.hlop import HLOP  # noqa: E402
from spikeflow.train.trainer import RateEncoder  # noqa: E402

SIZE, HIDDEN, STEPS, EPOCHS, REPEATS = 28, 256, 8, 3, 5
SUBSPACE = {"affine1": 48, "affine3": 20}


STRATEGIES = {
    "finetune": lambda: "finetune",
    "hlop": lambda: HLOP(SUBSPACE, lr=1.0, iterations=10, hebbian_epochs=2),
    "exact": lambda: ExactProjection(SUBSPACE),
}


def prepared(name: str, tasks, folder: Path) -> tuple[ContinualTrainer, Path]:
    """A trainer of one strategy that has learned task 1, and the checkpoint of that state."""
    ckpt = folder / f"{name}.h5"
    net = sf.to_torch(spiking_mlp(SIZE * SIZE, HIDDEN), dtype=torch.float32)
    trainer = ContinualTrainer(net, STRATEGIES[name](), optimizer="adam", lr=1.5e-3, epochs=EPOCHS, batch_size=32,
                               encoder=RateEncoder(STEPS), checkpoint=ckpt, progress=False)
    trainer.fit(tasks, stop_after=1)
    trainer.checkpoint = None
    return trainer, ckpt


def seconds_per_task(tasks, folder: Path) -> dict[str, float]:
    """Median seconds to train task 2 from the state after task 1, per strategy.

    The methods take turns within every repetition, so that a change in the load of a shared
    machine hits all of them alike; the first round is the warm-up.
    """
    runs = {name: prepared(name, tasks, folder) for name in STRATEGIES}
    times: dict[str, list[float]] = {name: [] for name in STRATEGIES}
    for i in tqdm(range(REPEATS + 1), desc="repetitions"):
        for name, (trainer, ckpt) in runs.items():
            trainer.load_checkpoint(ckpt)
            result = trainer.fit(tasks)
            if i:
                times[name].append(result.task_seconds[1])
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    set_threads(2)
    tasks = permuted_digits(2, size=SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        secs = seconds_per_task(tasks, Path(tmp))
    for name, s in secs.items():
        print(f"{name}: {s:.2f} s per task")
    case = f"train one permuted-digits task ({SIZE * SIZE}-{HIDDEN}-10 SNN, T={STEPS}, {EPOCHS} epochs)"
    records = [
        # HLOP may cost at most 1.5x plain fine-tuning
        record(case, "seconds per task", secs["hlop"], "plain fine-tuning (no protection)", secs["finetune"], 1 / 1.5),
        # the Hebbian phase should not cost more than an exact SVD of the task's activity
        record(case, "seconds per task", secs["hlop"], "exact-SVD projection (GPM-style)", secs["exact"], 0.8),
    ]
    write_results(__file__, records)


if __name__ == "__main__":
    main()
