"""numba-event: only nonzero values propagate (dense weight columns, CSR columns or a convolution
scatter), one sample at a time; :class:`Simulator` keeps state between chunks for online use.

Neuron state is still advanced every step for every neuron (leak needs it), in one pass that also
sums the neuron's inputs; the saving is in the synapses, where the work is proportional to the
number of spikes (nonzero inputs): spiking LIFs hand the list of their spiking neurons to the CSR
scatter. Event input streamed into :class:`Simulator` is binned into per-step entries that the
input op writes and clears one by one, so a large sparse input never exists as a dense array. An EGRU layer
likewise touches only the input rows of nonzero inputs and the recurrent-matrix columns of units
that emitted an event in the previous step.
"""

from __future__ import annotations

import math

import numpy as np

from spikeflow.errors import BackendError, DataError

from ..capabilities import Capabilities
from ..inputs import default_bin_width, event_bins, event_samples, prepare_inputs
from ..result import SimulationResult
from . import is_available  # noqa: F401  (the registry asks each backend module)

CAPABILITIES = Capabilities(engine="numba", precisions=("float64", "float32", "fixed"), event_driven=True, event_input=True,
                            early_exit=True, streaming=True)


def run(graph, inputs, *, record=(), precision="float64", sparse="auto"):
    """Simulate ``graph`` on checked inputs ``{Input name: [T, B, ...]}``; see :func:`spikeflow.simulate`."""
    from .engine import Engine

    return Engine(graph, backend="numba-event", event=True, precision=precision, sparse=sparse, record=record).run(inputs)


def run_events(graph, events, *, record=(), precision="float64", sparse="auto", bin_width=None, sensor_size=None):
    """Simulate ``graph`` on event arrays binned straight to per-step entries (never densified)."""
    sim = Simulator(graph, "numba-event", record=record, precision=precision, sparse=sparse, bin_width=bin_width, sensor_size=sensor_size)
    return sim.step(events)


class Simulator:
    """A streaming simulation: feed chunks with :meth:`step`; state carries over until :meth:`reset`.

    Feeding a sequence in chunks gives exactly the result of one call on the whole sequence.

    Args:
        graph: the graph to run.
        backend: "numba-event" (default) or "numba-clock".
        record: node names whose spikes / traces each step returns.
        precision: "float64", "float32", "fixed" or a FixedPoint.
        sparse: weight storage ("auto", True, False).
        bin_width: event bin width in µs (default: the graph's dt).
        sensor_size: (W, H, P) of event input.

    Example:
        >>> import numpy as np, spikeflow as sf
        >>> from spikeflow.backends import Simulator
        >>> g = sf.Graph.sequential(sf.ir.Linear(weight=np.ones((2, 3))), sf.ir.LIF(tau=0.01, v_threshold=0.5))
        >>> sim = Simulator(g)
        >>> sim.step(np.ones((4, 1, 3))).output.shape
        (4, 1, 2)
    """

    def __init__(self, graph, backend: str = "numba-event", *, record=(), precision="float64", sparse="auto",
                 bin_width: float | None = None, sensor_size=None):
        from .engine import Engine

        from spikeflow.backends import backend_names, capabilities

        streaming = [k for k in backend_names(streaming=True, engine="numba")]
        if backend not in streaming:
            raise BackendError(f"argument 'backend': streaming needs one of {streaming}, got {backend!r}")
        flat = graph.checked()
        self.shapes = {k: flat.nodes[k].shape for k in flat.inputs}
        self.dt = flat.dt
        self.bin_width = default_bin_width(flat.dt) if bin_width is None else float(bin_width)
        self.sensor_size = sensor_size
        self.engine = Engine(flat, backend=backend, event=capabilities(backend).event_driven, precision=precision, sparse=sparse, record=record)
        self.steps_done = 0

    def reset(self) -> None:
        """Back to rest: zero state, time 0."""
        self.engine.reset()
        self.steps_done = 0

    def step(self, chunk, n_steps: int | None = None) -> SimulationResult:
        """Advance by one chunk: dense ``[T, B, ...]`` values, or events (times in µs since the
        start of the stream; they must not lie before the current time). For events, ``n_steps``
        says how many steps to advance (default: through the bin of the last event)."""
        samples = event_samples(chunk)
        events = samples is not None
        if events and n_steps is None:
            last = max(int(math.floor(np.max(s["t"], initial=-1) / self.bin_width)) + 1 for s in samples)
            n_steps = max(last - self.steps_done, 0)
        if events and self.engine.event and len(self.shapes) == 1:  # binned straight to entries, never densified
            name, shape = next(iter(self.shapes.items()))
            inputs = {name: self._entries(samples, shape, n_steps)}
        else:
            inputs = prepare_inputs(chunk, self.shapes, dt=self.dt, bin_width=self.bin_width, sensor_size=self.sensor_size,
                                    n_steps=n_steps, first_bin=self.steps_done)
        result = self.engine.run(inputs)
        self.steps_done += result.stats["steps"]
        return result

    def _entries(self, samples, shape, n_steps: int):
        """Events of each sample binned into nonzero entries per step (counts per pixel), with the
        checks and the layout (``[P, H, W]`` flattened) of :func:`spikeflow.datasets.events.bin_events`."""
        size = math.prod(shape)
        sensor = self.sensor_size
        if sensor is None:
            if len(shape) != 3:
                raise DataError(f"argument 'inputs': events need sensor_size=(W, H, P) (the Input shape {shape} is not (P, H, W))")
            sensor = (shape[2], shape[1], shape[0])
        sensor = tuple(int(s) for s in sensor)
        rows, cols = [], []
        for b, events in enumerate(samples):
            bins, p, y, x, (polarities, height, width) = event_bins(events, sensor, self.bin_width, self.steps_done)
            if polarities * height * width != size:
                raise DataError(f"argument 'inputs': sensor_size {sensor} does not match the Input shape {shape}")
            keep = bins < n_steps
            rows.append((bins * len(samples) + b)[keep])
            cols.append(((p * height + y) * width + x)[keep])
        from .engine import SparseSteps
        from .kernels import bin_entries

        joined = (np.concatenate(v) if v else np.zeros(0, np.int64) for v in (rows, cols))
        indptr, indices, counts = bin_entries(*joined, n_steps * len(samples))
        return SparseSteps(n_steps, len(samples), indptr, indices, counts)
