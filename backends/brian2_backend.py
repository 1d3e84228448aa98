"""The "brian2" backend: an independent check of the numba simulators in Brian2.

Lowering rules (one per node type; anything else raises BackendError naming node, type, backend):

* Input -> ``SpikeGeneratorGroup`` (binary spike input only);
* LIF, CubaLIF, LI, CubaLI, IF, I -> ``NeuronGroup`` whose update is the discrete step of
  ``spikeflow.ir.discretise`` written out as a Brian2 code string with the same float64
  coefficients (``v = a*v + c*x + b`` ...), run every ``dt = graph.dt``; threshold ``v > v_th`` and
  the reset as in the IR;
* Affine / Linear between spiking nodes (or from an Input) -> ``Synapses`` with ``on_pre: x += w``,
  one per nonzero weight (a sparse weight's CSR arrays are used as they are); the Affine bias
  becomes a constant input of the target; a direct edge -> one-to-one Synapses.

Brian2 normally delivers a spike one step late; here every object is scheduled in the ``groups``
slot in the graph's execution order (update, threshold, outgoing synapses, reset), so a
feed-forward spike arrives in the same step and a recurrent one in the next, as in the IR. The
batch is simulated as B copies of the network in one run. Brian2 compiles with ``-ffast-math`` and
sums synapses in its own order, so results agree with numba closely but not bit for bit.

Each call builds a fresh ``Network``, passes ``dt`` to every object (no ``defaultclock`` change),
and restores the code-generation preference and the device afterwards.
"""

from __future__ import annotations

import math
import tempfile
import time
from importlib.util import find_spec

import numpy as np

from spikeflow.errors import BackendError, DataError
from spikeflow.ir import nodes as n
from spikeflow.ir.discretise import coefficients

from .capabilities import Capabilities

CAPABILITIES = Capabilities(engine="brian2", precisions=("float64",))

NEURONS = (n.LIF, n.CubaLIF, n.LI, n.CubaLI, n.IF, n.I)
SYNAPSES = (n.Affine, n.Linear)
TARGETS = ("auto", "numpy", "cython", "cpp_standalone")


def is_available() -> bool:
    """True when brian2 is installed."""
    return find_spec("brian2") is not None


def _update_code(node) -> str:
    if isinstance(node, (n.LI, n.LIF)):
        code = "v = a*v + c*(x + x_bias) + b"
    elif isinstance(node, (n.CubaLI, n.CubaLIF)):
        code = "i_syn = a_syn*i_syn + c_syn*(x + x_bias)\nv = a_mem*v + c_mem*i_syn + b_mem"
    else:
        code = "v = v + c*(x + x_bias)"
    return code + "\nx = 0"


def _plan(graph):
    """Check the graph and return (flat graph, shapes, neuron names in order, connections).

    A connection is (source, target, weight [n_target, n_source] or None for one-to-one, bias).
    """
    flat = graph.flatten()
    shapes = graph.shapes()
    connections = []
    for name in flat.order():
        node = flat.nodes[name]
        if isinstance(node, (n.Input, n.Output)) or isinstance(node, NEURONS):
            pass
        elif isinstance(node, SYNAPSES):
            pass
        else:
            raise BackendError(f"node {name!r} of type {type(node).__name__} is not supported by backend 'brian2'")
        sources = sorted(a for a, b in flat.edges if b == name)
        for a in sources:
            src = flat.nodes[a]
            if isinstance(node, SYNAPSES):
                if not (isinstance(src, n.Input) or src.spiking):
                    raise BackendError(f"node {name!r}: backend 'brian2' needs spikes into {type(node).__name__}, but source {a!r} ({type(src).__name__}) does not spike")
                targets = sorted(b for c, b in flat.edges if c == name)
                for t in targets:
                    if not isinstance(flat.nodes[t], NEURONS + (n.Output,)):
                        raise BackendError(f"node {t!r}: backend 'brian2' connects {type(node).__name__} {name!r} only to neurons, not {type(flat.nodes[t]).__name__}")
                    if isinstance(flat.nodes[t], NEURONS):
                        connections.append((a, t, node.weight, getattr(node, "bias", None)))
            elif isinstance(node, NEURONS):
                if isinstance(src, SYNAPSES):
                    continue  # added from the synapse's side
                if not (isinstance(src, n.Input) or src.spiking):
                    raise BackendError(f"node {name!r}: backend 'brian2' needs spiking input, but source {a!r} ({type(src).__name__}) does not spike")
                connections.append((a, name, None, None))
            elif isinstance(node, n.Output) and not (isinstance(src, NEURONS) or isinstance(src, n.Input)):
                raise BackendError(f"node {name!r}: backend 'brian2' reads outputs of neurons only, not of {a!r} ({type(src).__name__})")
    neurons = [k for k in flat.order() if isinstance(flat.nodes[k], NEURONS)]
    return flat, shapes, neurons, connections


