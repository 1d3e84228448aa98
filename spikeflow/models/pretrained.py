"""Pretrained models shipped with spikeflow: ``sf.models.pretrained(name)`` returns a trained graph.

Each model is a small sealed graph file (``spikeflow/models/pretrained/<name>.h5``, written by
:func:`spikeflow.save`, verified by :func:`spikeflow.load` before it is parsed), retrained by its
recipe ``spikeflow/models/recipes/<name>.toml`` (a pipeline file). Its measured test figures sit in
the file's metadata (``graph.metadata["pretrained"]``) and in ``pretrained/index.json``; the tests
reproduce them from the shipped file (:mod:`spikeflow.models.retrain` trains and measures).

Example:
    >>> import spikeflow as sf
    >>> g = sf.models.pretrained("digits-mlp")
    >>> g.metadata["pretrained"]["metrics"]["n"]
    360
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spikeflow.errors import FormatError, GraphError

PRETRAINED_DIR = Path(__file__).with_name("pretrained")
RECIPES_DIR = Path(__file__).with_name("recipes")
INDEX_PATH = PRETRAINED_DIR / "index.json"
INDEX_FORMAT = "spikeflow-pretrained-index"
INDEX_VERSION = 1

# name -> what it is (one line); the files, recipes and figures follow the name
PRETRAINED = {
    "saccade-cnn": "spiking CNN on DigitSaccades events (8 bins)",
    "digits-mlp": "spiking MLP 64-128-10 on rate-coded 8x8 digits",
    "egru-char-lm": "EGRU character language model on CPython's reference-manual topics",
    "converted-exit": "QCFS ANN converted to an IF SNN with a calibrated dynamic-confidence exit",
}
_ENTRY_KEYS = {"task": str, "description": str, "metrics": dict, "bytes": int, "file": str, "recipe": str, "train_seconds": float}


def pretrained_names() -> list[str]:
    """Names of the shipped pretrained models, sorted."""
    return sorted(PRETRAINED)


def _check_name(name: str) -> None:
    if name not in PRETRAINED:
        raise GraphError(f"unknown pretrained model {name!r}; known: {pretrained_names()}")


def model_path(name: str) -> Path:
    """The shipped graph file of ``name``."""
    _check_name(name)
    return PRETRAINED_DIR / f"{name}.h5"


def recipe_path(name: str) -> Path:
    """The recipe (pipeline file) that retrains ``name``."""
    _check_name(name)
    return RECIPES_DIR / f"{name}.toml"


def pretrained_index(path: str | Path = INDEX_PATH) -> dict[str, dict[str, Any]]:
    """The index of shipped models: name -> ``{task, description, metrics, bytes, file, recipe, train_seconds}``.

    Raises:
        FormatError: the index is missing, not JSON, of another format, or an entry lacks a key
            or has a value of the wrong type (names the model and key).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FormatError(f"{path}: not a readable pretrained-model index ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT or data.get("version") != INDEX_VERSION:
        found = (data.get("format"), data.get("version")) if isinstance(data, dict) else type(data).__name__
        raise FormatError(f"{path}: expected format {INDEX_FORMAT!r} version {INDEX_VERSION}, found {found}")
    models = data.get("models")
    if not isinstance(models, dict):
        raise FormatError(f"{path}: key 'models' must be an object")
    for name, entry in models.items():
        if not isinstance(entry, dict):
            raise FormatError(f"{path}: model {name!r}: expected an object, found {type(entry).__name__}")
        for key, kind in _ENTRY_KEYS.items():
            value = entry.get(key)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else isinstance(value, kind)
            if not ok:
                raise FormatError(f"{path}: model {name!r} key {key!r}: expected {kind.__name__}, found {value!r}")
    return models


def pretrained_info(name: str) -> dict[str, Any]:
    """The index entry of ``name`` (task, metrics, file size, recipe; see :func:`pretrained_index`)."""
    _check_name(name)
    index = pretrained_index()
    if name not in index:
        raise FormatError(f"{INDEX_PATH}: no entry for the pretrained model {name!r}")
    return index[name]


def pretrained(name: str):
    """The trained graph ``name`` (see :data:`PRETRAINED`), read from the file shipped with spikeflow.

    ``graph.metadata["pretrained"]`` holds the name, task, test figures, evaluation data and recipe.

    Raises:
        GraphError: ``name`` is not a shipped model (the message lists the known ones).
        FormatError: the file is missing or damaged (its seal is checked before it is parsed),
            or it holds another model than its name says.
    """
    from spikeflow.io.hdf5 import load

    path = model_path(name)
    if not path.is_file():
        raise FormatError(f"{path}: the pretrained model {name!r} is not installed (retrain it: spikeflow models --retrain {name})")
    graph = load(path)
    stamp = graph.metadata.get("pretrained")
    if not isinstance(stamp, dict) or stamp.get("name") != name:
        found = stamp.get("name") if isinstance(stamp, dict) else None
        raise FormatError(f"{path}: expected the pretrained model {name!r}, the file holds {found!r}")
    return graph
