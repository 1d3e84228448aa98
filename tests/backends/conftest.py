"""Make ``spikeflow.backends`` importable even when the editable install maps ``backends/`` as a
top-level package (pyproject's ``packages.find`` includes ``backends*``): load it under its real
name from the repository."""

import importlib
import importlib.util
import sys
from pathlib import Path

try:
    importlib.import_module("spikeflow.backends")
except ModuleNotFoundError:
    _root = Path(__file__).resolve().parents[2] / "backends"
    _spec = importlib.util.spec_from_file_location("spikeflow.backends", _root / "__init__.py", submodule_search_locations=[str(_root)])
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["spikeflow.backends"] = _module
    _spec.loader.exec_module(_module)
