"""SpiNNaker 2-style target: check, quantise, partition, route, export, and a reference executor.

``sf.export(graph, target="spinnaker2", path=DIR, **options)`` runs the pipeline
(:func:`.export.export`: design-rule check, quantiser, partitioner and placer, router, writer) and
returns a :class:`.report.Report`; ``sf.load_export(DIR)`` returns a :class:`.executor.Program`
whose ``run`` is the bit-exact reference executor of the exported files. See docs/spinnaker2.md.
"""

from ..capabilities import Capabilities
from .check import DesignRuleError
from .executor import Program, load_export
from .export import export
from .partition import PlacementError
from .quantise import QuantisationError
from .report import Report
from .route import RoutingError
from .target import Target, precision

CAPABILITIES = Capabilities(kind="target", engine="spinnaker2", precisions=("fixed", "float32"), event_driven=True)
"""Spiking graphs run in the target's fixed point (``prog.precision``), EGRU graphs in float32."""

__all__ = ["DesignRuleError", "PlacementError", "Program", "QuantisationError", "Report", "RoutingError", "Target", "export",
           "load_export", "precision"]
