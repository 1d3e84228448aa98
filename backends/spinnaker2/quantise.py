"""Quantiser: weights to the target's integers, a scale per population, thresholds and state in fixed point.

Each projection ``k`` into population ``Q`` gets integer weights ``W_k = round(w * scale_Q * 2**s_k)``
clipped to ``[-15, 15]`` (dense ``lif`` projections) or ``[-127, 127]`` (int8 convolutions). The
population scale ``scale_Q`` (py-spinnaker2's per-population weight scale, in [1, 2)) stretches the
weights so that the clipping value lands exactly on the largest integer; it also multiplies the
population's threshold, reset, leak and the projections' biases, so the float network it stands for
spikes exactly as before (a LIF is linear in ``v``). Readouts (non-spiking) keep scale 1 so their
voltages keep their units. The clipping value is the ``percentile`` of ``|w|``; with calibration
samples each weight counts as often as its input carried an event (weights that never see an event
do not widen the range). Thresholds, resets and biases are rounded to the state format of
:func:`~.target.precision`.

The result is the *dequantised graph*: the same nodes with these exact values, which the numba
fixed-point simulator turns back into the same integers.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np

from spikeflow.errors import BackendError
from spikeflow.ir import Graph
from spikeflow.ir import nodes as n

from .check import Network, Projection, check
from .target import Target


class QuantisationError(BackendError):
    """Quantisation broke the network (a layer fell silent) or was asked for something impossible."""


@dataclass
class LayerQuantisation:
    """How one projection was quantised, and what that cost."""

    name: str
    post: str
    bits: int
    frac: int
    scale: float
    clip: float
    clipped: float  # fraction of nonzero weights that saturated
    rel_error: float  # ||w_q - w*scale|| / ||w*scale||
    nonzero: int

    def to_dict(self):
        return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in self.__dict__.items()}


def weight_bits(proj: Projection, target: Target) -> int:
    """Signed integer width of a projection's weights: int8 conv, 4 bits + sign for ``lif``."""
    return target.conv_weight_bits if proj.conv else int(math.ceil(math.log2(target.lif_weight_max + 1))) + 1


def weight_max(proj: Projection, target: Target) -> int:
    return (1 << (target.conv_weight_bits - 1)) - 1 if proj.conv else int(target.lif_weight_max)


def _values(weight) -> np.ndarray:
    return np.asarray(weight.data if hasattr(weight, "tocsr") else weight, dtype=np.float64)


def weight_of(proj: Projection):
    """The projection's weights (a one-to-one Scale: its factors, one per neuron)."""
    if proj.one_to_one:
        return np.broadcast_to(np.asarray(proj.node.scale, np.float64), proj.in_shape).copy()
    return proj.node.weight


def _frac(clip: float, wmax: int, bits: int) -> int:
    if clip <= 0:
        return bits - 1
    return int(math.floor(math.log2(wmax / clip)))


def weighted_percentile(values: np.ndarray, weights: np.ndarray | None, q: float) -> float:
    """The ``q``-th percentile of ``values`` where each counts ``weights`` times (all once when None)."""
    values = np.abs(np.asarray(values, np.float64)).reshape(-1)
    if weights is None:
        weights = np.ones_like(values)
    weights = np.asarray(weights, np.float64).reshape(-1)
    keep = (values > 0) & (weights > 0)
    if not keep.any():
        keep = values > 0
        weights = np.ones_like(values)
    if not keep.any():
        return 0.0
    v, w = values[keep], weights[keep]
    order = np.argsort(v, kind="stable")
    cum = np.cumsum(w[order])
    at = int(np.searchsorted(cum, q / 100.0 * cum[-1] * (1 - 1e-12)))
    return float(v[order][min(at, v.size - 1)])


