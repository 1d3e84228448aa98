"""Training and measuring the pretrained models (:mod:`spikeflow.models.pretrained`) from their recipes.

A recipe (``spikeflow/models/recipes/<name>.toml``) is a pipeline file (docs/pipeline.md): the
trainers here read its ``[data]``, ``[model]`` and ``[train]`` settings. :func:`evaluate` measures a
graph on the model's fixed evaluation data, the same way for the shipped figure and for the test
that reproduces it:

* ``digits-mlp``: the 360 test digits of :func:`spikeflow.demo.digits_split`, rate-coded once with
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

This module sits above the exit package (it calibrates the converted network) and beside the demo
and the command line in the layer order (docs/architecture.md).
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from spikeflow._atomic import atomic_path
from spikeflow.errors import DataError, FormatError
from spikeflow.models.pretrained import (
    INDEX_FORMAT, INDEX_PATH, INDEX_VERSION, PRETRAINED, PRETRAINED_DIR, _check_name, model_path, recipe_path,
)

TEXT_PATH = PRETRAINED_DIR / "egru-char-lm.test.txt"
EVAL_BATCH = 120  # samples per float64 forward pass (bounded memory)
# char-LM training settings the pipeline schema has no key for (those of examples/egru_language_model.py)
LM_SETTINGS = {"zoneout": 0.1, "act_rate": 5.0, "target_rate": 0.2, "act_warmup": 0.2, "clip": 1.0}
EXIT_MAX_DROP = 0.0025  # accuracy the exit may cost on validation (as examples/early_exit_digits.py)
WEIGHT_DECAY = 1e-4  # of the ANN trained for conversion (as examples/early_exit_digits.py and the pipeline)


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

    from spikeflow.demo import _encoder, digits_split

    seed = _seed(recipe)
    data = digits_split(seed)
    x = _encoder(int(_setting(recipe, "data", "bins")))(torch.as_tensor(data["x_test"]), torch.Generator().manual_seed(seed + 10))
    return x.double().numpy(), data["y_test"]


def saccade_split(recipe: dict, root: str | Path, progress: bool = False) -> dict[str, np.ndarray]:
    """DigitSaccades frames ``[N, T, 2, 34, 34]`` at the recipe's bins: train / val (seeded) / test."""
    from spikeflow.demo import saccade_data

    return saccade_data(root, int(_setting(recipe, "data", "bins")), None, 0.1, _seed(recipe), progress)


def direct_encoding(x: np.ndarray) -> np.ndarray:
    """The time-averaged frame fed unchanged at every step (the converted network's input), float64."""
    return np.repeat(x.astype(np.float64).mean(1, keepdims=True), x.shape[1], axis=1)


def shipped_test_text() -> str:
    """The char-LM's evaluation text, shipped beside its graph file."""
    try:
        return TEXT_PATH.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise FormatError(f"{TEXT_PATH}: the char-LM's test text is missing or unreadable ({err})") from None


# -------------------------------------------------------------------------------- evaluation


def _predict_max_membrane(graph, x_tn: np.ndarray) -> np.ndarray:
    """Predicted classes of ``x [T, N, ...]``: the output's maximum over time, float64, in batches."""
    import torch

    from spikeflow.torch.lowering import to_torch

    net = to_torch(graph, dtype=torch.float64).eval()
    preds = []
    with torch.no_grad():
        for start in range(0, x_tn.shape[1], EVAL_BATCH):
            xb = torch.from_numpy(np.ascontiguousarray(x_tn[:, start : start + EVAL_BATCH], dtype=np.float64))
            preds.append(net(xb).amax(0).argmax(-1).numpy())
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


def _train_digits(recipe, root, progress):
    from spikeflow.demo import train_digits

    options = _section(recipe, "model").get("options", {})
    with tempfile.TemporaryDirectory(prefix="sf_zoo_") as tmp:
        result = train_digits(tmp, epochs=int(_setting(recipe, "train", "epochs")), progress=progress,
                              hidden=int(options.get("hidden", 128)), steps=int(_setting(recipe, "data", "bins")),
                              lr=float(_setting(recipe, "train", "lr")), batch_size=int(_setting(recipe, "data", "batch_size")),
                              seed=_seed(recipe))
    return result["graph"], {"val_acc": result["trainer"].history["val_acc"]}


