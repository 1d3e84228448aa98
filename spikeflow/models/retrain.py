"""Retraining and measuring the pretrained models (:mod:`spikeflow.models.pretrained`) from their recipes.

A recipe (``spikeflow/models/recipes/<name>.toml``) is a pipeline file (docs/pipeline.md);
:func:`retrain` runs it through the pipeline's own stages (:func:`spikeflow.pipeline.run_pipeline`)
and takes the trained graph from them: there is no second training route. :func:`evaluate` measures
a graph on the model's fixed evaluation data, the same way for the shipped figure and for the test
that reproduces it:

* ``digits-mlp``: the 360 test digits of :func:`spikeflow.workflows.digits_split`, rate-coded once with
  a generator seeded ``seed + 10``; class = the output's maximum membrane potential over time.
* ``saccade-cnn``: the 360 DigitSaccades test recordings (generated deterministically, seeded),
  binned; the same decision.
* ``egru-char-lm``: the shipped test text (``pretrained/egru-char-lm.test.txt``, 5% of CPython's
  reference-manual topics), cut into parallel streams and run from a zero state; bits per
  character and next-character accuracy of the logits.
* ``converted-exit``: the DigitSaccades test recordings, time-averaged frames fed at every step;
  the graph's stored exit policy decides when each sample stops (accuracy and mean steps).

Every evaluation runs the graph lowered by ``sf.to_torch`` in float64, so accuracies (counts of
correct samples) reproduce exactly and bits per character to rounding (tests use 1e-9 relative).
The digest of the evaluation input is stored too: a changed input is reported as such, not as a
wrong accuracy.

This module sits beside the pipeline, the demo and the command line in the layer order
(docs/architecture.md): it runs the pipeline and reads the exit package's policies.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from spikeflow._atomic import atomic_path
from spikeflow.errors import DataError, FormatError
from spikeflow.pipeline.stages import direct_encoding, predict
from spikeflow.models.pretrained import (
    INDEX_FORMAT, INDEX_PATH, INDEX_VERSION, PRETRAINED, PRETRAINED_DIR, _check_name, model_path, recipe_path,
)

TEXT_PATH = PRETRAINED_DIR / "egru-char-lm.test.txt"
EVAL_BATCH = 120  # samples per float64 forward pass (bounded memory)


# -------------------------------------------------------------------------------- recipes


def read_recipe(name_or_path: str | Path) -> dict[str, Any]:
    """The recipe of a shipped model by name, or any recipe file by path, as a dict.

    Raises:
        FormatError: the file cannot be read or is not valid TOML (names the file).
    """
    path = recipe_path(name_or_path) if name_or_path in PRETRAINED else Path(name_or_path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise FormatError(f"{path}: not a readable recipe ({type(err).__name__}: {err})") from None


def _section(recipe: dict, key: str) -> dict[str, Any]:
    value = recipe.get(key, {})
    if not isinstance(value, dict):
        raise FormatError(f"recipe key {key!r}: expected a table")
    return value


def _setting(recipe: dict, table: str, key: str, default: Any = None) -> Any:
    value = _section(recipe, table).get(key, default)
    if value is None:
        raise FormatError(f"recipe key '{table}.{key}' is required")
    return value


def _seed(recipe: dict) -> int:
    return int(_section(recipe, "run").get("seed", 0))


def _digest(*arrays: np.ndarray) -> str:
    sha = hashlib.sha256()
    for a in arrays:
        sha.update(np.ascontiguousarray(a).tobytes())
    return sha.hexdigest()


# -------------------------------------------------------------------------------- data


def digits_test(recipe: dict) -> tuple[np.ndarray, np.ndarray]:
    """The digits MLP's test input ``[T, N, 64]`` (spikes, float64) and labels."""
    import torch

    from spikeflow.workflows import _encoder, digits_split

    seed = _seed(recipe)
    data = digits_split(seed)
    x = _encoder(int(_setting(recipe, "data", "bins")))(torch.as_tensor(data["x_test"]), torch.Generator().manual_seed(seed + 10))
    return x.double().numpy(), data["y_test"]


def saccade_split(recipe: dict, root: str | Path, progress: bool = False) -> dict[str, np.ndarray]:
    """DigitSaccades frames ``[N, T, 2, 34, 34]`` at the recipe's bins: train / val (seeded) / test."""
    from spikeflow.workflows import saccade_data

    return saccade_data(root, int(_setting(recipe, "data", "bins")), None, 0.1, _seed(recipe), progress)


def shipped_test_text() -> str:
    """The char-LM's evaluation text, shipped beside its graph file."""
    try:
        return TEXT_PATH.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise FormatError(f"{TEXT_PATH}: the char-LM's test text is missing or unreadable ({err})") from None


# -------------------------------------------------------------------------------- evaluation


