"""Liquid state machine (LSM) reservoir: a fixed, random, recurrent LIF network as an ordinary graph.

Lin et al. (Nature Computational Science 2024) train only the readout of such a reservoir and draw
its random weights from the stochastic conductances that forming RRAM cells by dielectric breakdown
leaves behind. Here the weights are drawn either in software (uniform magnitudes) or from a device
model's breakdown statistics (:meth:`spikeflow.backends.rram.Device.breakdown`); either way the
result is a plain :class:`~spikeflow.Graph` (``input -> w_in -> lif <-> w_rec``, ``lif -> output``)
that every backend simulates and every target exports.

Paper configurations (keep as data): N-MNIST 256 inputs, 200 neurons, T = 50, decay 0.9,
threshold 5.0, weight scale 0.07; N-TIDIGITS 64 channels, 129 steps, decay 0.97, threshold 5.3.

Example:
    >>> g = reservoir(16, size=10, seed=0)
    >>> sorted(g.nodes), g.shapes()["output"]
    (['input', 'lif', 'output', 'w_in', 'w_rec'], (10,))
"""

from __future__ import annotations

import numpy as np

from spikeflow.errors import GraphError
from spikeflow.ir import nodes
from spikeflow.ir.graph import Graph

#: Reservoir settings of the paper's two tasks (Lin et al. 2024, public code).
PAPER_CONFIGS = {
    "nmnist": {"n_in": 256, "size": 200, "steps": 50, "decay": 0.9, "threshold": 5.0, "weight_scale": 0.07},
    "ntidigits": {"n_in": 64, "size": 200, "steps": 129, "decay": 0.97, "threshold": 5.3},
}


def _magnitudes(shape, density: float, source: str, device, rng: np.random.Generator) -> np.ndarray:
    """Nonnegative random magnitudes with about ``density`` of them nonzero (mean ~0.5 when nonzero)."""
    if source == "software":
        return rng.random(shape) * (rng.random(shape) < density)
    if source == "device":
        from spikeflow.backends.rram import Device

        dev = Device.preset(device)
        g = dev.breakdown(shape, density, rng)
        # a broken-down cell conducts ~g_breakdown, a pristine one ~1000x less: magnitude ~ G / (2 g_breakdown)
        return g / (2.0 * dev.g_breakdown)
    raise GraphError(f"argument 'weights': expected 'software' or 'device', got {source!r}")


