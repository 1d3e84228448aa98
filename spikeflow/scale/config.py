"""Sweep configuration files (TOML), checked key by key.

Example::

    [sweep]
    objective = "digits_snn"     # a built-in objective, or "package.module:function"
    search = "grid"              # "grid" (every combination) or "optuna" (TPE, ask-and-tell)
    trials = 8                   # optuna: trials to run; grid: at most this many points (default all)
    seed = 0
    workers = 2                  # Ray actors (default: the cluster's CPUs)
    backend = "numba-event"      # the simulator each worker compiles once and reuses

    [sweep.objectives]           # metrics the objective returns, and which way is better;
    accuracy = "max"             # the first two are the Pareto plot's axes
    synaptic_events = "min"

    [params.hidden]
    values = [16, 32]            # a list: grid points, or Optuna's categorical choices
    [params.tau]
    low = 0.005                  # a range (optuna only); log = true samples log-uniformly,
    high = 0.05                  # integer = true draws integers
    log = true

    [options]                    # passed unchanged to the objective
    epochs = 1
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spikeflow.errors import DataError, FormatError

SEARCHES = ("grid", "optuna")
DIRECTIONS = ("max", "min")
_SWEEP_KEYS = {"objective", "search", "trials", "seed", "workers", "backend", "max_attempts", "objectives"}
_PARAM_KEYS = {"values", "low", "high", "log", "integer"}


@dataclass(frozen=True)
class Param:
    """One searched parameter: a list of ``values``, or a ``low``..``high`` range (Optuna only)."""

    name: str
    values: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False


@dataclass(frozen=True)
class SweepConfig:
    """A parsed, checked sweep configuration (see the module docstring for the file format)."""

    objective: str
    params: dict[str, Param]
    objectives: dict[str, str]
    search: str = "grid"
    trials: int | None = None
    seed: int = 0
    workers: int | None = None
    backend: str = "numba-event"
    max_attempts: int = 3
    options: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """SHA-256 of everything that decides which trials run and what they compute (not
        ``workers``), so a resumed sweep can refuse a folder written by a different one."""
        text = json.dumps({"objective": self.objective, "search": self.search, "trials": self.trials, "seed": self.seed,
                           "backend": self.backend, "objectives": self.objectives, "options": self.options,
                           "params": {k: vars(p) for k, p in self.params.items()}}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def _fail(source: str, key: str, message: str) -> DataError:
    return DataError(f"sweep config {source}: key {key!r}: {message}")


def _take(table: dict, key: str, types: tuple[type, ...], source: str, prefix: str, default: Any):
    if key not in table:
        if default is _REQUIRED:
            raise _fail(source, prefix + key, "is required")
        return default
    value = table[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        names = " or ".join(t.__name__ for t in types)
        raise _fail(source, prefix + key, f"expected {names}, got {type(value).__name__} {value!r}")
    return value


_REQUIRED = object()


def _unknown(table: dict, known: set[str], source: str, prefix: str) -> None:
    extra = sorted(set(table) - known)
    if extra:
        raise _fail(source, prefix + extra[0], f"unknown key; known: {sorted(known)}")


def _param(name: str, table: Any, search: str, source: str) -> Param:
    prefix = f"params.{name}."
    if not isinstance(table, dict):
        raise _fail(source, f"params.{name}", f"expected a table (values = [...] or low/high), got {type(table).__name__}")
    _unknown(table, _PARAM_KEYS, source, prefix)
    if "values" in table:
        values = _take(table, "values", (list,), source, prefix, _REQUIRED)
        if not values:
            raise _fail(source, prefix + "values", "is empty")
        for v in values:
            if not isinstance(v, (int, float, str, bool)):
                raise _fail(source, prefix + "values", f"expected numbers, strings or booleans, got {type(v).__name__}")
        if {"low", "high"} & set(table):
            raise _fail(source, prefix + "values", "give either values or low/high, not both")
        return Param(name, values=tuple(values))
    if search == "grid":
        raise _fail(source, prefix + "values", "the grid search needs a list of values for every parameter")
    low = _take(table, "low", (int, float), source, prefix, _REQUIRED)
    high = _take(table, "high", (int, float), source, prefix, _REQUIRED)
    log = _take(table, "log", (bool,), source, prefix, False)
    integer = _take(table, "integer", (bool,), source, prefix, False)
    if not low < high:
        raise _fail(source, prefix + "high", f"expected high > low, got low={low}, high={high}")
    if log and low <= 0:
        raise _fail(source, prefix + "low", f"a log range needs low > 0, got {low}")
    return Param(name, low=float(low), high=float(high), log=log, integer=integer)


def parse_config(data: dict, source: str = "<dict>") -> SweepConfig:
    """Check a decoded TOML document and build a :class:`SweepConfig`; errors name the key."""
    _unknown(data, {"sweep", "params", "options"}, source, "")
    sweep = _take(data, "sweep", (dict,), source, "", _REQUIRED)
    _unknown(sweep, _SWEEP_KEYS, source, "sweep.")
    objective = _take(sweep, "objective", (str,), source, "sweep.", _REQUIRED)
    search = _take(sweep, "search", (str,), source, "sweep.", "grid")
    if search not in SEARCHES:
        raise _fail(source, "sweep.search", f"expected one of {list(SEARCHES)}, got {search!r}")
    trials = _take(sweep, "trials", (int,), source, "sweep.", None)
    if trials is not None and trials < 1:
        raise _fail(source, "sweep.trials", f"expected at least 1, got {trials}")
    if search == "optuna" and trials is None:
        raise _fail(source, "sweep.trials", "is required with search = \"optuna\"")
    workers = _take(sweep, "workers", (int,), source, "sweep.", None)
    if workers is not None and workers < 1:
        raise _fail(source, "sweep.workers", f"expected at least 1, got {workers}")
    max_attempts = _take(sweep, "max_attempts", (int,), source, "sweep.", 3)
    if max_attempts < 1:
        raise _fail(source, "sweep.max_attempts", f"expected at least 1, got {max_attempts}")
    objectives = _take(sweep, "objectives", (dict,), source, "sweep.", _REQUIRED)
    if not objectives:
        raise _fail(source, "sweep.objectives", "name at least one metric, e.g. accuracy = \"max\"")
    for metric, direction in objectives.items():
        if direction not in DIRECTIONS:
            raise _fail(source, f"sweep.objectives.{metric}", f"expected \"max\" or \"min\", got {direction!r}")
    params_table = _take(data, "params", (dict,), source, "", _REQUIRED)
    if not params_table:
        raise _fail(source, "params", "name at least one parameter")
    params = {name: _param(name, table, search, source) for name, table in params_table.items()}
    options = _take(data, "options", (dict,), source, "", {})
    return SweepConfig(objective=objective, params=params, objectives=dict(objectives), search=search, trials=trials,
                       seed=_take(sweep, "seed", (int,), source, "sweep.", 0), workers=workers,
                       backend=_take(sweep, "backend", (str,), source, "sweep.", "numba-event"),
                       max_attempts=max_attempts, options=dict(options))


def load_config(path: str | Path) -> SweepConfig:
    """Read a sweep TOML file (see the module docstring); :class:`FormatError` for unreadable TOML,
    :class:`DataError` naming the key for a wrong or missing value."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise FormatError(f"sweep config {str(path)!r}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise FormatError(f"sweep config {str(path)!r}: not readable as UTF-8 text ({err})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise FormatError(f"sweep config {str(path)!r}: not valid TOML ({err})") from None
    return parse_config(data, repr(str(path)))
