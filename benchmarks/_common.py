"""Shared benchmark plumbing: timing (warm-up, median of repeats), result records, the table.

Every script writes ``benchmarks/results/<script>.json``: a list of records
``{case, metric, ours, peer, peer_value, ratio, target_ratio}`` where ``ratio > 1`` means spikeflow
is better. The README's performance table is generated from these files.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("OMP_NUM_THREADS", "2")
RESULTS = Path(__file__).parent / "results"


def set_threads(n: int = 2) -> None:
    """Pin torch and numba to ``n`` threads so that peers run on equal terms."""
    import spikeflow as sf

    sf.set_threads(n)


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median wall-clock seconds of each ``fn()``, the contestants taking turns in every repeat.

    Interleaving spreads a shared machine's slow and fast moments over all contestants alike,
    where timing one after the other would hand a quiet minute to one of them.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def version(package: str) -> str:
    """The installed version of ``package`` (major.minor.patch as the registry reports it)."""
    from importlib.metadata import version as installed

    return installed(package)


def record(case: str, metric: str, ours: float, peer: str, peer_value: float, target_ratio: float, lower_is_better: bool = True) -> dict:
    """One result record; ``ratio`` > 1 means spikeflow is better; ``target_ratio`` 0: reported only."""
    ratio = peer_value / ours if lower_is_better else ours / peer_value
    return {
        "case": case,
        "metric": metric,
        "ours": float(ours),
        "peer": peer,
        "peer_value": float(peer_value),
        "ratio": float(ratio),
        "target_ratio": float(target_ratio),
    }


def write_results(script: str, records: list[dict]) -> Path:
    """Print the records as a table and write them to ``benchmarks/results/<script>.json``."""
    from spikeflow._atomic import atomic_path

    RESULTS.mkdir(parents=True, exist_ok=True)
    print(table(records))
    path = RESULTS / f"{Path(script).stem}.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(records, indent=2) + "\n")
    return path


def table(records: list[dict]) -> str:
    """A Markdown table of records."""
    lines = [
        "| case | metric | spikeflow | peer | peer value | ratio | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        ok = "yes" if r["ratio"] >= r["target_ratio"] else "no"
        target = f"{r['target_ratio']:.1f}x ({ok})" if r["target_ratio"] > 0 else "reported only"
        lines.append(
            f"| {r['case']} | {r['metric']} | {r['ours']:.4g} | {r['peer']} | {r['peer_value']:.4g} "
            f"| {r['ratio']:.2f}x | {target} |"
        )
    return "\n".join(lines)


def linear_layers(weights) -> list:
    """``torch.nn.Linear`` layers holding the given ``(weight, bias)`` tensors: every library in a
    benchmark starts from the same weights."""
    import torch

    layers = []
    for w, b in weights:
        layer = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            layer.weight.copy_(w)
            layer.bias.copy_(b)
        layers.append(layer)
    return layers