def _train_saccade(recipe, root, progress):
    import torch

    import spikeflow as sf
    from spikeflow.demo import CNN_DEFAULTS
    from spikeflow.models import build
    from spikeflow.train import RateUpperBound, Trainer

    data = saccade_split(recipe, root, progress)
    options = dict(_section(recipe, "model").get("options", {}))
    if "channels" in options:
        options["channels"] = tuple(options["channels"])
    graph = build(_setting(recipe, "model", "zoo"), bins=int(_setting(recipe, "data", "bins")), seed=_seed(recipe), **options)
    net = sf.to_torch(graph, dtype=torch.float32)
    # the demo's rate bound: fewer spikes, fewer synaptic events, no accuracy lost
    bound = RateUpperBound(("lif1", "lif2"), CNN_DEFAULTS["max_rate"], CNN_DEFAULTS["rate_weight"])
    trainer = Trainer(net, loss="membrane_max_ce", lr=float(_setting(recipe, "train", "lr")), epochs=int(_setting(recipe, "train", "epochs")),
                      batch_size=int(_setting(recipe, "data", "batch_size")), seed=_seed(recipe), progress=progress, regularizers=[bound])
    trainer.fit((data["x_train"], data["y_train"]), (data["x_val"], data["y_val"]))
    return sf.to_graph(net), {"val_acc": trainer.history["val_acc"]}


def train_char_lm(recipe: dict, progress: bool = True, text: str | None = None):
    """Train the EGRU char-LM of ``recipe`` on the train part of ``text`` (default: this Python's
    reference-manual topics); see :func:`fit_char_lm`.

    Returns:
        ``(graph, history)``: the graph carries its vocabulary in ``metadata["vocabulary"]``.
    """
    from spikeflow.datasets.text import encode_text, pydoc_topics_text, split_text
    from spikeflow.models import build

    parts = split_text(pydoc_topics_text() if text is None else text)
    vocabulary = "".join(sorted(set(parts["train"]) | set(parts["val"]) | set(parts["test"])))
    options = {k: v for k, v in _section(recipe, "model").get("options", {}).items() if k != "vocab"}
    init = build(_setting(recipe, "model", "zoo"), vocab=len(vocabulary), seed=_seed(recipe), **options)
    return fit_char_lm(init, vocabulary, encode_text(parts["train"], vocabulary), encode_text(parts["val"], vocabulary),
                       seq=int(_setting(recipe, "data", "bins")), batch=int(_setting(recipe, "data", "batch_size")),
                       epochs=int(_setting(recipe, "train", "epochs")), lr=float(_setting(recipe, "train", "lr")),
                       seed=_seed(recipe), progress=progress)


