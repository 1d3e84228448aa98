"""Regenerate the performance table in README.md from benchmarks/results/*.json (never by hand)."""

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from _common import table  # noqa: E402

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def render() -> str:
    parts = []
    for path in sorted((HERE / "results").glob("*.json")):
        records = json.loads(path.read_text())
        if records:
            parts.append(f"**{path.stem}** (`benchmarks/{path.stem}.py`)\n\n{table(records)}")
    return "\n\n".join(parts) if parts else "_No benchmark results yet: run `make bench`._"


def update(readme: Path = HERE.parent / "README.md") -> None:
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme} lacks the {BEGIN} / {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{render()}\n{END}{tail}")


if __name__ == "__main__":
    update()
