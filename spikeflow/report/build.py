"""``write_report``: the run dict -> figures (PNG) and one HTML page in the report folder."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

from spikeflow.errors import DataError, SpikeflowError
from spikeflow.report import hardware, sections
from spikeflow.report.page import Figure, Section, Text, render, write_page

REPORT_NAME = "report.html"
#: Figure files start with their section's key; older ones of these that a run no longer draws are removed.
FIGURE_PREFIXES = ("overview-", "data-", "train-", "evaluate-", "activity-", "layers-", "early_exit-", "export-")
#: Errors a section shows on the page instead of losing the whole report (``strict=True`` raises them).
SECTION_ERRORS = (SpikeflowError, KeyError, TypeError, ValueError, OSError)


def write_report(run: Mapping, out_dir: str | os.PathLike, *, strict: bool = False) -> Path:
    """Write the report of one pipeline run; return the path of the HTML page.

    Args:
        run: the run dict of docs/pipeline.md: ``name`` (required), ``pipeline``, ``seconds``,
            ``cached``, ``data``, ``model``, ``train``, ``evaluate``, ``early_exit``, ``exports``.
            A stage that is missing gives a section that says it did not run.
        out_dir: the report folder: ``report.html`` and every figure as a PNG beside it.
        strict: raise the first problem of a section instead of showing it on the page (a
            section that cannot be drawn otherwise says why, and the rest of the page is kept).

    Raises:
        DataError: ``run`` is not a dict with a non-empty string ``name`` (or, with ``strict``,
            a part of it is malformed: the message names the key).
    """
    if not isinstance(run, Mapping):
        raise DataError(f"write_report: 'run' must be a dict (docs/pipeline.md), got {type(run).__name__}")
    name = run.get("name")
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"run['name']: expected a non-empty string, got {name!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"write_report: out_dir {str(out)!r} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    old_figures = {p for p in out.glob("*.png") if p.name.startswith(FIGURE_PREFIXES)}

    def draw(section: Section, builder: Callable[[], list]) -> Section:
        try:
            section.blocks = builder()
        except SECTION_ERRORS as exc:
            if strict:
                raise
            warnings.warn(f"report of run {name!r}, section {section.title!r}: {exc}", stacklevel=3)
            section.blocks = [Text(f"This section could not be drawn: {type(exc).__name__}: {exc}", "problem")]
        section.ran = not any(isinstance(b, Text) and b.kind == "skipped" for b in section.blocks)
        return section

    def one(key: str, title: str, builder) -> Section:
        return draw(Section(key, title), lambda: builder(run, out))

    page = [one("overview", "Stages and timings", sections.overview),
            one("data", "Input data", sections.data),
            one("model", "Model", sections.model),
            one("train", "Training", sections.train),
            one("evaluate", "Accuracy per backend", sections.evaluate),
            one("activity", "Spikes and membrane potentials", sections.activity),
            one("layers", "Activity per layer", sections.layers),
            one("early_exit", "Early exit", sections.early_exit),
            *hardware.export_sections(run, out, draw),
            one("pipeline", "Pipeline file", sections.pipeline_text)]
    written = {b.path for s in page for b in s.blocks if isinstance(b, Figure)}
    for stale in old_figures - written:
        stale.unlink(missing_ok=True)
    return write_page(out / REPORT_NAME, render(name, page, _subtitle(run)))


def _subtitle(run: Mapping) -> str:
    parts = []
    data, model = run.get("data"), run.get("model")
    if isinstance(data, Mapping) and data.get("dataset"):
        parts.append(f"data {data['dataset']}")
    if isinstance(model, Mapping) and model.get("source"):
        parts.append(f"model {model['source']}")
    return " · ".join(parts)
