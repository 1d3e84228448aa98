"""Checks of what a pipeline file points at, run before any work: dataset names and roots, model
sources, backends, export targets and their options (and, once the model is built, whether each
target can take it)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from spikeflow.errors import SpikeflowError
from spikeflow.pipeline.schema import GENERATED_DATASETS, Pipeline

# options the pipeline passes to a dataset or an export itself; a file may not set them
_DATASET_OWN = {"root", "train", "transform", "target_transform", "progress", "subset"}
_EXPORT_OWN = {"graph", "path", "samples", "picture"}


def check_resources(p: Pipeline) -> None:
    """Raise a :class:`~spikeflow.pipeline.schema.PipelineError` for the first problem found."""
    _check_data(p)
    _check_model(p)
    _check_backends(p)
    for i, entry in enumerate(p.config.get("export", [])):
        check_export_options(p, i, entry)


def _relative(p: Pipeline, value: str) -> Path:
    """Paths in the file are relative to the working folder, as on the command line."""
    return Path(value).expanduser()


def _check_data(p: Pipeline) -> None:
    from spikeflow.datasets import DATASETS, dataset  # noqa: F401  (dataset: the registry's constructor)

    from spikeflow.pipeline.zoo_stages import RATE_CODED, TEXT_DATASETS, ZOO_DATASETS

    data = p.config["data"]
    task = p.config.get("train", {}).get("task")
    next_char = task == "next-char"
    if task is not None and next_char != (data["dataset"] in TEXT_DATASETS):
        raise p.error("train" if next_char else "data", "task" if next_char else "dataset",
                      f"task 'next-char' and a text dataset {list(TEXT_DATASETS)} go together")
    if p.config.get("train", {}).get("fresh_spikes"):
        if data["dataset"] not in RATE_CODED:
            raise p.error("train", "fresh_spikes", f"needs a rate-coded dataset {list(RATE_CODED)} (its values are coded "
                                                   f"afresh every epoch); {data['dataset']!r} is not one")
        if p.config["model"]["convert"] is not None:
            raise p.error("train", "fresh_spikes", "an ANN to convert trains on values, not spikes: drop the key")
    if data["dataset"] in ZOO_DATASETS:
        return
    if data["dataset"] not in DATASETS:
        raise p.error("data", "dataset", f"unknown dataset {data['dataset']!r}; registered: {sorted(DATASETS)}")
    if data["dataset"] not in GENERATED_DATASETS and not _relative(p, data["root"]).is_dir():
        raise p.error("data", "root", f"{data['root']!r} does not exist: {data['dataset']} is read from files there "
                                      "(spikeflow never downloads)")
    import spikeflow.datasets as sd

    cls = getattr(sd, DATASETS[data["dataset"]])
    _check_signature(p, "data", "options", cls.__init__, data["options"], _DATASET_OWN)


def _check_signature(p: Pipeline, table: str, key: str, fn, options: dict[str, Any], own: set[str], index: int = 0) -> None:
    params = inspect.signature(fn).parameters
    if any(q.kind is q.VAR_KEYWORD for q in params.values()):
        return
    known = sorted(set(params) - own - {"self"})
    for name in options:
        if name in own or name not in params:
            raise p.error(table, key, f"unknown option {name!r}; known: {known}", index)


def _check_model(p: Pipeline) -> None:
    import spikeflow.models as models

    model = p.config["model"]
    if model["zoo"] is not None:
        if model["zoo"] not in models.MODELS:
            raise p.error("model", "zoo", f"unknown zoo model {model['zoo']!r}; the zoo has {sorted(models.MODELS)}")
        fn = models.MODELS[model["zoo"]]
        own = {"n_in", "bins"}  # sized from the data by the pipeline
        _check_signature(p, "model", "options", fn, model["options"], own)
    for key in ("graph", "nir"):
        if model[key] is not None and not _relative(p, model[key]).is_file():
            raise p.error("model", key, f"{model[key]!r}: no such file")
    if model["pretrained"] is not None:
        names = models.pretrained_names() if hasattr(models, "pretrained_names") else []
        if model["pretrained"] not in names:
            raise p.error("model", "pretrained", f"unknown pretrained model {model['pretrained']!r}; shipped: {names}")


    if model["convert"] is not None:
        from spikeflow.models.ann import ANNS

        if model["convert"] not in ANNS:
            raise p.error("model", "convert", f"unknown ANN {model['convert']!r}; known: {sorted(ANNS)}")
        _check_signature(p, "model", "options", ANNS[model["convert"]], model["options"], {"input_shape", "classes", "seed"})
        if "train" not in p.config:
            raise p.error("model", "convert", "an ANN to convert is trained first: add a [train] table (epochs, lr)")


def _check_backends(p: Pipeline) -> None:
    from spikeflow.backends import backend_names

    known = backend_names()
    evaluate = p.config.get("evaluate")
    if evaluate is not None:
        for name in evaluate["backends"]:
            if name not in known:
                raise p.error("evaluate", "backends", f"unknown backend {name!r}; registered: {known}")
        for name in evaluate["sample_limits"]:
            if name not in evaluate["backends"]:
                raise p.error("evaluate", "sample_limits", f"{name!r} is not in [evaluate] backends {evaluate['backends']}")
    early = p.config.get("early_exit")
    if early is not None:
        able = backend_names(early_exit=True)
        if early["backend"] not in able:
            raise p.error("early_exit", "backend", f"{early['backend']!r} cannot run early exit; backends that can: {able}")


def check_export_options(p: Pipeline, index: int, entry: dict[str, Any]) -> None:
    """The target exists and accepts the options (checked on the target's own option objects)."""
    from spikeflow.backends import _target, target_names

    targets = target_names()
    if entry["target"] not in targets:
        raise p.error("export", "target", f"unknown target {entry['target']!r}; registered: {targets}", index)
    options = entry["options"]
    module = _target(entry["target"])
    try:
        if entry["target"] == "spinnaker2":
            _check_signature(p, "export", "options", module.export, options, _EXPORT_OWN, index)
            from spikeflow.backends.spinnaker2.target import make_target

            make_target(options.get("chip"))
        elif entry["target"] == "rram-lsm":
            from spikeflow.backends.rram import Crossbar, Device

            rest = {k: v for k, v in options.items() if k not in ("device", "seed", "device_overrides")}
            Device.preset(options.get("device", "default"), **dict(options.get("device_overrides") or {}))
            Crossbar.from_options(**rest)
        else:
            _check_signature(p, "export", "options", module.export, options, _EXPORT_OWN, index)
    except SpikeflowError as err:
        raise p.error("export", "options", f"target {entry['target']!r} refuses them: {err}", index) from None
    except (TypeError, ValueError) as err:
        raise p.error("export", "options", f"target {entry['target']!r} refuses them: {err}", index) from None


def check_graph_fits(p: Pipeline, graph) -> None:
    """After the model stage (before training): every export target can map the graph, and the
    recorded nodes exist."""
    nodes = graph.flatten().nodes
    for name in p.config.get("evaluate", {}).get("record", []):
        if name not in nodes:
            raise p.error("evaluate", "record", f"no node {name!r} in the model; spiking nodes: "
                                                f"{sorted(k for k, v in nodes.items() if v.spiking)}")
    for i, entry in enumerate(p.config.get("export", [])):
        try:
            if entry["target"] == "spinnaker2":
                from spikeflow.backends.spinnaker2 import egru
                from spikeflow.backends.spinnaker2.check import check
                from spikeflow.backends.spinnaker2.target import make_target

                if not egru.is_egru_graph(graph):  # EGRU graphs take their own export path
                    check(graph, make_target(entry["options"].get("chip")))
            elif entry["target"] == "rram-lsm":  # node types and tiles (max_tiles): the mapping without programming
                from spikeflow.backends.rram.export import mapping

                mapping(graph, **entry["options"])
        except SpikeflowError as err:
            raise p.error("export", "target", f"target {entry['target']!r} cannot take this model: {err}", i) from None
