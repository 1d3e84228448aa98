"""Live snnTorch and Norse models into spikeflow, through each peer's own NIR exporter.

Each peer's exporter writes NIR that does not reproduce the peer's own simulation. These functions
run the exporter, then correct every known quirk from the live module's attributes, so that the
spikeflow graph produces the peer's spike trains. ``docs/conventions.md`` explains each quirk:

snnTorch (``snntorch.export_to_nir``)
    * time step: implicit ``dt = 1e-4`` with ``tau = dt/(1-beta)``, ``r = tau/dt`` (gain
      ``1/(1-beta)``): the graph gets ``dt=1e-4``, ``integration="euler"``, so ``a = beta``, ``c = 1``;
      parameters are recomputed in float64 from the module (the exporter rounds them in float32).
    * reset: always written as reset-to-zero; the module's ``reset_mechanism`` is restored.
    * ``reset_delay=True`` (snnTorch's default) resets one step late. With subtraction this is an
      exact rewrite (a recurrent ``-(1-beta)*threshold`` term, plus a one-step-delayed cancelling
      term for the synaptic current of ``Synaptic``/``RSynaptic``); ``Leaky`` with reset-to-zero
      gives the same spikes as an immediate reset. ``reset_delay=False`` with subtraction, and the
      late reset-to-zero of ``Synaptic``/``RLeaky``/``RSynaptic``, have no exact equivalent: they
      raise :class:`~spikeflow.errors.GraphError` saying how to build the module instead.
    * a recurrent ``nn.Linear`` adds its bias already at the first step (spikeflow's recurrent
      edges carry zero then): the bias moves out of the loop.
    * scalar ``beta`` gives shape-() parameters that NIR's own type check rejects: the exporter is
      run without that final check (spikeflow's parameters broadcast).

Norse (``norse.torch.to_nir``, Norse 1.1)
    * time constants written as ``dt / tau_inv`` (that is ``dt * tau``): replaced by ``1 / tau_inv``.
    * ``LIFCell``'s current jumps by the input each step (no ``dt/tau_syn`` factor) but the exporter
      writes ``w_in = 1``: ``w_in = tau_syn / dt``.  ``IAFCell`` adds its input directly:
      ``r = 1 / dt``.  ``v_reset`` and the reset method are not exported: restored.
    * the Input node keeps the batch dimension of ``sample``: removed.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from spikeflow.errors import GraphError
from spikeflow.ir.graph import Graph
from spikeflow.io.nir_bridge import META, from_nir

SNNTORCH_DT = 1e-4
"""The time step snnTorch's exporter and importer assume (they never write it); ``from_snntorch(dt=)`` sets another."""

# torch / peer modules that no exporter converts, by class name, with what to do instead
SUGGESTIONS = {
    "MaxPool1d": "use nn.AvgPool1d-style sum pooling: max pooling of spikes has no NIR primitive",
    "MaxPool2d": "replace it by nn.AvgPool2d (spikeflow's AvgPool2d/SumPool2d): max pooling of spikes has no NIR primitive",
    "Dropout": "remove it before importing: dropout is the identity at inference (keep it in the training model only)",
    "Dropout2d": "remove it before importing: dropout is the identity at inference (keep it in the training model only)",
    "BatchNorm1d": "fold it into the preceding layer's weight and bias before importing",
    "BatchNorm2d": "fold it into the preceding layer's weight and bias before importing",
    "ReLU": "a non-spiking activation: put a spiking neuron there, or convert the trained ANN with sf.convert.ann_to_snn",
    "Sigmoid": "a non-spiking activation: put a spiking neuron there",
    "Tanh": "a non-spiking activation: put a spiking neuron there",
}


def suggestion(module) -> str:
    """``"; fix: ..."`` for a module type with a known replacement, else ``""``."""
    hint = SUGGESTIONS.get(type(module).__name__)
    return f"; fix: {hint}" if hint else ""