def _predict_max_membrane(graph, x_tn: np.ndarray) -> np.ndarray:
    """Predicted classes of ``x [T, N, ...]`` by the pipeline's readout rule (the output's maximum
    over time), float64, in batches."""
    import torch

    from spikeflow.torch.lowering import to_torch

    net = to_torch(graph, dtype=torch.float64).eval()
    preds = []
    with torch.no_grad():
        for start in range(0, x_tn.shape[1], EVAL_BATCH):
            xb = torch.from_numpy(np.ascontiguousarray(x_tn[:, start : start + EVAL_BATCH], dtype=np.float64))
            preds.append(predict(net(xb).numpy()))
    return np.concatenate(preds)


def _accuracy(pred: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    correct = int(np.sum(pred == labels))
    return {"accuracy": correct / len(labels), "correct": correct, "n": int(len(labels))}


def _eval_digits(graph, recipe, root, progress):
    x, y = digits_test(recipe)
    return {**_accuracy(_predict_max_membrane(graph, x), y), "data_sha256": _digest(x, y),
            "data": f"sklearn digits test split (seed {_seed(recipe)}), {x.shape[0]} Bernoulli steps (seed {_seed(recipe) + 10})"}


def _eval_saccade(graph, recipe, root, progress):
    data = saccade_split(recipe, root, progress)
    x = np.swapaxes(data["x_test"], 0, 1)
    return {**_accuracy(_predict_max_membrane(graph, x), data["y_test"]), "data_sha256": _digest(data["x_test"], data["y_test"]),
            "data": f"DigitSaccades test split, {x.shape[0]} bins"}


def char_lm_metrics(graph, text: str, streams: int) -> dict[str, Any]:
    """Bits per character, next-character accuracy and EGRU activity sparsity of a char-LM graph on ``text``.

    The text is cut into ``streams`` contiguous streams run in parallel from a zero state; every
    character but each stream's first is predicted once.
    """
    import torch

    from spikeflow.datasets.text import char_streams, encode_text
    from spikeflow.torch.lowering import to_torch

    vocabulary = graph.metadata.get("vocabulary")
    if not isinstance(vocabulary, str):
        raise FormatError("char-LM graph: metadata 'vocabulary' (the characters of its one-hot input) is missing")
    ids = torch.from_numpy(char_streams(encode_text(text, vocabulary), streams))
    x = torch.nn.functional.one_hot(ids[:-1], len(vocabulary)).double()
    net = to_torch(graph, dtype=torch.float64).eval()
    with torch.no_grad():
        logits, record = net.run(x, record=("egru",))
        target = ids[1:]
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum")
        correct = int((logits.argmax(-1) == target).sum())
    n = int(target.numel())
    return {"bits_per_char": float(nll) / n / math.log(2), "accuracy": correct / n, "correct": correct, "n": n,
            "activity_sparsity": float((record["egru"] == 0).double().mean())}


def _eval_char_lm(graph, recipe, root, progress, text: str | None = None):
    text = shipped_test_text() if text is None else text
    streams = int(_section(recipe, "evaluate").get("samples", 16))
    return {**char_lm_metrics(graph, text, streams), "data_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "data": f"pydoc_data.topics test part ({len(text)} characters) in {streams} streams"}


def _eval_converted(graph, recipe, root, progress):
    from spikeflow.exit import calibration as ee
    from spikeflow.exit.policy import get_exit_policy

    data = saccade_split(recipe, root, progress)
    x = direct_encoding(data["x_test"])
    outputs, labels = ee.network_outputs(graph, (x, data["y_test"]), batch_size=EVAL_BATCH)
    policy = get_exit_policy(graph)
    exit_run = ee.evaluate_outputs(outputs, labels, policy)
    full_pred = ee.decode(outputs, policy)[1][-1]
    exit_correct = int(round(exit_run["accuracy"] * len(labels)))
    return {"accuracy": exit_correct / len(labels), "correct": exit_correct, "n": int(len(labels)),
            "mean_steps": exit_run["mean_steps"], "full_steps": int(outputs.shape[0]),
            "accuracy_full_steps": _accuracy(full_pred, labels)["accuracy"], "threshold": float(policy.threshold),
            "data_sha256": _digest(x, labels), "data": f"DigitSaccades test split, {x.shape[1]} bins, time-averaged frame every step"}


EVALUATORS: dict[str, Callable] = {
    "digits-mlp": _eval_digits, "saccade-cnn": _eval_saccade, "egru-char-lm": _eval_char_lm, "converted-exit": _eval_converted,
}
TASKS = {"digits-mlp": "classify", "saccade-cnn": "classify", "egru-char-lm": "next-char", "converted-exit": "classify, early exit"}


def evaluate(name: str, graph, data_root: str | Path | None = None, progress: bool = False, **options) -> dict[str, Any]:
    """The test figures of pretrained model ``name`` for ``graph`` (see the module docstring).

    Args:
        name: a shipped model name (its recipe gives the data settings).
        graph: the graph to measure (the shipped one, or a retrained one).
        data_root: DigitSaccades cache folder (default: the recipe's ``data.root``).
        progress: progress bars while generating data.
        **options: ``text=`` for the char-LM (default: the shipped test text).
    """
    _check_name(name)
    recipe = read_recipe(name)
    root = Path(data_root if data_root is not None else _section(recipe, "data").get("root", "data"))
    return EVALUATORS[name](graph, recipe, root, progress, **options)


# -------------------------------------------------------------------------------- training


def retrain(name: str, out_dir: str | Path | None = None, data_root: str | Path | None = None, progress: bool = True,
            run_dir: str | Path | None = None) -> dict[str, Any]:
    """Retrain ``name`` by running its recipe through the pipeline, measure it, and write the sealed
    graph file.

    The recipe runs through :func:`spikeflow.pipeline.run_pipeline` up to the stage that makes the
    final graph (``train``; ``early_exit`` when the recipe calibrates an exit), in the recipe's
    run folder with its cache; that graph is measured by :func:`evaluate`, given its figures in
    ``metadata["pretrained"]``, saved, reloaded and measured again.

    Args:
        name: a shipped model name.
        out_dir: folder for ``<name>.h5`` (and the char-LM's ``.test.txt``); ``None`` replaces the
            shipped file inside the package and its index entry (maintainers).
        data_root: DigitSaccades cache folder (default: the recipe's ``data.root``).
        progress: progress bars.
        run_dir: the pipeline's run folder (default: the recipe's ``run.out``).

    Returns:
        The index entry of the new file (task, metrics, size, recipe, training seconds).
    """
    from spikeflow.io.hdf5 import load, save
    from spikeflow.pipeline import load_pipeline, run_pipeline, stage_graph

    _check_name(name)
    overrides: dict[str, dict[str, Any]] = {}
    if data_root is not None:
        overrides["data"] = {"root": str(data_root)}
    if run_dir is not None:
        overrides["run"] = {"out": str(run_dir)}
    config = load_pipeline(recipe_path(name), overrides=overrides).config
    last = "early_exit" if "early_exit" in config else "train"
    run = run_pipeline(recipe_path(name), until=last, quiet=not progress, overrides=overrides)
    graph = stage_graph(run, last)
    seconds = round(sum(run["seconds"].get(s, 0.0) for s in ("train", "early_exit")), 1)
    root = Path(config["data"]["root"])
    path = model_path(name) if out_dir is None else Path(out_dir) / f"{name}.h5"
    options = {}
    if name == "egru-char-lm":  # the test text this interpreter gives, shipped beside the graph
        from spikeflow.datasets.text import pydoc_topics_text, split_text

        options["text"] = split_text(pydoc_topics_text())["test"]
        text_path = TEXT_PATH if out_dir is None else path.with_suffix(".test.txt")
        text_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(text_path) as tmp:
            Path(tmp).write_text(options["text"], encoding="utf-8")
    metrics = evaluate(name, graph, root, progress, **options)
    recipe_name = f"spikeflow/models/recipes/{name}.toml"
    history = {"train": run["results"]["train"]["history"]}
    if last == "early_exit":
        history["early_exit"] = {k: run["results"]["early_exit"][k] for k in ("chosen", "test", "full")}
    graph.metadata["pretrained"] = {"name": name, "task": TASKS[name], "metrics": metrics, "recipe": recipe_name,
                                    "history": _plain(history), "train_seconds": seconds}
    path.parent.mkdir(parents=True, exist_ok=True)
    save(graph, path)
    again = evaluate(name, load(path), root, False, **options)  # the file, as a user reads it
    if again != metrics:
        raise DataError(f"{path}: the reloaded model measures {again}, not {metrics}")
    entry = {"task": TASKS[name], "description": PRETRAINED[name], "metrics": metrics, "bytes": path.stat().st_size,
             "file": f"spikeflow/models/pretrained/{path.name}", "recipe": recipe_name, "train_seconds": float(seconds)}
    if out_dir is None:
        write_index_entry(name, entry)
    return entry


def _plain(value):
    """JSON-ready copy: NaN (no validation) becomes None, NumPy numbers become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_index_entry(name: str, entry: dict[str, Any], path: str | Path = INDEX_PATH) -> None:
    """Add or replace ``name``'s entry in the shipped index (atomically)."""
    from spikeflow.models.pretrained import pretrained_index

    path = Path(path)
    models = pretrained_index(path) if path.exists() else {}
    models[name] = entry
    data = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "models": {k: models[k] for k in sorted(models)}}
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
