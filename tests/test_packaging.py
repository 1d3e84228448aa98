"""Packaging cannot forget a folder: every package folder is listed in pyproject.toml and ships in the wheel."""

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"spikeflow": ROOT / "spikeflow", "spikeflow.backends": ROOT / "backends", "spikeflow.datasets": ROOT / "datasets"}


def package_folders() -> dict[str, Path]:
    """Import name -> folder of every folder holding Python files under spikeflow/, backends/, datasets/."""
    found = {}
    for name, folder in FOLDERS.items():
        for init in folder.rglob("*.py"):
            parts = init.parent.relative_to(folder).parts
            if "__pycache__" in parts:
                continue
            found[".".join((name, *parts))] = init.parent
    return found


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    missing = sorted(set(package_folders()) - listed)
    assert not missing, f"pyproject.toml [tool.setuptools] packages lacks {missing}"
    assert all((package_folders()[p] / "__init__.py").is_file() for p in listed), "a listed package has no __init__.py"


def test_the_wheel_holds_every_module(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = next(tmp_path.glob("spikeflow-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for package, folder in package_folders().items():
        for source in folder.glob("*.py"):
            member = "/".join(package.split(".")) + "/" + source.name
            assert member in names, f"{member} is missing from {wheel.name}"
    # package data: the pretrained models, their index and test text, their recipes, and the demo pipeline
    models = ROOT / "spikeflow" / "models"
    data = [*models.glob("pretrained/*.h5"), *models.glob("pretrained/*.json"), *models.glob("pretrained/*.txt"), *models.glob("recipes/*.toml"),
            ROOT / "spikeflow" / "pipeline" / "demo.toml"]
    assert len(data) >= 11
    for path in data:
        member = "spikeflow/" + path.relative_to(ROOT / "spikeflow").as_posix()
        assert member in names, f"{member} is missing from {wheel.name}"
