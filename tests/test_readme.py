"""The README's code runs and its claims about commands hold."""

import importlib.util
import re
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_tour_runs(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python block"
    for code in blocks:
        exec(compile(code.replace("/tmp/", f"{tmp_path}/"), "README.md", "exec"), {})


def test_readme_states_the_two_commands_first():
    text = README.read_text()
    first_block = text.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block


def test_performance_table_is_the_one_the_benchmark_results_generate():
    """The README's table is written by benchmarks/readme_table.py from benchmarks/results/*.json
    only: `python benchmarks/readme_table.py` after a benchmark run, never an edit by hand."""
    spec = importlib.util.spec_from_file_location("readme_table", README.parent / "benchmarks" / "readme_table.py")
    readme_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme_table)
    text = README.read_text()
    assert text.count(readme_table.BEGIN) == 1 and text.count(readme_table.END) == 1
    table = text.split(readme_table.BEGIN, 1)[1].split(readme_table.END, 1)[0].strip()
    assert table == readme_table.render().strip(), "README table is stale: run `python benchmarks/readme_table.py`"
