"""The "brian2" backend: an independent check of the numba simulators, integrated by Brian2 itself.

Each neuron is written as its differential equation and integrated by Brian2's own state updater
(``method="exact"`` for the graph's ``integration="exact"``, ``"euler"`` for ``"euler"``); nothing
of spikeflow's discretisation (``spikeflow.ir.discretise``) is used, so an agreement with numba is
a check of both. The input ``x`` of a neuron is held over the step, as in the IR:

==============  ============================================================================
LIF, LI         ``dv/dt = (v_leak - v + r*(x + x_bias)) / tau``
CubaLIF, CubaLI ``di_syn/dt = (w_in*(x + x_bias) - i_syn) / tau_syn`` in one group, then
                ``dv/dt = (v_leak - v + r*i_syn) / tau_mem`` in a second group that reads the new
                ``i_syn`` through a linked variable (the current is held over the step)
IF, I           ``dv/dt = r*(x + x_bias) / second`` (Euler, exact for an input held over the step)
spikes          threshold ``v > v_threshold``; reset ``v = v_reset`` ("zero") or
                ``v = v - v_threshold`` ("subtract")
==============  ============================================================================

Between a spike source (an Input or a spiking neuron) and a neuron, a chain of stateless nodes
becomes one ``Synapses`` object with ``on_pre: x_post += w``: at most one Affine or Linear (its
nonzero entries, a sparse weight read from its CSR arrays), any Scale (folded into ``w``; the
``*_late_reset`` loop that :func:`spikeflow.from_snntorch` adds for snnTorch's subtract reset is
such a Scale), Flatten (indices are flat already) and Delay (Brian2 synaptic delays). An Affine
bias becomes the constant ``x_bias`` of its target. Inputs whose values are not 0/1 (frames,
currents) send a spike wherever they are nonzero and the synapse adds ``w * value`` read from a
``TimedArray``. See docs/brian2.md for what is refused and why.

Brian2 normally delivers a spike one step late; here every object is scheduled in the ``groups``
slot in the graph's execution order (deliver, update, clear the input, threshold, send, reset),
so a feed-forward spike arrives in the same step and a delayed edge (one that closes a cycle) one
step later, as in the IR. The batch is B copies of the network in one run.

Each call builds a fresh ``Network`` whose objects share one clock of ``dt`` (no ``defaultclock`` change),
and restores the code-generation preference and the device afterwards. Brian2 installs an
exception hook that asks users to report every uncaught error as a Brian2 bug; spikeflow's own
errors are shown without it.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import Any

import numpy as np

from spikeflow.errors import BackendError, DataError, GraphError, SpikeflowError
from spikeflow.ir import nodes as n

from .capabilities import Capabilities

CAPABILITIES = Capabilities(engine="brian2", precisions=("float64",))

NEURONS = (n.LIF, n.CubaLIF, n.LI, n.CubaLI, n.IF, n.I)
WEIGHTS = (n.Affine, n.Linear)
WIRES = WEIGHTS + (n.Scale, n.Flatten, n.Delay)
TARGETS = ("auto", "numpy", "cython", "cpp_standalone")
METHODS = {"exact": "exact", "euler": "euler"}
PROGRESS_PERIOD = 2.0  # seconds of wall time before a run shows a progress bar


def is_available() -> bool:
    """True when brian2 is installed."""
    return find_spec("brian2") is not None


def _import_brian2():
    """Import brian2 and keep its "report this bug to Brian 2" banner off spikeflow's own errors."""
    import brian2

    hook = sys.excepthook
    if getattr(hook, "__name__", "") == "brian_excepthook":
        def excepthook(kind, value, tb, brian_hook=hook):
            if isinstance(value, SpikeflowError):
                return sys.__excepthook__(kind, value, tb)
            return brian_hook(kind, value, tb)

        sys.excepthook = excepthook
    return brian2


# ------------------------------------------------------------------------------------- the plan


