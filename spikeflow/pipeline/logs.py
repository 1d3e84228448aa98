"""Metrics of a run: ``logs/metrics.csv`` and ``logs/metrics.jsonl`` always, TensorBoard event files
in ``logs/tensorboard/`` when tensorboardX is installed. Each run adds its rows (a ``time`` column
tells runs apart) as they are logged: training writes each epoch's row when the epoch ends, so
``tail -f out/NAME/logs/metrics.csv`` shows progress. The two files are logs, appended to, never
rewritten (a rewrite would replace the file under ``tail -f``); each call appends whole lines."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import time
from pathlib import Path
from typing import Any

COLUMNS = ("time", "stage", "step", "name", "value")


class Metrics:
    """Appends ``(stage, step, name, value)`` rows to the logs as they come; :meth:`close` ends TensorBoard's file."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S")
        self._writer = None
        # found, not imported: tensorboardX imports torch (seconds), which a cached rerun never needs
        self.tensorboard = importlib.util.find_spec("tensorboardX") is not None

    def log(self, stage: str, step: int, values: dict[str, float]) -> None:
        rows = []
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            rows.append({"time": self.started, "stage": stage, "step": int(step), "name": name, "value": float(value)})
            if self.tensorboard:
                if self._writer is None:
                    from tensorboardX import SummaryWriter

                    self._writer = SummaryWriter(logdir=str(self.folder / "tensorboard"))
                self._writer.add_scalar(f"{stage}/{name}", float(value), int(step))
        if not rows:
            return
        if self._writer is not None:
            self._writer.flush()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "metrics.csv"
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=COLUMNS)
        if not path.exists() or path.stat().st_size == 0:
            writer.writeheader()
        writer.writerows(rows)
        for file, lines in ((self.folder / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows)), (path, text.getvalue())):
            with open(file, "a", encoding="utf-8", newline="") as fh:
                fh.write(lines)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
