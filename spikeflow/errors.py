"""The errors spikeflow raises on bad input: one family, messages that say what and where."""


class SpikeflowError(Exception):
    """Base of every error spikeflow raises on bad input."""


class GraphError(SpikeflowError, ValueError):
    """A graph or node is malformed: unknown type, bad field, shape mismatch, cycle without state."""


class FormatError(SpikeflowError, ValueError):
    """A file is not what it claims to be: truncated, wrong format, newer version, bad schema."""


class BackendError(SpikeflowError):
    """A backend cannot run a graph, is unknown, or is not installed."""


class DataError(SpikeflowError, ValueError):
    """Input data (tensors, events, datasets) has the wrong shape, dtype, values or files."""


def where(node: str | None = None, field: str | None = None) -> str:
    """Format a location prefix such as ``node 'lif1', field 'tau': ``."""
    parts = []
    if node is not None:
        parts.append(f"node {node!r}")
    if field is not None:
        parts.append(f"field {field!r}")
    return (", ".join(parts) + ": ") if parts else ""