def reservoir(
    n_in: int = 578,
    size: int = 200,
    *,
    p_in: float = 0.2,
    p_rec: float = 0.1,
    excitatory: float = 0.8,
    input_scale: float = 2.0,
    weight_scale: float = 1.0,
    spectral_radius: float | None = None,
    decay: float = 0.9,
    threshold: float = 5.0,
    reset: str = "zero",
    dt: float = 1e-3,
    weights: str = "software",
    device=None,
    seed: int = 0,
) -> Graph:
    """A random LIF reservoir: ``n_in`` inputs -> ``size`` recurrently connected LIF neurons.

    Args:
        n_in, size: input channels (default: DigitSaccades through :func:`binary_frames`,
            2 x 17 x 17) and reservoir neurons.
        p_in, p_rec: connection probabilities of the input projection and of the recurrent matrix.
        excitatory: fraction of excitatory neurons (their outgoing recurrent weights are positive,
            the others' negative: Dale's law); input weights take a random sign.
        input_scale, weight_scale: multiply the input and recurrent magnitudes (~U(0, 1)).
        spectral_radius: if given, rescale the recurrent matrix to this largest |eigenvalue|
            (instead of ``weight_scale``).
        decay: membrane decay per step ``exp(-dt / tau)``-like Euler factor ``1 - dt / tau``.
        threshold: firing threshold; an input adds its full weight to the membrane (``r = tau / dt``).
        reset: "zero" or "subtract".
        weights: "software" (uniform magnitudes) or "device" (breakdown statistics of ``device``,
            a :class:`~spikeflow.backends.rram.Device` or preset name).
        seed: seeds every random draw.
    """
    if n_in < 1 or size < 1:
        raise GraphError(f"reservoir: n_in and size must be >= 1, got {n_in}, {size}")
    for name, p in (("p_in", p_in), ("p_rec", p_rec), ("excitatory", excitatory)):
        if not 0 <= p <= 1:
            raise GraphError(f"reservoir: {name} must be in [0, 1], got {p}")
    if not 0 < decay < 1:
        raise GraphError(f"reservoir: decay must be in (0, 1), got {decay}")
    rng = np.random.default_rng(seed)
    w_in = _magnitudes((size, n_in), p_in, weights, device, rng) * rng.choice([-1.0, 1.0], (size, n_in)) * input_scale
    sign = np.where(rng.random(size) < excitatory, 1.0, -1.0)
    w_rec = _magnitudes((size, size), p_rec, weights, device, rng) * sign[None, :]
    np.fill_diagonal(w_rec, 0.0)
    if spectral_radius is not None:
        radius = float(np.max(np.abs(np.linalg.eigvals(w_rec)), initial=0.0))
        w_rec = w_rec * (spectral_radius / radius if radius > 0 else 0.0)
    else:
        w_rec = w_rec * weight_scale
    tau = dt / (1.0 - decay)
    return Graph(
        {
            "input": nodes.Input(shape=(n_in,)),
            "w_in": nodes.Linear(weight=w_in),
            "w_rec": nodes.Linear(weight=w_rec),
            "lif": nodes.LIF(tau=np.full(size, tau), v_threshold=np.full(size, threshold), r=np.full(size, tau / dt), reset=reset),
            "output": nodes.Output(shape=(size,)),
        },
        [("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        dt=dt,
        metadata={"model": "lsm-reservoir", "weights": weights, "seed": int(seed)},
    )


def binary_frames(frames: np.ndarray, pool: int = 2) -> np.ndarray:
    """Event count frames ``[N, T, P, H, W]`` -> time-major binary input spikes ``[T, N, P*(H/pool)*(W/pool)]``:
    a channel spikes in a step when any event fell into its ``pool x pool`` patch."""
    x = np.asarray(frames)
    if x.ndim != 5:
        raise GraphError(f"binary_frames: expected frames [N, T, P, H, W], got shape {x.shape}")
    n, t, p, h, w = x.shape
    h2, w2 = h // pool, w // pool
    x = x[:, :, :, : h2 * pool, : w2 * pool].reshape(n, t, p, h2, pool, w2, pool).sum((4, 6))
    return np.ascontiguousarray((x > 0).reshape(n, t, -1).transpose(1, 0, 2), dtype=np.float64)


def reservoir_features(graph: Graph, x: np.ndarray, *, windows: int = 3, trace_decay: float | None = 0.9,
                       dtype: str = "float32") -> np.ndarray:
    """Readout features of a :func:`reservoir` graph driven by ``x`` ``[T, B, n_in]``: exactly
    ``readout.features(sf.simulate(graph, x, record=["lif"]).spikes["lif"], windows, trace_decay)``,
    computed without storing the spikes by an event-driven numba kernel (one sample per thread; a
    step adds the weight rows of the active inputs and of last step's spikes).

    Rounding differs from the simulators' (the input gain is folded into the weights), so a spike
    can flip where a membrane lands within rounding of the threshold: very rarely in
    ``dtype="float64"``, more often in the faster "float32" (the default; tests bound both).
    """
    from spikeflow.ir.discretise import coefficients
    from spikeflow.models.lsm_kernels import run_features
    from spikeflow.models.readout import feature_layout

    expected = {("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")}
    kinds = {"w_in": nodes.Linear, "w_rec": nodes.Linear, "lif": nodes.LIF}
    if set(map(tuple, graph.edges)) != expected or any(not isinstance(graph.nodes.get(k), t) for k, t in kinds.items()):
        raise GraphError("reservoir_features: expected a reservoir graph (input -> w_in -> lif <-> w_rec, lif -> output)")
    w_in = graph.nodes["w_in"].weight
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] != w_in.shape[1]:
        raise GraphError(f"reservoir_features: expected input [T, B, {w_in.shape[1]}], got shape {x.shape}")
    edges, trace_weight = feature_layout(x.shape[0], windows, trace_decay)  # those of readout.features
    if dtype not in ("float32", "float64"):
        raise GraphError(f"reservoir_features: dtype must be 'float32' or 'float64', got {dtype!r}")
    size, steps = w_in.shape[0], x.shape[0]
    lif = graph.nodes["lif"]
    co = coefficients(lif, graph.dt, graph.integration)
    a, bias, c, threshold, v_reset = (np.ascontiguousarray(np.broadcast_to(co[k], (size,)), dtype=dtype)
                                      for k in ("a", "b", "c", "v_threshold", "v_reset"))
    # (W x) * c == x (W^T * c): fold the input gain into both matrices
    w_in_t = np.ascontiguousarray(w_in.T * c, dtype=dtype)
    w_rec_t = np.ascontiguousarray(graph.nodes["w_rec"].weight.T * c, dtype=dtype)
    window_of = np.searchsorted(edges, np.arange(steps), side="right") - 1
    out = np.zeros((x.shape[1], (windows + (trace_decay is not None)) * size), np.float32)
    run_features(np.ascontiguousarray(x, dtype=dtype), w_in_t, w_rec_t, bias, a, threshold, v_reset,
                 lif.reset == "zero", window_of, np.zeros(0, np.float32) if trace_weight is None else trace_weight, out)
    return out