def _np(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _full(*arrays) -> list[np.ndarray]:
    """NIR wants every neuron parameter with the same shape."""
    return [a.copy() for a in np.broadcast_arrays(*[_np(a) for a in arrays])]


def _finish(ng, sample, dt: float, peer: str, modules: dict | None = None) -> Graph:
    """Open the Output shapes, then find the per-sample input shape: ``sample`` is [B, ...] or
    [T, B, ...], so drop one, then two leading dimensions until the graph validates."""
    import nir

    modules = modules or {}
    for key, node in list(ng.nodes.items()):
        if node is None:
            kind = f" ({type(modules[key]).__name__})" if key in modules else ""
            raise GraphError(f"node {key!r}{kind}: {peer}'s NIR exporter does not convert this module, so spikeflow cannot "
                             f"import it{suggestion(modules[key]) if key in modules else ''}")
        if isinstance(node, nir.Output):
            ng.nodes[key] = nir.Output(output_type={"output": None})
    shape = tuple(int(s) for s in sample.shape)
    inputs = [k for k, v in ng.nodes.items() if isinstance(v, nir.Input)]
    errors = []
    for drop in (1, 2):
        if drop >= len(shape):
            break
        for key in inputs:
            ng.nodes[key] = nir.Input(input_type={"input": np.array(shape[drop:])})
        try:
            return from_nir(ng, dt=dt, integration="euler")
        except GraphError as err:
            errors.append(f"input shape {shape[drop:]}: {err}")
    raise GraphError(f"{peer} model: no per-sample input shape taken from sample {shape} fits: " + "; ".join(errors))


# -------------------------------------------------------------------------------------- snnTorch


def _snntorch_exactness(module, name: str) -> None:
    """Raise unless snnTorch's update for this module has an exact spikeflow equivalent."""
    kind = type(module).__name__
    mechanism, delay = module.reset_mechanism, bool(module.reset_delay)
    for flag, what in ((getattr(module, "inhibition", False), "inhibition=True"), (getattr(module, "state_quant", False), "state_quant")):
        if flag:
            raise GraphError(f"node {name!r}: snnTorch {kind} with {what} has no spikeflow equivalent")
    if not np.allclose(_np(module.graded_spikes_factor), 1.0):
        raise GraphError(f"node {name!r}: snnTorch {kind} with graded_spikes_factor != 1 has no spikeflow equivalent")
    if np.any(_np(module.threshold) <= 0):
        raise GraphError(f"node {name!r}: snnTorch {kind}: threshold must be > 0 for an exact import")
    if mechanism == "none":
        raise GraphError(f"node {name!r}: snnTorch {kind} with reset_mechanism='none' has no spikeflow equivalent")
    if mechanism == "zero" and (not delay or kind == "Leaky"):
        return  # reset-to-zero right after the spike; Leaky's late reset gives the same spikes
    if mechanism == "subtract" and delay:
        return  # rewritten exactly: see _late_subtraction
    if mechanism == "subtract":
        why = (
            "with reset_delay=False, snnTorch skips the spike after a step whose membrane stays above "
            "threshold after the subtraction (its 'avoid double reset' term), which spikeflow cannot express"
        )
        fix = "build it with reset_delay=True (snnTorch's default)"
    else:
        why = "with reset_delay=True, snnTorch zeroes the whole next membrane update (input included) after a spike"
        fix = "build it with reset_delay=False"
    raise GraphError(f"node {name!r}: snnTorch {kind}(reset_mechanism={mechanism!r}, reset_delay={delay}): {why}; {fix}")


def _snntorch_neuron(ng, key: str, module, dt: float = SNNTORCH_DT) -> None:
    """Replace the exported neuron by one with float64 parameters and the module's reset."""
    import nir

    old = ng.nodes[key]
    _snntorch_exactness(module, key)
    beta = np.clip(_np(module.beta), 0, 1)
    if np.any(beta >= 1):
        raise GraphError(f"node {key!r}: snnTorch beta = 1 (no leak) has no finite time constant; use an IF neuron")
    threshold = _np(module.threshold)
    shape = np.broadcast_shapes(np.shape(old.v_threshold), beta.shape, threshold.shape)
    beta, threshold = (np.broadcast_to(a, shape).copy() for a in (beta, threshold))
    tau_mem = dt / (1 - beta)
    common = {"tau_mem" if isinstance(old, nir.CubaLIF) else "tau": tau_mem, "r": 1 / (1 - beta), "v_leak": np.zeros(shape),
              "v_threshold": threshold, "v_reset": np.zeros(shape)}
    meta = {META + "reset": module.reset_mechanism}
    alpha = None
    if isinstance(old, nir.CubaLIF):
        alpha = np.broadcast_to(np.clip(_np(module.alpha), 0, 1), shape).copy()
        if np.any(alpha >= 1):
            raise GraphError(f"node {key!r}: snnTorch alpha = 1 (no synaptic decay) has no finite time constant")
        ng.nodes[key] = nir.CubaLIF(tau_syn=dt / (1 - alpha), w_in=1 / (1 - alpha), **common, metadata=meta)
    else:
        ng.nodes[key] = nir.LIF(**common, metadata=meta)
    if module.reset_mechanism == "subtract" and module.reset_delay:
        _late_subtraction(ng, key, -(1 - beta) * threshold, alpha, dt)


def _late_subtraction(ng, key: str, k: np.ndarray, alpha: np.ndarray | None, dt: float = SNNTORCH_DT) -> None:
    """snnTorch subtracts the threshold one step late: m[t] = beta*m[t-1] + I[t] - s[t-1]*thr.
    With spikeflow's immediate subtraction this is an extra input ``k*s[t-1]``, ``k = -(1-beta)*thr``,
    into the membrane (gains are 1): folded into an existing recurrent weight, else a self-loop.
    A CubaLIF input passes its current, which would keep ``alpha*k*s[t-1]`` one step later, and so on:
    a second loop ``-alpha*k*s[t-2]`` (one step of Delay) cancels that tail exactly."""
    import nir

    loop = [a for a, b in ng.edges if b == key and (key, a) in ng.edges and isinstance(ng.nodes[a], (nir.Linear, nir.Affine))]
    if loop:
        old = ng.nodes[loop[0]]
        weight = _np(old.weight).copy()
        weight[np.diag_indices_from(weight)] += np.broadcast_to(k, weight.shape[:1])
        ng.nodes[loop[0]] = nir.Affine(weight=weight, bias=_np(old.bias)) if isinstance(old, nir.Affine) else nir.Linear(weight=weight)
    else:
        ng.nodes[f"{key}_late_reset"] = nir.Scale(scale=np.asarray(k, dtype=np.float64))
        ng.edges += [(key, f"{key}_late_reset"), (f"{key}_late_reset", key)]
    if alpha is not None:
        ng.nodes[f"{key}_late_reset_tail"] = nir.Scale(scale=-alpha * k)
        ng.nodes[f"{key}_late_reset_delay"] = nir.Delay(delay=np.full(np.shape(k), dt))
        ng.edges += [(key, f"{key}_late_reset_tail"), (f"{key}_late_reset_tail", f"{key}_late_reset_delay"), (f"{key}_late_reset_delay", key)]


def _hoist_recurrent_bias(ng) -> None:
    """snnTorch's recurrent nn.Linear adds its bias already at t=0 (it runs on zero spikes), where
    a spikeflow recurrent edge carries zero: move the bias onto the neuron's feed-forward input."""
    import nir

    for w_key, node in list(ng.nodes.items()):
        if not isinstance(node, nir.Affine):
            continue
        targets = [b for a, b in ng.edges if a == w_key]
        if len(targets) != 1 or (targets[0], w_key) not in ng.edges:
            continue
        neuron = targets[0]
        bias = _np(node.bias)
        ng.nodes[w_key] = nir.Linear(weight=_np(node.weight))
        feeds = [a for a, b in ng.edges if b == neuron and a != w_key]
        up = ng.nodes[feeds[0]] if len(feeds) == 1 else None
        if isinstance(up, (nir.Affine, nir.Linear)) and [b for a, b in ng.edges if a == feeds[0]] == [neuron]:
            up_bias = _np(up.bias) if isinstance(up, nir.Affine) else 0.0
            ng.nodes[feeds[0]] = nir.Affine(weight=_np(up.weight), bias=up_bias + bias)
            continue
        name = f"{w_key}_bias"  # identity plus bias: exact in floating point
        ng.nodes[name] = nir.Affine(weight=np.eye(bias.size), bias=bias)
        ng.edges = [(a, name) if b == neuron and a != w_key else (a, b) for a, b in ng.edges] + [(name, neuron)]


def from_snntorch(module, sample, dt: float = SNNTORCH_DT) -> Graph:
    """Import a live snnTorch model (built with ``init_hidden=True``) through ``snntorch.export_to_nir``.

    Args:
        module: the model, e.g. ``nn.Sequential(nn.Linear(...), snn.Leaky(beta=0.9, init_hidden=True))``.
        sample: one input batch ``[B, ...]`` (or ``[T, B, ...]``) used to trace the model. Tracing
            steps the model once; its hidden state is reset afterwards.
        dt: the time step (seconds) one snnTorch step stands for; time constants become
            ``tau = dt / (1 - beta)``, so the spikes are the same for every ``dt``.

    Returns:
        A validated graph with ``dt``, ``integration="euler"`` whose spikes equal snnTorch's.

    Raises:
        GraphError: a module or neuron setting without an exact spikeflow equivalent (names it).
    """
    import warnings

    import nirtorch
    import snntorch as snn
    import snntorch.utils
    from snntorch.export_nir import _extract_snntorch_module

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # snntorch.export_to_nir without its final nir type check, which rejects scalar-beta layers.
        ng = nirtorch.extract_nir_graph(
            module, _extract_snntorch_module, sample, model_name="snntorch",
            ignore_submodules_of=[snn.RLeaky, snn.RSynaptic], ignore_dims=[0],
        )
    snntorch.utils.reset(module)
    if not (isinstance(dt, (int, float)) and not isinstance(dt, bool) and dt > 0 and np.isfinite(dt)):
        raise GraphError(f"from_snntorch: argument 'dt': expected a positive number of seconds, got {dt!r}")
    modules = dict(module.named_modules())
    _hoist_recurrent_bias(ng)
    for key in list(ng.nodes):
        if type(ng.nodes[key]).__name__ not in ("LIF", "CubaLIF"):
            continue
        owner = modules.get(key) or modules.get(key.rsplit(".", 1)[0])  # "3.lif" lives in RLeaky "3"
        if owner is None:
            raise GraphError(f"node {key!r}: cannot find the snnTorch module that produced it")
        _snntorch_neuron(ng, key, owner, float(dt))
    return _finish(ng, sample, float(dt), "snnTorch", modules)


# ----------------------------------------------------------------------------------------- Norse


def _norse_reset(module) -> str:
    from norse.torch.functional.reset import reset_subtract

    return "subtract" if getattr(module.p, "reset_method", None) is reset_subtract else "zero"


def _norse_lif_cell(m, dt):
    import nir

    p = m.p
    tau_syn, tau_mem, v_leak, v_th, v_reset = _full(1 / _np(p.tau_syn_inv), 1 / _np(p.tau_mem_inv), p.v_leak, p.v_th, p.v_reset)
    # Norse adds the input to the current as a jump: i += x, i.e. w_in * dt / tau_syn = 1.
    return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=np.ones_like(v_th), v_leak=v_leak, v_threshold=v_th,
                       v_reset=v_reset, w_in=tau_syn / dt, metadata={META + "reset": "zero"})


