"""Pinned installs: constraints.txt fixes every package that `make` installs, and `make` uses it."""

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parent.parent


def pins() -> dict[str, Version]:
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            assert pinned, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            found[canonicalize_name(name)] = Version(pinned)
    return found


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


def test_every_dependency_is_pinned_to_a_version_it_accepts():
    pinned = pins()
    for req in requirements():
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is not in constraints.txt: run `make constraints`"
        assert req.specifier.contains(pinned[name], prereleases=True), f"constraints.txt pins {req.name}=={pinned[name]}, outside {req}"


def test_the_environment_under_test_is_the_pinned_one():
    """The tests run in what constraints.txt describes (torch's +cpu local label aside)."""
    for name, pinned in pins().items():
        try:
            installed = Version(version(name))
        except PackageNotFoundError:
            continue  # a benchmark-only package (make bench installs it)
        assert Version(installed.public) == pinned, f"{name} {installed} is installed, constraints.txt pins {pinned}: run `make constraints`"


def test_make_installs_every_package_through_the_constraints():
    installs = [line for line in (ROOT / "Makefile").read_text().splitlines() if re.search(r"pip install\b", line)]
    assert installs
    for line in installs:
        if "--upgrade pip" in line:
            continue
        assert "-c constraints.txt" in line, f"Makefile installs without the constraints: {line.strip()}"
