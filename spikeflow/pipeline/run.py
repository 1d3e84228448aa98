"""Run a pipeline file: check it, then run or reuse each stage in order, then write the report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from spikeflow.pipeline import stages as st
from spikeflow.pipeline.cache import Entry, file_digest, read_arrays, stage_key, write_json
from spikeflow.pipeline.checks import check_graph_fits
from spikeflow.pipeline.logs import Metrics
from spikeflow.pipeline.schema import STAGES, Pipeline, PipelineError, load_pipeline


class Context:
    """What the stages share: the checked file, the run folder, results and keys of the stages so
    far, and the data and graphs loaded on demand (a fully cached run loads neither)."""

    def __init__(self, pipeline: Pipeline, progress: bool):
        self.pipeline, self.config, self.progress = pipeline, pipeline.config, progress
        self.seed = int(self.config["run"]["seed"])
        self.out = pipeline.out
        self.cache = self.out / "cache"
        self.results: dict[str, Any] = {}
        self.entries: dict[str, Any] = {}
        self.keys: dict[str, Any] = {}
        self.seconds: dict[str, float] = {}
        self.cached: list[str] = []
        self.executed: list[str] = []
        self.metrics = Metrics(self.out / "logs")
        self._frames = None
        self._graphs: dict[str, Any] = {}

    @property
    def readout(self) -> str:
        """How outputs become classes: a converted ANN's rate code sums over time, the LI readouts
        of trained networks take their maximum."""
        return "sum" if self.config["model"]["convert"] is not None else "max"

    @property
    def graph_stage(self) -> str:
        """The stage whose graph the later stages use: the trained one when there is training."""
        return "train" if "train" in self.config else "model"

    def say(self, text: str) -> None:
        """One line of progress (none with --quiet)."""
        if self.progress:
            from tqdm import tqdm

            tqdm.write(text)

    def log(self, stage: str, step: int, values: dict[str, float]) -> None:
        self.metrics.log(stage, step, values)

    def frames(self) -> dict[str, np.ndarray]:
        """The data stage's frames; for a converted ANN, each split's time average fed at every
        step (direct encoding, as in QCFS conversion)."""
        if self._frames is None:
            self._frames = read_arrays(self.entries["data"].path(st.DATA))
            if self.config["model"]["convert"] is not None:
                for k in [k for k in self._frames if k.startswith("x_")]:
                    self._frames[k] = st.direct_encoding(self._frames[k]).astype(np.float32)
        return self._frames

    def graph(self, stage: str):
        if stage not in self._graphs:
            self._graphs[stage] = st.load_graph(self.entries[stage])
        return self._graphs[stage]

    def run_dict(self) -> dict[str, Any]:
        """The run as ``spikeflow.report.write_report`` takes it (docs/pipeline.md)."""
        r = self.results
        run: dict[str, Any] = {"name": self.pipeline.name, "pipeline": self.pipeline.text, "seconds": dict(self.seconds),
                               "cached": list(self.cached)}
        if "data" in r:
            run["data"] = {**{k: r["data"][k] for k in ("dataset", "bins", "step_us", "n_train", "n_test", "classes")},
                           "sensor_size": tuple(r["data"]["sensor_size"]), "examples": st.read_examples(self.entries["data"])}
        if "model" in r:
            run["model"] = {"graph": self.graph(self.graph_stage), "source": r["model"]["source"]}
        if "train" in r:
            run["train"] = {"history": r["train"]["history"], "strategy": r["train"]["strategy"]}
        if "evaluate" in r:
            ev = r["evaluate"]
            run["evaluate"] = {"backends": ev["backends"], "layers": ev["layers"], "record": st.read_record(self.entries["evaluate"], ev)}
        if "early_exit" in r:
            run["early_exit"] = r["early_exit"]
        if "export" in r:
            run["exports"] = {e["target"]: res for e, res in zip(self.config["export"], r["export"])}
        return run


def _keys(ctx: Context) -> dict[str, Any]:
    """Every stage's cache key, from the file alone (no work)."""
    c = ctx.config
    keys = {"data": stage_key("data", {**c["data"], "seed": ctx.seed, "format": st.DATA_FORMAT}, [])}
    model_files = [c["model"][k] for k in ("graph", "nir") if c["model"][k] is not None]
    model_options = {**c["model"], "seed": ctx.seed}
    if c["model"]["pretrained"] is not None:  # the shipped file's content, not its name: a retrained file reruns the model
        model_options["pretrained_sha256"] = _pretrained_digest(c["model"]["pretrained"])
    keys["model"] = stage_key("model", model_options, [keys["data"]], model_files)
    if "train" in c:
        keys["train"] = stage_key("train", {**c["train"], "batch_size": c["data"]["batch_size"], "seed": ctx.seed}, [keys["model"], keys["data"]])
    base = [keys[ctx.graph_stage], keys["data"]]
    for stage in ("evaluate", "early_exit"):
        if stage in c:
            keys[stage] = stage_key(stage, c[stage], base)
    if c.get("export"):
        keys["export"] = [stage_key("export", spec, base) for spec in c["export"]]
    if c.get("report", {"enabled": True})["enabled"]:
        keys["report"] = stage_key("report", {"text": ctx.pipeline.text}, [keys[k] for k in keys])
    return keys


