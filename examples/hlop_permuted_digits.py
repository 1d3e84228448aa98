"""Continual learning on permuted digits: HLOP against fine-tuning, EWC, exact projection, multitask.

Ten tasks of rate-coded handwritten digits (scikit-learn's ``load_digits``, upsampled to 28x28, one
fixed pixel permutation per task) are learned one after another by a spiking MLP
(784 -> 256 LIF -> 10 leaky integrators, 8 time steps). Every strategy starts from the same weights
and seed. The script prints the ACC/BWT table, draws the accuracy matrices and per-task curves,
and writes the table into ``docs/hlop.md``. Run:

    python examples/hlop_permuted_digits.py [--out out/hlop] [--tasks 10] [--epochs 3]

It takes several minutes on two CPU cores (the multitask upper bound retrains on all data seen).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch

import spikeflow as sf
from spikeflow._atomic import atomic_path
from spikeflow.continual import (
    EWC, ContinualTrainer, ExactProjection, Multitask, permuted_digits, plot_accuracy_matrix, plot_task_curves,
)
from spikeflow.continual.hlop import HLOP
from spikeflow.models import spiking_mlp
from spikeflow.train.trainer import RateEncoder

CONFIG = {
    "size": 28, "hidden": 256, "steps": 8, "epochs": 3, "lr": 1.5e-3, "batch_size": 32, "seed": 0,
    # subspace neurons added per task: 10 tasks x 48 <= 784 inputs, 10 x 20 <= 256 hidden neurons
    "subspace": {"affine1": 48, "affine3": 20},
    "hlop": {"lr": 1.0, "iterations": 10, "hebbian_epochs": 2},
    "ewc_lambda": 1000.0,
}
LABELS = {"finetune": "fine-tuning", "ewc": "EWC", "exact": "exact projection (SVD, GPM-style)",
          "hlop": "HLOP (Hebbian)", "multitask": "multitask (upper bound)"}


def make_strategy(name: str, cfg: dict):
    return {
        "finetune": lambda: "finetune",
        "ewc": lambda: EWC(lam=cfg["ewc_lambda"]),
        "exact": lambda: ExactProjection(cfg["subspace"]),
        "hlop": lambda: HLOP(cfg["subspace"], **cfg["hlop"]),
        "multitask": lambda: Multitask(),
    }[name]()


def run(name: str, tasks, cfg: dict, out: Path, progress: bool = True):
    net = sf.to_torch(spiking_mlp(cfg["size"] ** 2, cfg["hidden"], seed=cfg["seed"]), dtype=torch.float32)
    trainer = ContinualTrainer(
        net, make_strategy(name, cfg), loss="membrane_max_ce", optimizer="adam", lr=cfg["lr"], epochs=cfg["epochs"],
        batch_size=cfg["batch_size"], seed=cfg["seed"], encoder=RateEncoder(cfg["steps"]),
        checkpoint=out / f"{name}.h5", progress=progress,
    )
    return trainer.fit(tasks, resume=True)


def table(results: dict) -> str:
    lines = ["| method | ACC (%) | BWT (points) |", "|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {LABELS[name]} | {100 * r.acc:.1f} | {100 * r.bwt:+.1f} |")
    return "\n".join(lines)


def write_docs(path: Path, text: str) -> None:
    """Replace the results block of ``docs/hlop.md`` (between its markers) with ``text``."""
    doc = path.read_text() if path.exists() else "<!-- results:start -->\n<!-- results:end -->\n"
    block = f"<!-- results:start -->\n{text}\n<!-- results:end -->"
    doc, count = re.subn(r"<!-- results:start -->.*?<!-- results:end -->", lambda _: block, doc, flags=re.S)
    if count != 1:
        raise SystemExit(f"{path}: expected one '<!-- results:start --> ... <!-- results:end -->' block, found {count}")
    with atomic_path(path) as tmp:
        tmp.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/hlop", help="folder for checkpoints, pictures and results.json")
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=CONFIG["epochs"])
    parser.add_argument("--strategies", default="finetune,ewc,exact,hlop,multitask")
    parser.add_argument("--docs", default=str(Path(__file__).resolve().parents[1] / "docs" / "hlop.md"),
                        help="markdown file whose results block gets the table ('' to skip)")
    parser.add_argument("--fresh", action="store_true", help="ignore checkpoints of an earlier run in --out "
                        "(by default a finished or interrupted strategy resumes from its checkpoint)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    cfg = {**CONFIG, "epochs": args.epochs}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [s for s in args.strategies.split(",") if s]
    if args.fresh:
        for name in names:
            (out / f"{name}.h5").unlink(missing_ok=True)
    tasks = permuted_digits(args.tasks, size=cfg["size"], seed=cfg["seed"])
    results = {}
    for name in names:
        results[name] = run(name, tasks, cfg, out)
        print(f"{LABELS[name]}: ACC {100 * results[name].acc:.1f}%, BWT {100 * results[name].bwt:+.1f} points")
    text = table(results)
    print(text)
    plot_accuracy_matrix({LABELS[k]: r.matrix for k, r in results.items()}, out / "accuracy_matrices.png",
                         title=f"permuted digits, {args.tasks} tasks")
    for name, r in results.items():
        plot_task_curves(r.matrix, out / f"curves_{name}.png", title=LABELS[name])
    summary = {k: {"acc": r.acc, "bwt": r.bwt, "matrix": r.matrix.tolist()} for k, r in results.items()}
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps({"config": cfg, "tasks": args.tasks, "results": summary}, indent=2) + "\n")
    if args.docs:
        settings = (f"{args.tasks} tasks, {cfg['size']}x{cfg['size']} inputs, {cfg['hidden']} LIF neurons, "
                    f"T = {cfg['steps']}, {cfg['epochs']} epochs per task, Adam lr {cfg['lr']}, seed {cfg['seed']}")
        write_docs(Path(args.docs), f"{settings}:\n\n{text}")
    print(f"pictures and results.json in {out}/")


if __name__ == "__main__":
    main()
