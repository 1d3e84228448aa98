"""Metrics of a run: ``logs/metrics.csv`` and ``logs/metrics.jsonl`` always, TensorBoard event files
in ``logs/tensorboard/`` when tensorboardX is installed. Each run adds its rows (a ``time`` column
tells runs apart); both files are rewritten atomically."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import time
from pathlib import Path
from typing import Any

from spikeflow._atomic import atomic_path

COLUMNS = ("time", "stage", "step", "name", "value")


class Metrics:
    """Collects ``(stage, step, name, value)`` rows; :meth:`close` writes them."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.rows: list[dict[str, Any]] = []
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S")
        self._writer = None
        # found, not imported: tensorboardX imports torch (seconds), which a cached rerun never needs
        self.tensorboard = importlib.util.find_spec("tensorboardX") is not None

    def log(self, stage: str, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            self.rows.append({"time": self.started, "stage": stage, "step": int(step), "name": name, "value": float(value)})
            if self.tensorboard:
                if self._writer is None:
                    from tensorboardX import SummaryWriter

                    self._writer = SummaryWriter(logdir=str(self.folder / "tensorboard"))
                self._writer.add_scalar(f"{stage}/{name}", float(value), int(step))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if not self.rows:
            return
        jsonl = self.folder / "metrics.jsonl"
        old = jsonl.read_text() if jsonl.exists() else ""
        with atomic_path(jsonl) as tmp:
            tmp.write_text(old + "".join(json.dumps(r) + "\n" for r in self.rows))
        path = self.folder / "metrics.csv"
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=COLUMNS)
        if not path.exists():
            writer.writeheader()
        writer.writerows(self.rows)
        old = path.read_text() if path.exists() else ""
        with atomic_path(path) as tmp:
            tmp.write_text(old + text.getvalue())
        self.rows = []