def _norse_lif_box_cell(m, dt):
    import nir

    p = m.p
    tau, v_leak, v_th, v_reset = _full(1 / _np(p.tau_mem_inv), p.v_leak, p.v_th, p.v_reset)
    return nir.LIF(tau=tau, r=np.ones_like(tau), v_leak=v_leak, v_threshold=v_th, v_reset=v_reset,
                   metadata={META + "reset": _norse_reset(m)})


def _norse_li_box_cell(m, dt):
    import nir

    tau, v_leak = _full(1 / _np(m.p.tau_mem_inv), m.p.v_leak)
    return nir.LI(tau=tau, r=np.ones_like(tau), v_leak=v_leak)


def _norse_iaf_cell(m, dt):
    import nir

    v_th, v_reset = _full(m.p.v_th, m.p.v_reset)
    # Norse's IAF adds its input directly (v += x): spikeflow's IF adds dt * r * x.
    return nir.IF(r=np.full(v_th.shape, 1 / dt), v_threshold=v_th, v_reset=v_reset, metadata={META + "reset": "zero"})


NORSE_RULES: dict[str, Callable[[Any, float], Any]] = {
    "LIFCell": _norse_lif_cell,
    "LIFBoxCell": _norse_lif_box_cell,
    "LIBoxCell": _norse_li_box_cell,
    "IAFCell": _norse_iaf_cell,
}
"""Norse module type -> corrected NIR node (replacing what ``norse.torch.to_nir`` wrote)."""