def _activity_weights(proj: Projection, activity: np.ndarray | None):
    """Per weight: how many events its input carried in the calibration samples (None: no samples)."""
    if activity is None:
        return None
    w = weight_of(proj)
    if proj.one_to_one:
        return activity.reshape(w.shape)
    if hasattr(w, "tocsr"):
        m = w.tocsr()
        return activity.reshape(-1)[m.indices] if m.indices.size else None
    if proj.conv:  # every kernel weight of input channel ci sees that channel's events
        per_channel = activity.reshape(proj.in_shape[0], -1).sum(axis=1)
        groups = getattr(proj.node, "groups", 1)
        c_out, cin_g = w.shape[:2]
        ci = (np.arange(c_out)[:, None] // (c_out // groups)) * cin_g + np.arange(cin_g)[None, :]
        return np.broadcast_to(per_channel[ci].reshape(c_out, cin_g, *([1] * (w.ndim - 2))), w.shape)
    return np.broadcast_to(activity.reshape(1, -1), w.shape)


def calibrate(graph: Graph, samples) -> dict[str, np.ndarray]:
    """Events per input element of every weight node over ``samples`` (float64 numba-event run)."""
    from .. import simulate

    g = graph.flatten()
    feeds = {b: a for a, b in g.edges if isinstance(g.nodes[b], (n.Affine, n.Linear, n.Conv1d, n.Conv2d))}
    res = simulate(graph, samples, backend="numba-event", record=sorted(set(feeds.values())))
    return {w: (res.traces[a] != 0).sum(axis=(0, 1)).astype(np.float64) for w, a in feeds.items()}


def quantise_graph(net: Network, target: Target, fixed, *, percentile: float = 100.0, activity: dict | None = None,
                   population_scale: bool = True) -> tuple[Graph, list[LayerQuantisation]]:
    """The dequantised graph of ``net`` and the per-layer quantisation report."""
    if not 0 < percentile <= 100:
        raise QuantisationError(f"argument 'percentile': expected a number in (0, 100], got {percentile!r}")
    g = net.graph
    nodes = dict(g.nodes)
    layers: list[LayerQuantisation] = []
    for post, pop in net.populations.items():
        if pop.kind == "input":
            continue
        incoming = net.incoming(post)
        clips = {p.name: weighted_percentile(_values(weight_of(p)), _activity_weights(p, (activity or {}).get(p.name)), percentile)
                 for p in incoming}
        scale = 1.0
        if population_scale and pop.spiking:
            # the projection whose clip sits lowest on its power-of-two grid sets the scale
            ratios = [(weight_max(p, target) * 2.0 ** -_frac(clips[p.name], weight_max(p, target), weight_bits(p, target)) / clips[p.name])
                      for p in incoming if clips[p.name] > 0]
            scale = min(ratios) if ratios else 1.0
        for p in incoming:
            if p.name in [q.name for q in layers]:
                raise QuantisationError(f"node {p.name!r}: one weight layer feeds two populations; the target keeps one scale per layer")
            wmax, bits = weight_max(p, target), weight_bits(p, target)
            frac = _frac(clips[p.name] * scale, wmax, bits)
            if p.one_to_one:  # numba runs a Scale in the coefficient format: the fraction must fit it
                frac = min(frac, fixed.coef_frac)
                if frac + fixed.coef_bits - 1 - fixed.coef_frac < math.ceil(math.log2(wmax + 1)):
                    raise QuantisationError(f"node {p.name!r}: Scale factors up to {clips[p.name] * scale:.4g} do not fit the "
                                            f"{fixed.coef_bits}-bit coefficient format with {wmax} steps")
            qw, stats = _quantise_weight(weight_of(p), scale, frac, wmax)
            fields = {"scale": qw} if p.one_to_one else {"weight": qw}
            if getattr(p.node, "bias", None) is not None and hasattr(p.node, "bias") and not isinstance(p.node, n.Linear):
                fields["bias"] = _on_grid(np.asarray(p.node.bias) * scale, fixed, "state")
            nodes[p.name] = replace(p.node, **fields)
            layers.append(LayerQuantisation(p.name, post, bits, frac, scale, clips[p.name], **stats))
        nodes[post] = _scaled_neuron(pop.node, scale, fixed)
    qgraph = Graph(nodes, g.edges, dt=g.dt, integration=g.integration, metadata=dict(g.metadata))
    return qgraph.validate(), layers


def _quantise_weight(weight, scale: float, frac: int, wmax: int):
    sparse = hasattr(weight, "tocsr")
    values = _values(weight) * scale
    ints = np.floor(values * 2.0**frac + 0.5)
    clipped = np.count_nonzero(np.abs(ints) > wmax)
    ints = np.clip(ints, -wmax, wmax)
    deq = ints * 2.0**-frac
    norm = float(np.linalg.norm(values))
    stats = {"clipped": clipped / max(np.count_nonzero(values), 1), "rel_error": float(np.linalg.norm(deq - values)) / norm if norm else 0.0,
             "nonzero": int(np.count_nonzero(ints))}
    if sparse:
        import scipy.sparse as sp

        m = weight.tocsr()
        out = sp.csr_array((deq, m.indices.copy(), m.indptr.copy()), shape=m.shape)
        return out, stats
    return deq.reshape(np.shape(weight)), stats


def _on_grid(values, fixed, role: str) -> np.ndarray:
    ints, saturated = fixed.quantise_role(np.asarray(values, np.float64), role)
    if saturated:
        raise QuantisationError(f"{saturated} {role} values do not fit the {fixed.state_bits}-bit state format")
    return ints.reshape(np.shape(values)) * 2.0**-fixed.state_frac


def _scaled_neuron(node, scale: float, fixed):
    """The neuron with threshold, reset and leak times ``scale``, threshold and reset on the state grid."""
    fields = {}
    if hasattr(node, "v_leak"):
        fields["v_leak"] = np.asarray(node.v_leak) * scale
    if getattr(node, "spiking", False):
        fields["v_threshold"] = _on_grid(np.asarray(node.v_threshold) * scale, fixed, "threshold")
        fields["v_reset"] = _on_grid(np.asarray(node.v_reset) * scale, fixed, "state")
    return replace(node, **fields)


def preflight(graph: Graph, qgraph: Graph, samples, fixed, *, silent: str = "error") -> dict[str, dict[str, int]]:
    """Spike counts per population, float vs quantised, on ``samples``; a layer that fires in float
    but never after quantisation raises :class:`QuantisationError` (``silent="warn"``: a warning)."""
    from .. import simulate

    if silent not in ("error", "warn"):
        raise QuantisationError(f"argument 'silent': expected 'error' or 'warn', got {silent!r}")
    g = graph.flatten()
    spiking = [k for k in g.order() if getattr(g.nodes[k], "spiking", False)]
    ref = simulate(graph, samples, backend="numba-event", record=spiking)
    got = simulate(qgraph, samples, backend="numba-event", record=spiking, precision=fixed)
    counts = {k: {"float": int(ref.spikes[k].sum()), "quantised": int(got.spikes[k].sum())} for k in spiking}
    for k, c in counts.items():
        if c["float"] > 0 and c["quantised"] == 0:
            msg = (f"layer {k!r} goes silent after quantisation: {c['float']} spikes in float, 0 quantised on the calibration "
                   "samples; raise its weights' percentile, fine-tune with spikeflow.backends.spinnaker2.qat, or pass silent='warn'")
            if silent == "error":
                raise QuantisationError(msg)
            warnings.warn(msg, stacklevel=2)
    return counts


def quantise(graph: Graph, target: Target, fixed, *, samples=None, percentile: float = 100.0, population_scale: bool = True,
             silent: str = "error"):
    """Check and quantise ``graph``: ``(network of the dequantised graph, dequantised graph, layers, spike counts)``."""
    net = check(graph, target)
    activity = calibrate(graph, samples) if samples is not None else None
    qgraph, layers = quantise_graph(net, target, fixed, percentile=percentile, activity=activity, population_scale=population_scale)
    if net.pulse is not None:  # the pulse stays in the dequantised graph, each injector scaled like its IF layer
        from ..pulse import restore

        qgraph = restore(qgraph, net.pulse, {q.post: q.scale for q in layers})
    counts = preflight(graph, qgraph, samples, fixed, silent=silent) if samples is not None else {}
    return check(qgraph, target), qgraph, layers, counts