def fit_char_lm(init, vocabulary: str, train_ids: np.ndarray, val_ids: np.ndarray, *, seq: int, batch: int, epochs: int,
                lr: float, seed: int = 0, progress: bool = True):
    """Train a char-LM graph (``embed`` -> ``egru`` -> ``readout``, as :func:`spikeflow.models.egru_char_lm`)
    for next-character prediction; keep the epoch with the best validation bits per character.

    Truncated BPTT over chunks of ``seq`` characters of ``batch`` parallel streams (the state is
    carried between chunks), Adam with a one-cycle schedule peaking at ``lr``, gradient clipping,
    zoneout and an event-rate regulariser ramped in (:data:`LM_SETTINGS`).

    Returns:
        ``(graph, history)`` with ``history = {"train_bpc", "val_bpc", "kept_epoch"}``.
    """
    import torch
    from torch import nn
    from tqdm.auto import tqdm

    from spikeflow.datasets.text import char_streams
    from spikeflow.ir import nodes
    from spikeflow.ir.graph import Graph
    from spikeflow.torch.egru import egru_from_node

    class CharNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(len(vocabulary), init.nodes["embed"].weight.shape[0])
            self.rnn = egru_from_node(init.nodes["egru"], dtype=torch.float32, zoneout=LM_SETTINGS["zoneout"])
            self.readout = nn.Linear(init.nodes["readout"].weight.shape[1], len(vocabulary))
            with torch.no_grad():
                self.embed.weight.copy_(torch.from_numpy(init.nodes["embed"].weight.T))
                self.readout.weight.copy_(torch.from_numpy(init.nodes["readout"].weight))
                self.readout.bias.copy_(torch.from_numpy(init.nodes["readout"].bias))

        def forward(self, x, state=None):
            h, state = self.rnn(self.embed(x), state)
            return self.readout(h), state

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CharNet()
        train = torch.from_numpy(char_streams(train_ids, batch))
        val = torch.from_numpy(char_streams(val_ids, min(16, max(1, len(val_ids) // 2))))
        per_epoch = max(1, (len(train) - 1) // seq)
        total = epochs * per_epoch
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 2), pct_start=0.1)
        history: dict[str, Any] = {"train_bpc": [], "val_bpc": []}
        best, best_state, step = math.inf, None, 0
        for epoch in range(epochs):
            model.train()
            state, losses = None, []
            for i in tqdm(range(per_epoch), desc=f"char-LM: epoch {epoch + 1}/{epochs}", disable=not progress, leave=False):
                chunk = train[i * seq : (i + 1) * seq + 1]
                state = None if state is None else type(state)(*(s.detach() for s in state))
                logits, state = model(chunk[:-1], state)
                loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[1:].reshape(-1))
                ramp = min(1.0, step / (LM_SETTINGS["act_warmup"] * total))
                reg = model.rnn.activity_loss(rate=LM_SETTINGS["act_rate"], target_rate=LM_SETTINGS["target_rate"])
                opt.zero_grad()
                (loss + ramp * reg).backward()
                nn.utils.clip_grad_norm_(model.parameters(), LM_SETTINGS["clip"])
                opt.step()
                sched.step()
                step += 1
                losses.append(loss.item() / math.log(2))
            model.eval()
            with torch.no_grad():
                logits, _ = model(val[:-1])
                bpc = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), val[1:].reshape(-1)).item() / math.log(2)
            history["train_bpc"].append(float(np.mean(losses)))
            history["val_bpc"].append(bpc)
            if progress:
                tqdm.write(f"char-LM epoch {epoch + 1}/{epochs}: train bpc {history['train_bpc'][-1]:.3f}, val bpc {bpc:.3f}")
            if bpc < best:
                best, best_state = bpc, {k: v.detach().clone() for k, v in model.state_dict().items()}
        if best_state is not None:
            model.load_state_dict(best_state)
    (egru,) = model.rnn.to_nodes()
    layers = {
        "input": nodes.Input(shape=(len(vocabulary),)),
        "embed": nodes.Linear(weight=model.embed.weight.detach().double().numpy().T.copy()),
        "egru": egru,
        "readout": nodes.Affine(weight=model.readout.weight.detach().double().numpy(), bias=model.readout.bias.detach().double().numpy()),
        "output": nodes.Output(shape=(len(vocabulary),)),
    }
    names = list(layers)
    graph = Graph(layers, list(zip(names, names[1:])), dt=init.dt, metadata={**init.metadata, "vocabulary": vocabulary}).validate()
    history["kept_epoch"] = int(np.argmin(history["val_bpc"])) + 1 if history["val_bpc"] else 0
    return graph, history


def _train_char_lm(recipe, root, progress):
    return train_char_lm(recipe, progress)