def from_norse(module, sample) -> Graph:
    """Import a live Norse model (cells in a ``SequentialState``) through ``norse.torch.to_nir``.

    Args:
        module: the model, e.g. ``norse.torch.SequentialState(nn.Linear(...), norse.torch.LIFCell())``.
        sample: one input batch ``[B, ...]`` (or ``[T, B, ...]``) used to trace the model.

    Returns:
        A validated graph with the cells' ``dt`` and ``integration="euler"`` whose spikes equal Norse's.

    Raises:
        GraphError: a module Norse's exporter does not convert (recurrent cells, Flatten, pooling),
            or cells with different time steps.
    """
    import norse.torch

    modules = dict(module.named_modules())
    steps = {float(m.dt) for m in modules.values() if type(m).__name__ in NORSE_RULES}
    if len(steps) > 1:
        raise GraphError(f"Norse model: cells use different time steps {sorted(steps)}; spikeflow needs one dt")
    dt = steps.pop() if steps else 1e-3
    ng = norse.torch.to_nir(module, sample, dt=dt)
    for key in list(ng.nodes):
        rule = NORSE_RULES.get(type(modules.get(key)).__name__)
        if rule is not None:
            ng.nodes[key] = rule(modules[key], dt)
        elif ng.nodes[key] is None and key in modules:
            raise GraphError(f"node {key!r}: Norse's NIR exporter does not convert {type(modules[key]).__name__}{suggestion(modules[key])}")
    return _finish(ng, sample, dt, "Norse")
