"""A sweep's folder: one JSON file per finished trial, written atomically the moment it finishes,
so a crash, a killed worker or a stopped driver never loses a finished trial; and the results
table (CSV and JSON) and Pareto plot made from those files.

Layout::

    OUT/sweep.json           the configuration's fingerprint (a resumed sweep must match it)
    OUT/trials/0003.json     {"trial", "params", "metrics", "status", "attempts", "worker", ...}
    OUT/results.csv, OUT/results.json, OUT/pareto.png
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from spikeflow._atomic import atomic_path
from spikeflow.errors import DataError, FormatError

_RECORD_KEYS = ("trial", "params", "metrics", "status")


class TrialStore:
    """The trial files of one sweep folder."""

    def __init__(self, out: str | Path, fingerprint: str):
        self.out = Path(out)
        self.trials_dir = self.out / "trials"
        meta = self.out / "sweep.json"
        if meta.exists():
            found = _read_json(meta).get("fingerprint")
            if found != fingerprint:
                raise DataError(f"sweep folder {str(self.out)!r} holds trials of a different configuration "
                                f"(fingerprint {str(found)[:12]}..., this config {fingerprint[:12]}...); use another --out")
        else:
            _write_json(meta, {"format": "spikeflow-sweep", "version": 1, "fingerprint": fingerprint})
        self.trials_dir.mkdir(parents=True, exist_ok=True)

    def path(self, trial: int) -> Path:
        return self.trials_dir / f"{trial:04d}.json"

    def save(self, record: dict[str, Any]) -> Path:
        """Write one finished trial atomically (a reader sees the old file or the whole new one)."""
        return _write_json(self.path(record["trial"]), record)

    def records(self) -> list[dict[str, Any]]:
        """Every stored trial, by trial number; a damaged file raises :class:`FormatError`."""
        out = []
        for path in sorted(self.trials_dir.glob("[0-9]*.json")):
            record = _read_json(path)
            missing = [k for k in _RECORD_KEYS if k not in record]
            if missing or not isinstance(record["trial"], int):
                raise FormatError(f"trial file {str(path)!r}: missing or bad field {(missing or ['trial'])[0]!r}")
            out.append(record)
        return sorted(out, key=lambda r: r["trial"])


def _write_json(path: Path, data: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    return path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FormatError(f"{str(path)!r}: not a readable JSON file ({err})") from None
    if not isinstance(data, dict):
        raise FormatError(f"{str(path)!r}: expected a JSON object, got {type(data).__name__}")
    return data


# ------------------------------------------------------------------------------ results


def table_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Flat rows (trial, status, attempts, seconds, each parameter, each metric) and their columns."""
    params = list(dict.fromkeys(k for r in records for k in r["params"]))
    metrics = list(dict.fromkeys(k for r in records for k in (r["metrics"] or {})))
    columns = ["trial", "status", "attempts", "seconds", *params, *metrics]
    rows = []
    for r in records:
        row = {"trial": r["trial"], "status": r["status"], "attempts": r.get("attempts", 1), "seconds": r.get("seconds")}
        row.update({k: r["params"].get(k) for k in params})
        row.update({k: (r["metrics"] or {}).get(k) for k in metrics})
        rows.append(row)
    return columns, rows


def write_table(records: list[dict[str, Any]], out: str | Path) -> dict[str, Path]:
    """Write ``results.csv`` and ``results.json`` into ``out``; return their paths."""
    out = Path(out)
    columns, rows = table_rows(records)
    paths = {"csv": out / "results.csv", "json": out / "results.json"}
    with atomic_path(paths["csv"]) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    _write_json(paths["json"], {"columns": columns, "rows": rows})
    return paths


def pareto_mask(values: np.ndarray, directions: list[str]) -> np.ndarray:
    """True for the non-dominated rows of ``values [n, k]`` (``directions[j]``: "max" or "min").

    Example:
        >>> pareto_mask(np.array([[0.9, 10.0], [0.8, 5.0], [0.7, 8.0]]), ["max", "min"]).tolist()
        [True, True, False]
    """
    v = np.asarray(values, dtype=np.float64) * np.array([1.0 if d == "max" else -1.0 for d in directions])
    keep = np.ones(len(v), dtype=bool)
    for i in range(len(v)):
        no_worse = (v >= v[i]).all(axis=1)
        better = (v > v[i]).any(axis=1)
        keep[i] = not (no_worse & better).any()
    return keep


def plot_pareto(records: list[dict[str, Any]], objectives: dict[str, str], path: str | Path) -> Path:
    """Scatter every finished trial on the first two objectives, the Pareto front drawn as a line
    and labelled by trial number (one objective: that metric against trial number)."""
    from spikeflow.plots import new_figure, save_png

    ok = [r for r in records if r["status"] == "ok"]
    names = list(objectives)
    fig = new_figure(6.0, 4.5)
    ax = fig.add_subplot()
    if ok:
        if len(names) >= 2:
            x_name, y_name = names[0], names[1]
            points = np.array([[r["metrics"][x_name], r["metrics"][y_name]] for r in ok], dtype=np.float64)
        else:
            x_name, y_name = "trial", names[0]
            points = np.array([[r["trial"], r["metrics"][y_name]] for r in ok], dtype=np.float64)
        front = pareto_mask(points if len(names) >= 2 else points[:, 1:], [objectives[n] for n in names[:2]])
        ax.scatter(points[~front, 0], points[~front, 1], color="0.6", label="trial")
        order = np.argsort(points[front, 0])
        ax.plot(points[front, 0][order], points[front, 1][order], "o-", color="C3", label="Pareto front")
        for r, (px, py) in zip([r for r, f in zip(ok, front) if f], points[front]):
            ax.annotate(str(r["trial"]), (px, py), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(f"{x_name} ({objectives.get(x_name, 'trial')})")
        ax.set_ylabel(f"{y_name} ({objectives[y_name]})")
        ax.legend()
    ax.set_title(f"sweep: {len(ok)} finished trials")
    return save_png(fig, path)
