"""``spikeflow bench``: run the benchmark scripts (``benchmarks/run_all.py`` of a source checkout)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from spikeflow.cli._common import EXIT_UNAVAILABLE

HELP = "run the benchmark scripts (benchmarks/run_all.py)"


def add_arguments(parser) -> None:
    return None


def run(args) -> int:
    candidates = [Path.cwd() / "benchmarks" / "run_all.py", Path(__file__).resolve().parents[2] / "benchmarks" / "run_all.py"]
    script = next((p for p in candidates if p.is_file()), None)
    if script is None:
        print("spikeflow bench: benchmarks/run_all.py not found (run from a source checkout)", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return subprocess.call([sys.executable, str(script)], cwd=script.parent.parent)
