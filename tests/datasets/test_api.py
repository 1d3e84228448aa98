"""The package's public names resolve lazily, and the docstring examples run."""

import doctest
import importlib
import subprocess
import sys

import pytest

import spikeflow as sf
import spikeflow.datasets as sd

MODULES = ["__init__", "events", "nmnist_bin", "store", "emulator", "digits", "tonic_sets", "encode", "plots"]


def test_public_names_resolve():
    assert sf.datasets is sd
    for name in sd.__all__:
        assert getattr(sd, name) is not None, name
    with pytest.raises(AttributeError):
        sd.no_such_name


def test_import_is_light():
    code = "import sys, spikeflow.datasets; print(sorted(m for m in ('torch', 'tonic', 'h5py', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mod = importlib.import_module("spikeflow.datasets" if module == "__init__" else f"spikeflow.datasets.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