def _pretrained_digest(name: str) -> str | None:
    """SHA-256 of the file ``sf.models.pretrained(name)`` reads (None when it is not installed: the
    model stage then raises the loader's clear error). Hashed by content rather than by path, so
    the key is the same wherever spikeflow is installed."""
    from spikeflow.models.pretrained import model_path

    path = model_path(name)
    return file_digest(path) if path.is_file() else None


def _run_stage(ctx: Context, stage: str, force: bool, allow_compute: bool) -> None:
    """Reuse the stage's cache entry (or entries, for exports), else run it."""
    keys = ctx.keys[stage] if stage == "export" else [ctx.keys[stage]]
    specs = ctx.config["export"] if stage == "export" else [None]
    entries = [Entry(ctx.cache, stage, key) for key in keys]
    results, ran, start = [], False, time.perf_counter()
    for entry, spec in zip(entries, specs):
        result = None if force else entry.load()
        if stage == "report" and result is not None and not st.report_is_current(result):
            result = None
        if result is None:
            if not allow_compute:
                raise PipelineError(f"--only: stage {stage!r} has no cached result for this file; run the stages before it first")
            entry.clear()
            ran = True
            ctx.say(f"[{stage}] running" + (f" ({spec['target']})" if spec else ""))
            result = st.run_export(ctx, entry, spec) if stage == "export" else getattr(st, f"run_{stage}")(ctx, entry)
        results.append(result)
    ctx.entries[stage] = entries if stage == "export" else entries[0]
    ctx.results[stage] = results if stage == "export" else results[0]
    if ran:
        ctx.seconds[stage] = time.perf_counter() - start
        ctx.executed.append(stage)
        ctx.say(f"[{stage}] done in {ctx.seconds[stage]:.1f} s")
    else:
        ctx.seconds[stage] = 0.0
        ctx.cached.append(stage)
        ctx.say(f"[{stage}] cached")
    if stage == "model":
        check_graph_fits(ctx.pipeline, ctx.graph("model"))


def run_pipeline(path: str | Path, *, from_stage: str | None = None, only: str | None = None, until: str | None = None,
                 quiet: bool = False, overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Check the pipeline file, then run its stages in order, reusing cached results.

    Args:
        path: the pipeline TOML file.
        from_stage: rerun this stage and every later one (earlier ones come from the cache, or run
            when they have no cached result).
        only: rerun only this stage; the stages before it must be cached; later ones do not run.
        until: stop after this stage (later stages do not run, e.g. ``until="train"`` to get a
            trained graph without evaluating it).
        quiet: no progress bars and no stage lines.
        overrides: ``{table: {key: value}}`` replacing the file's values (:func:`load_pipeline`).

    Returns:
        ``{"out", "report" (path or None), "seconds", "cached", "executed", "results", "folders"}``;
        ``folders[stage]`` is the stage's cache entry (``graph.h5`` of model, train and
        early_exit: :func:`stage_graph`).

    Raises:
        PipelineError: a bad file (before any work), or ``--only`` without cached inputs.
    """
    for option, value in (("--from", from_stage), ("--only", only), ("until", until)):
        if value is not None and value not in STAGES:
            raise PipelineError(f"{option}: unknown stage {value!r}; stages: {list(STAGES)}")
    if from_stage is not None and only is not None:
        raise PipelineError("give at most one of --from and --only")
    if until is not None and only is not None:
        raise PipelineError("give at most one of --only and until")
    pipeline = load_pipeline(path, overrides=overrides)
    ctx = Context(pipeline, progress=not quiet)
    ctx.keys = _keys(ctx)
    order = [s for s in STAGES if s in ctx.keys]
    for wanted in (from_stage, only, until):
        if wanted is not None and wanted not in order:
            raise PipelineError(f"stage {wanted!r} is not in {path} (its stages: {order})")
    start = time.perf_counter()
    if until is not None:
        order = order[: order.index(until) + 1]
    try:
        for stage in order:
            if only is not None:
                if order.index(stage) > order.index(only):
                    break
                _run_stage(ctx, stage, force=stage == only, allow_compute=stage == only)
            else:
                forced = from_stage is not None and order.index(stage) >= order.index(from_stage)
                _run_stage(ctx, stage, force=forced, allow_compute=True)
    finally:
        ctx.metrics.close()
    total = time.perf_counter() - start
    report = ctx.results.get("report", {}).get("path")
    summary = {"name": pipeline.name, "pipeline": str(path), "seconds": ctx.seconds, "total_seconds": total,
               "cached": ctx.cached, "executed": ctx.executed, "report": report,
               "results": {k: v for k, v in ctx.results.items() if k != "report"}}
    write_json(ctx.out / "run.json", summary)
    folders = {k: [e.folder for e in v] if isinstance(v, list) else v.folder for k, v in ctx.entries.items()}
    return {"out": ctx.out, "report": report, "seconds": ctx.seconds, "total_seconds": total, "cached": ctx.cached,
            "executed": ctx.executed, "results": ctx.results, "folders": folders}


def stage_graph(result: dict[str, Any], stage: str):
    """The graph a stage of a :func:`run_pipeline` result stored (model, train or early_exit)."""
    import spikeflow as sf

    if stage not in ("model", "train", "early_exit") or stage not in result["folders"]:
        raise PipelineError(f"stage {stage!r} stored no graph in this run (stages run: {sorted(result['folders'])})")
    return sf.load(Path(result["folders"][stage]) / st.GRAPH)