@dataclass
class _Chain:
    """One Synapses object: ``source`` (Input or spiking neuron) -> stateless nodes -> ``target``."""

    source: str
    target: str
    pre: np.ndarray  # gain per source element (Scale before the weight)
    post: np.ndarray | None = None  # gain per target element (Scale after the weight)
    weight: Any = None  # Affine/Linear weight [n_target, n_source]; None: one-to-one
    weight_node: str = ""
    delay_pre: np.ndarray | None = None  # steps per source element
    delay_post: np.ndarray | None = None  # steps per target element
    delayed_edges: int = 0
    via: list[str] = field(default_factory=list)

    def synapses(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(source index, target index, weight, delay in steps) of every synapse."""
        if self.weight is None:
            cols = rows = np.arange(self.pre.size, dtype=np.int64)
            values = np.ones(self.pre.size)
        else:
            rows, cols, values = _synapse_list(self.weight)
        w = values * self.pre[cols] * (self.post[rows] if self.post is not None else 1.0)
        steps = self.delay_pre[cols] + (self.delay_post[rows] if self.delay_post is not None else 0)
        keep = w != 0
        return cols[keep], rows[keep], w[keep], steps[keep]


@dataclass
class _Plan:
    flat: Any
    shapes: dict
    position: dict
    neurons: list
    chains: list
    biases: dict  # neuron -> flat bias of its input
    outputs: dict  # Output node -> the neuron or Input it shows


def _size(shapes, name) -> int:
    return math.prod(shapes[name])


def _flat_param(node, name: str, shape) -> np.ndarray:
    return np.broadcast_to(np.asarray(getattr(node, name), dtype=np.float64), shape).reshape(-1)


def _plan(graph, steps_of) -> _Plan:
    """Check the graph and lower its connections to chains; refuse, naming node and fix, what
    Brian2 cannot run (before Brian2 is imported)."""
    flat = graph.flatten()
    shapes = graph.shapes()
    order = flat.order()
    position = {k: i for i, k in enumerate(order)}
    cut = set(flat.delayed_edges())
    for name in order:
        node = flat.nodes[name]
        if not isinstance(node, (n.Input, n.Output) + NEURONS + WIRES):
            supported = ", ".join(t.__name__ for t in (n.Input, n.Output) + NEURONS + WIRES)
            raise BackendError(f"node {name!r} of type {type(node).__name__} is not supported by backend 'brian2' "
                               f"(it runs {supported}; see docs/brian2.md); use backend 'numba-event' or 'torch'")
        if flat.integration == "euler" and isinstance(node, NEURONS):
            for tau in ("tau", "tau_mem", "tau_syn"):
                if hasattr(node, tau) and np.any(flat.dt > np.asarray(getattr(node, tau))):
                    raise GraphError(f"node {name!r}: dt={flat.dt:g} exceeds {tau}={np.min(getattr(node, tau)):g}: "
                                     "forward Euler would oscillate; use a smaller dt or integration='exact'")
    chains, outputs = [], {}
    biases = {k: np.zeros(_size(shapes, k)) for k in order if isinstance(flat.nodes[k], NEURONS)}
    for source in order:
        node = flat.nodes[source]
        if isinstance(node, (n.Input,) + NEURONS):
            size = _size(shapes, source)
            _walk(flat, shapes, cut, steps_of, _Chain(source, "", np.ones(size), delay_pre=np.zeros(size, np.int64)), source, chains, outputs)
    for name in order:  # Affine biases reach their neurons through Scale / Flatten only
        node = flat.nodes[name]
        if isinstance(node, n.Affine) and np.any(node.bias != 0):
            _spread_bias(flat, shapes, cut, name, np.asarray(node.bias, dtype=np.float64), name, biases)
    neurons = [k for k in order if isinstance(flat.nodes[k], NEURONS)]
    return _Plan(flat, shapes, position, neurons, chains, biases, outputs)


def _walk(flat, shapes, cut, steps_of, chain: _Chain, here: str, chains: list, outputs: dict) -> None:
    source = flat.nodes[chain.source]
    for nxt in sorted(flat.successors(here)):
        node = flat.nodes[nxt]
        step = _Chain(**{**chain.__dict__, "via": chain.via + [nxt], "delayed_edges": chain.delayed_edges + ((here, nxt) in cut)})
        if isinstance(node, n.Output):
            if here != chain.source and any(not isinstance(flat.nodes[k], n.Flatten) for k in chain.via):
                raise BackendError(f"node {nxt!r}: backend 'brian2' reads outputs of neurons and inputs (through Flatten) only, "
                                   f"not of {here!r} ({type(flat.nodes[here]).__name__}); end the graph in an LI or LIF")
            outputs[nxt] = chain.source
            continue
        if not (isinstance(source, n.Input) or source.spiking):
            raise BackendError(f"node {chain.source!r} ({type(source).__name__}) does not spike, so backend 'brian2' cannot send its "
                               f"value on to {nxt!r}: Brian2 connects neurons by spikes; use a spiking neuron there")
        if isinstance(node, NEURONS):
            step.target = nxt
            chains.append(step)
        elif isinstance(node, WEIGHTS):
            if chain.weight is not None:
                raise BackendError(f"nodes {chain.weight_node!r} and {nxt!r}: backend 'brian2' needs a neuron between two weight "
                                   "layers (one Synapses object each); merge them into one Affine")
            step.weight, step.weight_node = node.weight, nxt
            _walk(flat, shapes, cut, steps_of, step, nxt, chains, outputs)
        elif isinstance(node, n.Scale):
            gain = _flat_param(node, "scale", shapes[nxt])
            if chain.weight is None:
                step.pre = chain.pre * gain
            else:
                step.post = gain if chain.post is None else chain.post * gain
            _walk(flat, shapes, cut, steps_of, step, nxt, chains, outputs)
        elif isinstance(node, n.Delay):
            delay = steps_of(np.broadcast_to(node.delay, shapes[nxt]).reshape(-1), nxt)
            if chain.weight is None:
                step.delay_pre = chain.delay_pre + delay
            else:
                step.delay_post = delay if chain.delay_post is None else chain.delay_post + delay
            _walk(flat, shapes, cut, steps_of, step, nxt, chains, outputs)
        else:  # Flatten: flat indices are unchanged
            _walk(flat, shapes, cut, steps_of, step, nxt, chains, outputs)


def _spread_bias(flat, shapes, cut, here: str, bias: np.ndarray, origin: str, biases: dict) -> None:
    for nxt in sorted(flat.successors(here)):
        node = flat.nodes[nxt]
        if (here, nxt) in cut or isinstance(node, n.Delay):
            raise BackendError(f"node {origin!r}: backend 'brian2' cannot delay an Affine bias (a recurrent or delayed edge "
                               "carries zero in the first steps); put the bias on the feed-forward input")
        if isinstance(node, NEURONS):
            biases[nxt] = biases[nxt] + bias
        elif isinstance(node, n.Scale):
            _spread_bias(flat, shapes, cut, nxt, bias * _flat_param(node, "scale", shapes[nxt]), origin, biases)
        elif isinstance(node, n.Flatten):
            _spread_bias(flat, shapes, cut, nxt, bias, origin, biases)
        else:
            raise BackendError(f"node {origin!r}: backend 'brian2' cannot pass an Affine bias through {nxt!r} ({type(node).__name__})")


def _steps_of(dt: float):
    def steps(delay: np.ndarray, name: str) -> np.ndarray:
        if not np.all(np.isfinite(delay)) or np.any(delay / dt > 2**31):
            raise BackendError(f"node {name!r}: delay {np.max(delay):g} s is not a usable number of steps of dt={dt:g}")
        return np.rint(delay / dt).astype(np.int64)

    return steps


# ---------------------------------------------------------------------------------------- run


def run(graph, inputs, *, record=(), precision="float64", target: str = "auto", directory: str | None = None,
        progress: bool | None = None):
    """Simulate in Brian2.

    Args:
        target: code generation of the runtime device: "auto" (Brian2's choice, cython when a
            compiler works), "numpy", "cython"; or "cpp_standalone" (compiled in ``directory``, a
            fresh temporary one by default).
        progress: a progress bar for runs longer than two seconds (None: only when stderr is a
            terminal; standalone runs print Brian2's own text report instead).
    """
    if precision != "float64":
        raise BackendError(f"argument 'precision': backend 'brian2' runs 'float64' only, got {precision!r}")
    if target not in TARGETS:
        raise BackendError(f"argument 'target': expected one of {TARGETS}, got {target!r}")
    plan = _plan(graph, _steps_of(graph.flatten().dt))
    unknown = [k for k in record if k not in plan.flat.nodes]
    if unknown:
        raise DataError(f"argument 'record': unknown node {unknown[0]!r}; nodes are {sorted(plan.flat.nodes)}")
    steps, batch = next(iter(inputs.values())).shape[:2]
    b2 = _import_brian2()
    dt = plan.flat.dt * b2.second
    saved_target = b2.prefs.codegen.target
    standalone = target == "cpp_standalone"
    show = sys.stderr.isatty() if progress is None else bool(progress)
    start = time.perf_counter()
    try:
        if standalone:
            b2.set_device("cpp_standalone", directory=directory or tempfile.mkdtemp(prefix="spikeflow_brian2_"), build_on_run=True)
        else:
            b2.prefs.codegen.target = target
        net, monitors = _build(b2, plan, inputs, batch, dt, record)
        with _Progress(steps, show and not standalone) as bar:
            report = ("stderr" if show else None) if standalone else (bar if show else None)
            net.run(steps * dt, namespace={}, report=report, report_period=PROGRESS_PERIOD * b2.second)
        result = _collect(plan, monitors, inputs, steps, batch, record)
    finally:
        b2.prefs.codegen.target = saved_target
        if standalone:
            from brian2.devices.device import reset_device

            b2.get_device().reinit()
            reset_device()
    result.stats["wall_time"] = time.perf_counter() - start
    return result


class _Progress:
    """A tqdm bar fed by Brian2's ``report`` callback; it appears only once a run has taken
    ``PROGRESS_PERIOD`` seconds (Brian2 calls back at the start, every period and at the end)."""

    def __init__(self, steps: int, enabled: bool):
        self.steps, self.enabled, self.bar = steps, enabled, None

    def __call__(self, elapsed, completed, start, duration):
        if not self.enabled or (self.bar is None and (float(elapsed) == 0 or completed >= 1)):
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.steps, desc="brian2: simulating", unit="step", leave=False)
        self.bar.update(int(completed * self.steps) - self.bar.n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def _equations(node) -> tuple[str, list[str]]:
    """The membrane equation of a neuron (CubaLI(F): its membrane part) and its parameters."""
    if isinstance(node, (n.LI, n.LIF)):
        return "dv/dt = (v_leak - v + r*(x + x_bias))/tau : 1", ["v_leak", "r"]
    if isinstance(node, (n.CubaLI, n.CubaLIF)):
        return "dv/dt = (v_leak - v + r*i_in)/tau_mem : 1", ["v_leak", "r"]
    return "dv/dt = r*(x + x_bias)/second : 1", ["r"]


def _build(b2, plan: _Plan, inputs, batch, dt, record):
    """The Brian2 objects, scheduled in the graph's order within each step."""
    flat, shapes, position = plan.flat, plan.shapes, plan.position
    method = METHODS[flat.integration]
    groups, monitors, objects, tables = {}, {}, [], {}
    clock = b2.Clock(dt, name="sf_clock")  # one clock: Brian2 steps several clocks more slowly
    for name, x in inputs.items():
        size = _size(shapes, name)
        values = x.reshape(x.shape[0], batch * size)
        t_idx, i_idx = np.nonzero(values)
        g = b2.SpikeGeneratorGroup(size * batch, i_idx.astype(np.int64), t_idx * dt, clock=clock, when="groups",
                                   order=10 * position[name] + 3, sorted=False, name=f"sf_input_{position[name]}")
        if not np.isin(values[t_idx, i_idx], (1.0,)).all():  # values ride on the spikes
            tables[name] = b2.TimedArray(values, dt=dt, name=f"sf_values_{position[name]}")
        groups[name] = g
        objects.append(g)
    for name in plan.neurons:
        node, size, base = flat.nodes[name], _size(shapes, name), 10 * position[name]
        shape = shapes[name]
        current = isinstance(node, (n.CubaLI, n.CubaLIF))
        receiver = None
        if current:  # the synaptic current: its own group, integrated first
            receiver = b2.NeuronGroup(size * batch, "\n".join([
                "di_syn/dt = (w_in*(x + x_bias) - i_syn)/tau_syn : 1", "x : 1", "x_bias : 1 (constant)",
                "w_in : 1 (constant)", "tau_syn : second (constant)"]), method=method, clock=clock, name=f"sf_{base}_current")
            receiver.w_in = np.tile(_flat_param(node, "w_in", shape), batch)
            receiver.tau_syn = np.tile(_flat_param(node, "tau_syn", shape), batch) * b2.second
            receiver.state_updater.when, receiver.state_updater.order = "groups", base
            objects.append(receiver)
        equation, params = _equations(node)
        lines = [equation] + [f"{p} : 1 (constant)" for p in params]
        lines += ["i_in : 1 (linked)"] if current else ["x : 1", "x_bias : 1 (constant)"]
        if hasattr(node, "tau") or hasattr(node, "tau_mem"):
            lines.append(("tau_mem" if current else "tau") + " : second (constant)")
        kwargs = {}
        if node.spiking:
            lines += ["v_threshold : 1 (constant)", "v_reset : 1 (constant)"]
            kwargs = {"threshold": "v > v_threshold", "reset": "v = v - v_threshold" if node.reset == "subtract" else "v = v_reset"}
        # dv/dt = r*x has no v in it: Brian2's linear solver refuses it, and Euler is exact for it
        exact_anyway = "euler" if isinstance(node, (n.I, n.IF)) else method
        g = b2.NeuronGroup(size * batch, "\n".join(lines), method=exact_anyway, clock=clock, name=f"sf_{base}", **kwargs)
        for p in params + (["v_threshold", "v_reset"] if node.spiking else []):
            setattr(g, p, np.tile(_flat_param(node, p, shape), batch))
        for tau in ("tau", "tau_mem"):
            if hasattr(node, tau):
                setattr(g, tau, np.tile(_flat_param(node, tau, shape), batch) * b2.second)
        if current:
            g.i_in = b2.linked_var(receiver, "i_syn")
        receiver = receiver or g
        receiver.x_bias = np.tile(plan.biases[name], batch)
        g.state_updater.when, g.state_updater.order = "groups", base + 1
        # the input is held over one step: cleared once the step's update has used it
        clear = receiver.run_regularly("x = 0", clock=clock, when="groups", order=base + 2, name=f"sf_{base}_clear")
        objects += [g, clear]
        if node.spiking:
            g.thresholder["spike"].when, g.thresholder["spike"].order = "groups", base + 3
            g.resetter["spike"].when, g.resetter["spike"].order = "groups", base + 5
            monitors[name] = b2.SpikeMonitor(g, when="end", name=f"sf_{base}_spikes")
            objects.append(monitors[name])
        if name in record or not node.spiking:
            monitors[name + ":v"] = b2.StateMonitor(g, "v", record=True, clock=clock, when="end", name=f"sf_{base}_v")
            objects.append(monitors[name + ":v"])
        groups[name] = (receiver, g)
    for k, chain in enumerate(plan.chains):
        objects.append(_synapses(b2, plan, chain, groups, tables, batch, clock, k))
    # fixed names: the generated code, and so Cython's compile cache, is the same on every call
    return b2.Network(*objects, name="sf_network"), monitors


def _synapses(b2, plan: _Plan, chain: _Chain, groups, tables, batch, clock, k: int):
    """One Synapses object for ``chain``, its delays set so that it lands in the IR's step."""
    position, shapes = plan.position, plan.shapes
    src = groups[chain.source]
    src = src[1] if isinstance(src, tuple) else src  # a neuron sends from its membrane group
    dst = groups[chain.target][0]  # and receives in its first group (the current of a CubaLIF)
    i, j, w, steps = chain.synapses()
    # a spike sent from a node ordered after its target arrives after the target's update, i.e.
    # one step later by itself: that step is one of the chain's delayed edges
    late = position[chain.source] >= position[chain.target]
    steps = steps + chain.delayed_edges - int(late)
    if np.any(steps < 0):
        raise BackendError(f"nodes {chain.source!r} -> {chain.target!r}: backend 'brian2' cannot deliver this edge in the step the IR "
                           f"needs (through {chain.via}); use backend 'numba-event'")
    on_pre = f"x_post += w * {tables[chain.source].name}(t - delay, i)" if chain.source in tables else "x_post += w"
    syn = b2.Synapses(src, dst, "w : 1 (constant)", on_pre=on_pre, clock=clock, name=f"sf_synapses_{k}",
                      namespace={tables[chain.source].name: tables[chain.source]} if chain.source in tables else None)
    n_src, n_dst = _size(shapes, chain.source), _size(shapes, chain.target)
    offsets = np.repeat(np.arange(batch), i.size)
    syn.connect(i=(np.tile(i, batch) + offsets * n_src).astype(np.int64), j=(np.tile(j, batch) + offsets * n_dst).astype(np.int64))
    syn.w = np.tile(w, batch)
    if np.any(steps):
        syn.delay = np.tile(steps, batch) * clock.dt
    syn.pre.when, syn.pre.order = "groups", 10 * position[chain.source] + 4
    return syn


def _synapse_list(weight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target rows, source columns, weights) of the nonzero entries; a sparse IR weight is read
    from its CSR arrays, never densified."""
    if n.is_sparse(weight):
        rows = np.repeat(np.arange(weight.shape[0], dtype=np.int64), np.diff(weight.indptr))
        keep = weight.data != 0  # explicit zeros are no synapses, as in the dense case
        return rows[keep], weight.indices[keep].astype(np.int64), weight.data[keep]
    rows, cols = np.nonzero(weight)
    return rows, cols, weight[rows, cols]


def _collect(plan: _Plan, monitors, inputs, steps, batch, record):
    from .result import SimulationResult

    flat, shapes = plan.flat, plan.shapes
    values, spike_counts = {}, {}
    for name, x in inputs.items():
        values[name] = x
        spike_counts[name] = (x.reshape(steps, batch, -1) != 0).sum(axis=0).reshape(-1)
    for name in plan.neurons:
        size, node, shape = _size(shapes, name), flat.nodes[name], tuple(shapes[name])
        if node.spiking:
            mon = monitors[name]
            z = np.zeros((steps, batch * size))
            t_idx = np.rint(np.asarray(mon.t / mon.clock.dt)).astype(np.int64)
            keep = t_idx < steps
            z[t_idx[keep], np.asarray(mon.i)[keep]] = 1.0
            values[name] = z.reshape((steps, batch) + shape)
            spike_counts[name] = z.sum(axis=0)
        if name + ":v" in monitors:
            v = np.asarray(monitors[name + ":v"].v).T[:steps]
            values[name + ":v"] = v.reshape((steps, batch) + shape)
            if not node.spiking:
                values[name] = values[name + ":v"]
    events = 0
    for chain in plan.chains:
        if chain.weight is not None:  # direct (one-to-one) edges are wires, not synaptic operations
            _, cols, _ = _synapse_list(chain.weight)
            fan_out = np.bincount(cols, minlength=chain.weight.shape[1])
            events += int((spike_counts[chain.source].reshape(batch, -1) * fan_out).sum())
    result = SimulationResult(outputs={}, backend="brian2")
    for out, src in plan.outputs.items():
        result.outputs[out] = values[src].reshape((steps, batch) + tuple(shapes[out]))
    for name in record:
        node = flat.nodes[name]
        if getattr(node, "spiking", False) and name in values:
            result.spikes[name] = values[name]
        if name + ":v" in values:
            result.traces[name] = values[name + ":v"]
        elif isinstance(node, n.Input):
            result.traces[name] = values[name]
    result.stats = {"synaptic_events": events, "neuron_updates": steps * batch * sum(_size(shapes, k) for k in plan.neurons),
                    "steps": int(steps), "wall_time": 0.0}
    return result
