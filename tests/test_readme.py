"""The README's code runs and its claims about commands hold."""

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
