"""Declarative pipelines: ``spikeflow run PIPELINE.toml`` (docs/pipeline.md).

A TOML file names the data, the model, training, evaluation on simulation backends, early-exit
calibration, exports to hardware targets and the report. It is checked against
:data:`~spikeflow.pipeline.schema.SCHEMA` before any work (errors name the key and the line), then
each stage runs or is taken from the cache, keyed by a hash of its options, the stages it reads
and the content of its input files.

Example:
    >>> from spikeflow.pipeline import STAGES
    >>> STAGES[0], STAGES[-1]
    ('data', 'report')
"""

from pathlib import Path

from spikeflow.pipeline.schema import SCHEMA, STAGES, Pipeline, PipelineError, load_pipeline

DEMO = Path(__file__).with_name("demo.toml")
"""The demo pipeline (``spikeflow demo``, ``make demo``), shipped as package data."""


def run_pipeline(path, **options):
    """Run a pipeline file; see :func:`spikeflow.pipeline.run.run_pipeline`."""
    from spikeflow.pipeline.run import run_pipeline as run

    return run(path, **options)


def stage_graph(result, stage):
    """The graph a stage of a run stored; see :func:`spikeflow.pipeline.run.stage_graph`."""
    from spikeflow.pipeline.run import stage_graph as graph

    return graph(result, stage)


__all__ = ["DEMO", "SCHEMA", "STAGES", "Pipeline", "PipelineError", "load_pipeline", "run_pipeline", "stage_graph"]