def run(graph, inputs, *, record=(), precision="float64", target: str = "auto", directory: str | None = None):
    """Simulate in Brian2 with the runtime device and code-generation ``target`` ("auto": Brian2's
    choice, cython when a compiler works; "numpy"; "cython"), or ``target="cpp_standalone"``
    (compiled in ``directory``, a fresh temporary one by default)."""
    import brian2 as b2

    if precision != "float64":
        raise BackendError(f"argument 'precision': backend 'brian2' runs 'float64' only, got {precision!r}")
    if target not in TARGETS:
        raise BackendError(f"argument 'target': expected one of {TARGETS}, got {target!r}")
    flat, shapes, neurons, connections = _plan(graph)
    unknown = [k for k in record if k not in flat.nodes]
    if unknown:
        raise DataError(f"argument 'record': unknown node {unknown[0]!r}; nodes are {sorted(flat.nodes)}")
    steps, batch = next(iter(inputs.values())).shape[:2]
    for name, x in inputs.items():
        if not np.isin(x, (0.0, 1.0)).all():
            raise BackendError(f"backend 'brian2' needs binary spike input; Input {name!r} has other values")
    dt = flat.dt * b2.second
    saved_target = b2.prefs.codegen.target
    standalone = target == "cpp_standalone"
    start = time.perf_counter()
    try:
        if standalone:
            b2.set_device("cpp_standalone", directory=directory or tempfile.mkdtemp(prefix="spikeflow_brian2_"), build_on_run=True)
        else:
            b2.prefs.codegen.target = target
        net, monitors, groups = _build(b2, flat, shapes, neurons, connections, inputs, batch, dt, record)
        net.run(steps * dt, namespace={})
        result = _collect(flat, shapes, monitors, groups, neurons, connections, inputs, steps, batch, record)
    finally:
        b2.prefs.codegen.target = saved_target
        if standalone:
            from brian2.devices.device import reset_device

            b2.get_device().reinit()
            reset_device()
    result.stats["wall_time"] = time.perf_counter() - start
    return result


def _build(b2, flat, shapes, neurons, connections, inputs, batch, dt, record):
    groups, monitors, objects = {}, {}, []
    position = {k: i for i, k in enumerate(flat.order())}
    for name, x in inputs.items():
        size = math.prod(shapes[name])
        t_idx, b_idx, i_idx = np.nonzero(x.reshape(x.shape[0], batch, size))
        g = b2.SpikeGeneratorGroup(size * batch, (b_idx * size + i_idx).astype(np.int64), t_idx * dt, dt=dt, when="groups", order=-100,
                                   sorted=False, name=f"sf_input_{len(objects)}")
        groups[name] = g
        objects.append(g)
        monitors[name] = None
    biases = {k: np.zeros(math.prod(shapes[k])) for k in neurons}
    for _, t, _, bias in connections:
        if bias is not None:
            biases[t] = biases[t] + bias
    for name in neurons:
        node, size = flat.nodes[name], math.prod(shapes[name])
        coef = {k: np.broadcast_to(v, shapes[name]).reshape(-1) for k, v in coefficients(node, flat.dt, flat.integration).items()}
        params = [k for k in coef if k != "steps"]
        model = "\n".join(["v : 1", "x : 1", "x_bias : 1 (constant)"] + [f"{k} : 1 (constant)" for k in params]
                          + (["i_syn : 1"] if isinstance(node, (n.CubaLI, n.CubaLIF)) else []))
        kwargs = {}
        if node.spiking:
            kwargs = {"threshold": "v > v_threshold", "reset": "v = v - v_threshold" if node.reset == "subtract" else "v = v_reset"}
        g = b2.NeuronGroup(size * batch, model, dt=dt, name=f"sf_{position[name]}_{len(objects)}", **kwargs)
        for k in params:
            setattr(g, k, np.tile(coef[k], batch))
        g.x_bias = np.tile(biases[name], batch)
        order = 10 * position[name]
        g.run_regularly(_update_code(node), dt=dt, when="groups", order=order, name=f"{g.name}_update")
        if node.spiking:
            g.thresholder["spike"].when, g.thresholder["spike"].order = "groups", order + 1
            g.resetter["spike"].when, g.resetter["spike"].order = "groups", order + 3
        groups[name] = g
        objects.append(g)
        monitors[name] = b2.SpikeMonitor(g, when="end", name=f"{g.name}_spikes") if node.spiking else None
        if node.spiking:
            objects.append(monitors[name])
        if name in record or (not node.spiking and any(b in flat.outputs for a, b in flat.edges if a == name)):
            state = b2.StateMonitor(g, "v", record=True, dt=dt, when="end", name=f"{g.name}_v")
            monitors[name + ":v"] = state
            objects.append(state)
    for k, (a, t, weight, _) in enumerate(connections):
        src, dst = groups[a], groups[t]
        n_src, n_dst = math.prod(shapes[a]), math.prod(shapes[t])
        syn = b2.Synapses(src, dst, "w : 1 (constant)", on_pre="x_post += w", dt=dt, name=f"sf_synapses_{k}")
        if weight is None:
            i = np.arange(n_src * batch)
            j, w = i, np.ones(n_src * batch)
        else:
            rows, cols, values = _synapse_list(weight)
            offsets = np.repeat(np.arange(batch), rows.size)
            i = np.tile(cols, batch) + offsets * n_src
            j = np.tile(rows, batch) + offsets * n_dst
            w = np.tile(values, batch)
        syn.connect(i=i.astype(np.int64), j=j.astype(np.int64))
        syn.w = w
        syn.pre.when, syn.pre.order = "groups", (10 * position[a] + 2) if a in neurons else -99
        objects.append(syn)
    # fixed names: the generated code, and so Cython's compile cache, is the same on every call
    return b2.Network(*objects, name="sf_network"), monitors, groups


