"""Run every benchmark script in this folder, then regenerate the README performance table."""

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

if __name__ == "__main__":
    for script in sorted(HERE.glob("[!_]*.py")):
        if script.name in ("run_all.py", "readme_table.py"):
            continue
        print(f"\n=== {script.name} ===", flush=True)
        runpy.run_path(str(script), run_name="__main__")
    import readme_table

    readme_table.update()