def convert_ann(name: str, options: dict[str, Any], x_train: np.ndarray, y_train: np.ndarray, *, epochs: int, lr: float,
                batch_size: int = 64, seed: int = 0, progress: bool = True):
    """Train the ANN ``name`` of :data:`spikeflow.models.ann.ANNS` on time-averaged frames
    (cross-entropy, Adam with weight decay, cosine schedule), then convert it
    (:func:`spikeflow.convert.ann_to_snn`).

    Args:
        name: the ANN builder.
        options: its options.
        x_train: frames ``[N, T, ...]``; the ANN sees their mean over time.
        y_train: labels.
        epochs, lr, batch_size, seed: training settings.

    Returns:
        ``(graph, ann)``: the IF graph and the trained ANN (eval mode).
    """
    import torch
    from tqdm.auto import tqdm

    from spikeflow.convert import ann_to_snn
    from spikeflow.models.ann import ANNS

    if name not in ANNS:
        raise FormatError(f"recipe key 'model.convert': unknown ANN {name!r}; known: {sorted(ANNS)}")
    ann = ANNS[name](input_shape=tuple(x_train.shape[2:]), seed=seed, **options)
    x, y = torch.as_tensor(np.asarray(x_train)).float().mean(1), torch.as_tensor(np.asarray(y_train))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        opt = torch.optim.Adam(ann.parameters(), lr=float(lr), weight_decay=WEIGHT_DECAY)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
        gen = torch.Generator().manual_seed(seed)
        for _ in tqdm(range(epochs), desc="QCFS ANN", disable=not progress):
            ann.train()
            for idx in torch.randperm(len(y), generator=gen).split(int(batch_size)):
                loss = torch.nn.functional.cross_entropy(ann(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
    ann.eval()
    return ann_to_snn(ann, input_shape=tuple(x_train.shape[2:])), ann


def train_converted(recipe: dict, root: str | Path, progress: bool = True):
    """Train and convert the recipe's QCFS ANN on DigitSaccades (:func:`convert_ann`), then store
    the exit policy calibrated on the validation split (``[early_exit] max_accuracy_drop``)."""
    import torch

    from spikeflow.exit import calibrate
    from spikeflow.exit.policy import ExitPolicy

    data = saccade_split(recipe, root, progress)
    bins = int(_setting(recipe, "data", "bins"))
    graph, ann = convert_ann(_setting(recipe, "model", "convert"), _section(recipe, "model").get("options", {}), data["x_train"],
                             data["y_train"], epochs=int(_setting(recipe, "train", "epochs")), lr=float(_setting(recipe, "train", "lr")),
                             batch_size=int(_setting(recipe, "data", "batch_size")), seed=_seed(recipe), progress=progress)
    with torch.no_grad():
        ann_acc = float((ann(torch.as_tensor(data["x_test"]).float().mean(1)).argmax(1) == torch.as_tensor(data["y_test"])).float().mean())
    drop = float(_section(recipe, "early_exit").get("max_accuracy_drop", EXIT_MAX_DROP))
    calib = calibrate(graph, (direct_encoding(data["x_val"]), data["y_val"]), max_accuracy_drop=drop,
                      policy=ExitPolicy(output="output", threshold=1.0, max_steps=bins), progress=progress)
    calib.apply(graph)
    graph.metadata["input"] = f"DigitSaccades frames [2, 34, 34] of {bins} bins, time-averaged, fed at every step"
    levels = max(m.levels for m in ann.modules() if hasattr(m, "levels"))
    return graph, {"ann_test_acc": ann_acc, "levels": levels, "val_accuracy": float(calib.accuracy),
                   "val_mean_steps": float(calib.mean_steps)}


def _train_converted(recipe, root, progress):
    return train_converted(recipe, root, progress)


TRAINERS: dict[str, Callable] = {
    "digits-mlp": _train_digits, "saccade-cnn": _train_saccade, "egru-char-lm": _train_char_lm, "converted-exit": _train_converted,
}


def retrain(name: str, out_dir: str | Path | None = None, data_root: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Retrain ``name`` with its recipe, measure it, and write the sealed graph file.

    Args:
        name: a shipped model name.
        out_dir: folder for ``<name>.h5`` (and the char-LM's ``.test.txt``); ``None`` replaces the
            shipped file inside the package and its index entry (maintainers).
        data_root: DigitSaccades cache folder (default: the recipe's ``data.root``).
        progress: progress bars.

    Returns:
        The index entry of the new file (task, metrics, size, recipe, training seconds).
    """
    from spikeflow.io.hdf5 import load, save

    _check_name(name)
    recipe = read_recipe(name)
    root = Path(data_root if data_root is not None else _section(recipe, "data").get("root", "data"))
    start = time.perf_counter()
    graph, history = TRAINERS[name](recipe, root, progress)
    seconds = round(time.perf_counter() - start, 1)
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