def _synapse_list(weight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target rows, source columns, weights) of the nonzero entries; a sparse IR weight is read
    from its CSR arrays, never densified."""
    if n.is_sparse(weight):
        rows = np.repeat(np.arange(weight.shape[0], dtype=np.int64), np.diff(weight.indptr))
        keep = weight.data != 0  # explicit zeros are no synapses, as in the dense case
        return rows[keep], weight.indices[keep].astype(np.int64), weight.data[keep]
    rows, cols = np.nonzero(weight)
    return rows, cols, weight[rows, cols]


def _collect(flat, shapes, monitors, groups, neurons, connections, inputs, steps, batch, record):
    from .result import SimulationResult

    values, spike_counts = {}, {}
    for name, x in inputs.items():
        values[name] = x
        spike_counts[name] = x.reshape(steps, batch, -1).sum(axis=0).reshape(-1)
    for name in neurons:
        size, node = math.prod(shapes[name]), flat.nodes[name]
        if node.spiking:
            mon = monitors[name]
            z = np.zeros((steps, batch * size))
            t_idx = np.rint(np.asarray(mon.t / mon.clock.dt)).astype(np.int64)
            keep = t_idx < steps
            z[t_idx[keep], np.asarray(mon.i)[keep]] = 1.0
            values[name] = z.reshape(steps, batch, size).reshape((steps, batch) + tuple(shapes[name]))
            spike_counts[name] = z.sum(axis=0)
        if name + ":v" in monitors:
            v = np.asarray(monitors[name + ":v"].v).T[:steps]
            values[name + ":v"] = v.reshape((steps, batch) + tuple(shapes[name]))
            if not node.spiking:
                values[name] = values[name + ":v"]
    events = 0
    for a, t, weight, _ in connections:
        if weight is not None:  # direct (one-to-one) edges are wires, not synaptic operations
            _, cols, _ = _synapse_list(weight)
            fan_out = np.bincount(cols, minlength=weight.shape[1])
            events += int((spike_counts[a].reshape(batch, -1) * fan_out).sum())
    result = SimulationResult(outputs={}, backend="brian2")
    for out in flat.outputs:
        (src,) = [a for a, b in flat.edges if b == out]
        result.outputs[out] = values[src]
    for name in record:
        node = flat.nodes[name]
        if getattr(node, "spiking", False) and name in values:
            result.spikes[name] = values[name]
        if name + ":v" in values:
            result.traces[name] = values[name + ":v"]
        elif not isinstance(node, NEURONS) and name in values:
            result.traces[name] = values[name]
    result.stats = {"synaptic_events": events, "neuron_updates": steps * batch * sum(math.prod(shapes[k]) for k in neurons),
                    "steps": int(steps), "wall_time": 0.0}
    return result
