"""The pipeline file: TOML read with the standard library, checked against a schema before any work.

Every error names the key (``[data] bins``) and the line of the file where it is (tomllib keeps no
positions, so :func:`line_of` finds the table header and the ``key =`` line by scanning the text).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spikeflow.errors import SpikeflowError

STAGES = ("data", "model", "train", "evaluate", "early_exit", "export", "report")
MODEL_SOURCES = ("zoo", "graph", "nir", "pretrained", "convert")
STRATEGY_ALIASES = {"lean": "bptt", "online": "ottt"}  # the contract's names -> spikeflow.train's
TASKS = ("classify", "next-char")  # next-char: the zoo's EGRU char-LM (spikeflow.pipeline.zoo_stages)


class PipelineError(SpikeflowError, ValueError):
    """A pipeline file that cannot run: names the key and, where found, the line."""


@dataclass(frozen=True)
class Key:
    """One schema entry: the accepted Python types and an optional extra check (returns a problem or None)."""

    types: tuple[type, ...]
    check: Any = None
    default: Any = None


def _min(low):
    return lambda v: None if v >= low else f"must be >= {low}"


def _fraction(v):
    return None if 0 <= v < 1 else "must be in [0, 1)"


def _positive(v):
    return None if v > 0 else "must be > 0"


def _choice(*choices):
    return lambda v: None if v in choices else f"must be one of {list(choices)}"


INT, FLOAT, STR, BOOL, TABLE, LIST = (int,), (int, float), (str,), (bool,), (dict,), (list,)

SCHEMA: dict[str, dict[str, Key]] = {
    "run": {"name": Key(STR), "seed": Key(INT, default=0), "out": Key(STR)},
    "data": {
        "dataset": Key(STR), "root": Key(STR, default="data"), "bins": Key(INT, _min(1), 8),
        "batch_size": Key(INT, _min(1), 64), "train_limit": Key(INT, _min(0), 0), "test_limit": Key(INT, _min(0), 0),
        "val_fraction": Key(FLOAT, _fraction, 0.1), "options": Key(TABLE, default={}),
    },
    "model": {
        "zoo": Key(STR), "graph": Key(STR), "nir": Key(STR), "pretrained": Key(STR), "convert": Key(STR),
        "dt": Key(FLOAT, _positive), "options": Key(TABLE, default={}),
    },
    "train": {
        "epochs": Key(INT, _min(0), 3), "lr": Key(FLOAT, _positive, 5e-3),
        "strategy": Key(STR, _choice("full", "bptt", "tbptt", "ottt", *STRATEGY_ALIASES), "full"),
        "tbptt": Key(INT, _min(0), 0), "chunk": Key(INT, _min(0), 0), "task": Key(STR, _choice(*TASKS), "classify"),
        "max_rate": Key(FLOAT, _min(0), 0.0), "rate_weight": Key(FLOAT, _min(0), 30.0),
        "fresh_spikes": Key(BOOL, default=False),
    },
    "evaluate": {
        "backends": Key(LIST, default=["torch", "numba-event"]), "samples": Key(INT, _min(1), 200),
        "record": Key(LIST, default=[]), "sample_limits": Key(TABLE, default={}),
    },
    "early_exit": {"backend": Key(STR, default="numba-event"), "max_accuracy_drop": Key(FLOAT, _fraction, 0.005),
                   "samples": Key(INT, _min(1), 200)},
    "export": {"target": Key(STR), "options": Key(TABLE, default={}), "samples": Key(INT, _min(0), 16),
               "robustness": Key(BOOL, default=True)},
    "report": {"enabled": Key(BOOL, default=True)},
}
"""Table -> key -> :class:`Key`. ``[[export]]`` is an array of tables; the rest are tables."""

GENERATED_DATASETS = ("digit-saccades", "spoken-digits")  # made by spikeflow in ``root``; every other dataset reads files there


# --------------------------------------------------------------------------- line numbers

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(r"^\s*([A-Za-z0-9_\-\"]+)\s*=")


def line_of(text: str, table: str, key: str | None = None, index: int = 0) -> int | None:
    """1-based line of ``key`` in ``[table]`` (or of the table's header when ``key`` is None or
    absent; ``index``: which ``[[table]]``), or None when neither is in the text."""
    current, seen, header_line, hit = None, -1, None, None
    for number, line in enumerate(text.splitlines(), 1):
        match = _HEADER.match(line)
        if match:
            name = match.group(2).replace('"', "").replace(" ", "")
            if name == table:
                seen += 1 if match.group(1) == "[[" else 0
                current = seen if match.group(1) == "[[" else 0
                if current == index and header_line is None:
                    header_line = number
            else:
                current = None if not name.startswith(table + ".") else current
                if name == f"{table}.{key}" and current == index:
                    return number  # [table.options] is the line of key "options"
            continue
        if current == index and key is not None and hit is None:
            assign = _ASSIGN.match(line)
            if assign and assign.group(1).strip('"') == key:
                hit = number
    return hit if hit is not None else header_line


# ------------------------------------------------------------------------------ loading


@dataclass
class Pipeline:
    """A checked pipeline file: ``config`` with every default filled in, its ``text`` and ``path``."""

    path: Path
    text: str
    config: dict[str, Any]

    @property
    def name(self) -> str:
        return self.config["run"]["name"]

    @property
    def out(self) -> Path:
        return Path(self.config["run"]["out"])

    def error(self, table: str, key: str | None, problem: str, index: int = 0) -> PipelineError:
        return _error(self.path, self.text, table, key, problem, index)


def _where(table: str, key: str | None, index: int) -> str:
    head = f"[[{table}]] #{index + 1}" if table == "export" else f"[{table}]"
    return head if key is None else f"{head} {key}"


def _error(path: Path, text: str, table: str, key: str | None, problem: str, index: int = 0) -> PipelineError:
    line = line_of(text, table, key, index)
    at = f"{path}:{line}" if line is not None else str(path)
    return PipelineError(f"{at}: {_where(table, key, index)}: {problem}")


def load_pipeline(path: str | Path, *, check_resources: bool = True, overrides: dict[str, dict[str, Any]] | None = None) -> Pipeline:
    """Read and check a pipeline file; return it with defaults filled in.

    Args:
        path: the TOML file.
        check_resources: also check what the file points at (dataset names and roots, model
            sources and files, backends, export targets and options), still before any work.
        overrides: ``{table: {key: value}}`` replacing the file's values before the checks (checked
            like them), e.g. ``{"data": {"root": "/data"}, "run": {"out": "/tmp/run"}}``.

    Raises:
        PipelineError: naming the key and line of the first problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PipelineError(f"{path}: cannot read the pipeline file ({err})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise PipelineError(f"{path}: not valid TOML: {err}") from None
    for table, values in (overrides or {}).items():
        if table == "export" or not isinstance(raw.get(table, {}), dict):
            raise PipelineError(f"{path}: overrides: cannot override [{table}]")
        raw[table] = {**raw.get(table, {}), **values}
    config = _check_types(path, text, raw)
    pipeline = Pipeline(path, text, config)
    if check_resources:
        from spikeflow.pipeline.checks import check_resources as check

        check(pipeline)
    return pipeline


def _check_types(path: Path, text: str, raw: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(raw) - set(SCHEMA))
    if unknown:
        raise _error(path, text, unknown[0], None, f"unknown table; known tables: {sorted(SCHEMA)}")
    config: dict[str, Any] = {}
    for table, keys in SCHEMA.items():
        if table not in raw:
            continue
        if table == "export":
            entries = raw[table]
            if not isinstance(entries, list):
                raise _error(path, text, table, None, "write each export as an [[export]] table (an array of tables)")
            config[table] = [_check_table(path, text, table, keys, entry, i) for i, entry in enumerate(entries)]
        else:
            if not isinstance(raw[table], dict):
                raise _error(path, text, table, None, f"expected a table, got {type(raw[table]).__name__}")
            config[table] = _check_table(path, text, table, keys, raw[table], 0)
    run = config.setdefault("run", _check_table(path, text, "run", SCHEMA["run"], {}, 0))
    run["name"] = run["name"] or path.stem
    run["out"] = run["out"] or str(Path("out") / run["name"])
    for needed in ("data", "model"):
        if needed not in config:
            raise _error(path, text, needed, None, f"the [{needed}] table is required")
    for key in ("dataset",):
        if config["data"][key] is None:
            raise _error(path, text, "data", key, "is required")
    sources = [s for s in MODEL_SOURCES if config["model"][s] is not None]
    if len(sources) != 1:
        raise _error(path, text, "model", sources[1] if len(sources) > 1 else None,
                     f"give exactly one model source of {list(MODEL_SOURCES)}; got {sources or 'none'}")
    if config["model"]["nir"] is not None and config["model"]["dt"] is None:
        raise _error(path, text, "model", "nir", "a NIR file needs [model] dt (seconds per step)")
    seen = set()
    for i, entry in enumerate(config.get("export", [])):
        if entry["target"] is None:
            raise _error(path, text, "export", "target", "is required", i)
        if entry["target"] in seen:
            raise _error(path, text, "export", "target", f"{entry['target']!r} is exported twice; give each target once", i)
        seen.add(entry["target"])
    for key in ("backends", "record"):
        values = config.get("evaluate", {}).get(key, [])
        if not all(isinstance(v, str) for v in values):
            raise _error(path, text, "evaluate", key, "expected a list of strings")
    for backend, limit in config.get("evaluate", {}).get("sample_limits", {}).items():
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise _error(path, text, "evaluate", "sample_limits", f"{backend!r}: expected an integer >= 1, got {limit!r}")
    train = config.get("train")
    if train is not None:
        train["strategy"] = STRATEGY_ALIASES.get(train["strategy"], train["strategy"])
        if train["strategy"] == "tbptt" and train["tbptt"] < 1:
            raise _error(path, text, "train", "tbptt", "strategy 'tbptt' needs tbptt = chunk length >= 1")
        if train["max_rate"] > 0 and (train["strategy"] != "full" or train["chunk"]):
            raise _error(path, text, "train", "max_rate", "the rate bound needs whole-sequence recordings: "
                         f"it does not combine with strategy {train['strategy']!r} or chunk (use strategy = 'full')")
    return config


def _check_table(path: Path, text: str, table: str, keys: dict[str, Key], values: dict[str, Any], index: int) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise _error(path, text, table, None, f"expected a table, got {type(values).__name__}", index)
    unknown = sorted(set(values) - set(keys))
    if unknown:
        raise _error(path, text, table, unknown[0], f"unknown key; known keys: {sorted(keys)}", index)
    out = {}
    for key, spec in keys.items():
        if key not in values:
            out[key] = dict(spec.default) if isinstance(spec.default, dict) else (
                list(spec.default) if isinstance(spec.default, list) else spec.default)
            continue
        value = values[key]
        # TOML booleans are Python bools, which are also ints: keep them apart
        wrong = isinstance(value, bool) != (spec.types == BOOL) or not isinstance(value, spec.types)
        if wrong:
            names = " or ".join(_TOML_NAMES[t] for t in spec.types)
            raise _error(path, text, table, key, f"expected {names}, got {_toml_name(value)} {value!r}", index)
        if spec.check is not None:
            problem = spec.check(value)
            if problem:
                raise _error(path, text, table, key, f"{problem}, got {value!r}", index)
        out[key] = float(value) if spec.types == FLOAT else value
    return out


_TOML_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "a boolean", dict: "a table", list: "an array"}


def _toml_name(value: Any) -> str:
    for kind in (bool, int, float, str, dict, list):
        if isinstance(value, kind):
            return _TOML_NAMES[kind]
    return type(value).__name__
