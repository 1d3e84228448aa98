"""The run report: one self-contained HTML page per pipeline run, and its figures as PNG files.

``write_report(run, out_dir)`` turns the run dict of a pipeline (docs/pipeline.md) into
``out_dir/report.html``: input events as frames, spike rasters and membrane traces, training
curves, accuracy per backend, the early-exit accuracy/latency curve, per-layer activity, the
hardware exports (reloaded from their folders), stage timings and the pipeline file. Every figure
is also written beside the page as a PNG. See docs/report.md.
"""

from spikeflow.report.build import REPORT_NAME, write_report

__all__ = ["REPORT_NAME", "write_report"]
