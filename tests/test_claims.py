"""docs/claims.md traces each README claim to a test or a benchmark record: those must exist."""

import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
CLAIMS = (ROOT / "docs" / "claims.md").read_text()


def test_every_named_test_exists():
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", CLAIMS)
    assert len(named) >= 20
    for path, name in named:
        tree = ast.parse((ROOT / path).read_text())
        tests = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert name in tests, f"docs/claims.md names {path}::{name}, which does not exist"


def test_every_named_example_and_record_exists():
    for path in re.findall(r"`((?:examples|benchmarks/results)/[\w.]+\.(?:py|json))`", CLAIMS):
        assert (ROOT / path).exists(), f"docs/claims.md names {path}, which does not exist"
    simulate = json.loads((ROOT / "benchmarks" / "results" / "simulate.json").read_text())
    for metric in re.findall(r'`benchmarks/results/simulate.json`: metric "([^"]+)"', CLAIMS):
        assert any(r["metric"] == metric for r in simulate), f"no record with metric {metric!r} in simulate.json"
