"""HLOP: continual learning with Hebbian learning based orthogonal projection (Xiao et al., ICLR 2024).

Each protected layer (an ``nn.Linear`` from an Affine/Linear node, or an ``nn.Conv2d``) gets a
lateral population of *subspace neurons* with weights ``H`` (``k x n``). They see the layer's
presynaptic activity traces ``x`` (the input's rate: its mean over the time steps; for a convolution
every unfolded input patch) and learn with Oja's subspace rule, a Hebbian term ``yᵀx`` and an
anti-Hebbian lateral term ``- yᵀ y H``:

.. math:: y = x H^\\top, \\qquad \\Delta H = \\frac{\\eta}{B}\\, y^\\top (x - y H)

which converges to an orthonormal basis of the principal subspace of ``E[x xᵀ]``. On every new
task the population grows by ``k`` neurons that learn, from the forward passes of the task's last
training epochs, while the older ones stay frozen; at the task boundary they merge into the frozen
basis. Training a later task then projects each weight
gradient (and each optimiser step) orthogonally to that subspace,

.. math:: \\nabla W \\leftarrow \\nabla W - (\\nabla W H^\\top) H,

which equals using ``x - HᵀHx`` in place of ``x`` in ``∇W = δ xᵀ``: the layer's response to the
inputs of earlier tasks does not change. Biases, neuron parameters and normalisation statistics are
frozen after the first task, because they act on every input, old or new.

:class:`HLOP` is a strategy of :class:`spikeflow.continual.trainer.ContinualTrainer`;
:class:`OrthogonalProjection` holds the machinery it shares with the exact-SVD (GPM-style)
baseline. :class:`Subspace` and :func:`principal_cosines` are usable on their own.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from spikeflow.errors import DataError, GraphError

ACTIVITIES = ("rate", "step", "trace")
SUPPORTED = "nn.Linear (IR Affine/Linear) and nn.Conv2d (groups=1, integer zero padding)"


# ------------------------------------------------------------------------------- linear algebra


def orthonormal_rows(h: torch.Tensor, against: torch.Tensor | None = None) -> torch.Tensor:
    """Rows spanning the same space as ``h`` minus ``against``'s row space, orthonormalised.

    ``against`` must have orthonormal rows. Directions of ``h`` that lie (numerically) inside
    ``against`` are dropped, so the result may have fewer rows than ``h``.
    """
    if against is not None and against.shape[0]:
        h = h - (h @ against.T) @ against
        h = h - (h @ against.T) @ against  # a second pass: Gram-Schmidt loses orthogonality once
    if h.shape[0] == 0:
        return h
    q, r = torch.linalg.qr(h.T)
    keep = r.diagonal().abs() > 1e-8 * max(1.0, float(r.diagonal().abs().max()))
    return q.T[keep]


def top_subspace(x: torch.Tensor | np.ndarray, k: int, against: torch.Tensor | None = None) -> torch.Tensor:
    """Exact top-``k`` principal subspace (uncentred, as Oja's rule finds it) of the rows of ``x``.

    Args:
        x: samples ``[N, n]``.
        k: number of directions.
        against: orthonormal rows to remove from ``x`` first (the residual's subspace is returned).

    Returns:
        ``[k, n]`` float64 orthonormal rows, strongest first.
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.dim() != 2:
        raise DataError(f"top_subspace: expected samples [N, n], got shape {tuple(x.shape)}")
    if k > x.shape[1]:
        raise DataError(f"top_subspace: a {k}-dimensional subspace does not fit in {x.shape[1]} inputs")
    if against is not None and against.shape[0]:
        x = x - (x @ against.T) @ against
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    return vh[:k].clone()


def principal_cosines(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> np.ndarray:
    """Cosines of the principal angles between the row spaces of ``a`` and ``b`` (descending).

    Both are orthonormalised first, so any spanning rows will do. 1 means a shared direction.
    """
    qa = orthonormal_rows(torch.as_tensor(a, dtype=torch.float64))
    qb = orthonormal_rows(torch.as_tensor(b, dtype=torch.float64))
    return torch.linalg.svdvals(qa @ qb.T).clamp(max=1.0).numpy()


# ------------------------------------------------------------------------------ subspace neurons


class Subspace:
    """The subspace neurons of one layer: a frozen orthonormal basis plus the current task's neurons.

    Args:
        n_inputs: ``n``, the size of one presynaptic activity vector.
        lr: Oja learning rate relative to the batch's mean squared input norm (``η = lr / E‖x‖²``,
            which bounds ``η λ_max <= lr`` and keeps the rule stable for ``lr < 1``).
        iterations: Oja updates per batch (the same batch, the neurons' output recomputed each time).
        levels: ``None`` for rate (real-valued) subspace neurons; an integer makes them spiking:
            their output is a signed spike count over ``levels`` steps, ``y = round(levels·y)/levels``.
        name: the layer's name, used in error messages.
    """

    def __init__(self, n_inputs: int, *, lr: float = 0.5, iterations: int = 5, levels: int | None = None, name: str = ""):
        if n_inputs < 1:
            raise DataError(f"{self._where(name)}a subspace needs at least one input, got n_inputs={n_inputs}")
        if not 0.0 < lr < 2.0:
            raise DataError(f"{self._where(name)}Oja learning rate must be in (0, 2) (relative to E|x|^2), got {lr}")
        if iterations < 1:
            raise DataError(f"{self._where(name)}iterations must be >= 1, got {iterations}")
        if levels is not None and levels < 1:
            raise DataError(f"{self._where(name)}levels must be a positive spike-count resolution or None, got {levels}")
        self.n, self.lr, self.iterations, self.levels, self.name = int(n_inputs), float(lr), int(iterations), levels, name
        self.frozen = torch.zeros(0, self.n, dtype=torch.float64)
        self.new = torch.zeros(0, self.n, dtype=torch.float64)

    @staticmethod
    def _where(name: str) -> str:
        return f"layer {name!r}: " if name else ""

    @property
    def size(self) -> int:
        """Number of subspace neurons, frozen and new."""
        return self.frozen.shape[0] + self.new.shape[0]

    def add(self, k: int, generator: torch.Generator) -> None:
        """Add ``k`` new neurons (random unit rows orthogonal to the frozen basis).

        Raises:
            DataError: the subspace would have more neurons than the layer has inputs.
        """
        if k < 0:
            raise DataError(f"{self._where(self.name)}cannot add {k} subspace neurons")
        if self.size + k > self.n:
            raise DataError(
                f"{self._where(self.name)}a subspace of {self.size + k} neurons ({self.size} existing + {k} new) "
                f"is larger than the layer's input size {self.n}; use fewer neurons per task"
            )
        init = torch.randn(k, self.n, generator=generator, dtype=torch.float64)
        self.new = torch.cat([self.new, orthonormal_rows(init, self.frozen)])

    def _spikes(self, y: torch.Tensor) -> torch.Tensor:
        """The neurons' output: real-valued, or a signed spike count over ``levels`` steps."""
        return y if self.levels is None else torch.round(y * self.levels) / self.levels

    def update(self, x: torch.Tensor) -> None:
        """Oja subspace updates of the new neurons on one batch of activity vectors ``[B, n]``.

        The frozen neurons take part in the lateral (anti-Hebbian) term, so the new neurons learn
        the principal subspace of what the frozen ones do not yet explain.

        Every iteration ``H ← H + c yᵀ(b − y H) = (I − c yᵀy) H + c yᵀ b`` (``b`` the input
        without the frozen neurons' share, ``c = η / B``) keeps ``H = L H₀ + R b`` for a ``k x k``
        matrix ``L`` and a ``k x B`` matrix ``R``, and ``y = x Hᵀ = (x H₀ᵀ) Lᵀ + (x bᵀ) Rᵀ``. So
        the iterations update only these small coefficients and ``H`` is formed once at the end:
        the same updates without an ``n``-wide product per iteration.
        """
        if self.new.shape[0] == 0:
            return
        x = torch.as_tensor(x).detach()
        if not x.is_floating_point():
            x = x.to(torch.float64)
        if x.dim() != 2 or x.shape[1] != self.n:
            raise DataError(f"{self._where(self.name)}expected activity [B, {self.n}], got {tuple(x.shape)}")
        power = float((x * x).sum(1).mean())
        if power == 0.0 or not math.isfinite(power):
            return  # a silent (or broken) batch carries no information about the subspace
        c = self.lr / power / x.shape[0]
        # computed in the activity's dtype (float32 from a float32 model: half the cost), kept in float64
        frozen, h0 = self.frozen.to(x.dtype), self.new.to(x.dtype)
        base = x - self._spikes(x @ frozen.T) @ frozen
        k = h0.shape[0]
        # coefficients = [L | R] against rows [H₀; b]; responses of x to those rows
        rows = torch.cat([h0, base])
        x_rows = x @ rows.T
        eye = torch.eye(k, dtype=x.dtype)
        coef = torch.cat([eye, x.new_zeros(k, x.shape[0])], dim=1)
        for _ in range(self.iterations):
            y = self._spikes(x_rows @ coef.T)
            coef = torch.addmm(eye, y.T, y, alpha=-c) @ coef
            coef[:, k:].add_(y.T, alpha=c)
        self.new = (coef @ rows).to(torch.float64)

    def merge(self) -> None:
        """Task boundary: orthonormalise the new neurons into the frozen basis."""
        self.frozen = torch.cat([self.frozen, orthonormal_rows(self.new, self.frozen)])
        self.new = self.new[:0]

    def basis(self) -> torch.Tensor:
        """The frozen orthonormal basis ``[k, n]`` (float64) that gradients are projected against."""
        return self.frozen

    def state_dict(self) -> dict[str, Any]:
        return {"frozen": self.frozen.numpy().copy(), "new": self.new.numpy().copy()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key in ("frozen", "new"):
            value = np.asarray(state[key], dtype=np.float64)
            if value.ndim != 2 or value.shape[1] != self.n:
                raise DataError(f"{self._where(self.name)}stored {key} basis has shape {value.shape}, expected [k, {self.n}]")
        self.frozen = torch.from_numpy(np.array(state["frozen"], dtype=np.float64))
        self.new = torch.from_numpy(np.array(state["new"], dtype=np.float64))


# --------------------------------------------------------------------- layers and their inputs


def protectable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Name -> module of every layer that :class:`OrthogonalProjection` can protect, in model order.

    Names are IR node names for a :class:`~spikeflow.torch.lowering.GraphModule` (``"affine1"``),
    otherwise ``named_modules`` paths (``"fc1"``).
    """
    return {k: v for k, v in named_layers(model).items() if isinstance(v, (nn.Linear, nn.Conv2d))}


def named_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every named layer: IR node names for a GraphModule, ``named_modules`` paths otherwise."""
    from spikeflow.torch.lowering import GraphModule, _key

    if isinstance(model, GraphModule):
        return {name: model.layers[_key(name)] for name in model.order if _key(name) in model.layers}
    return {k: v for k, v in model.named_modules() if k}


def _check_layer(name: str, layer: nn.Module) -> None:
    if isinstance(layer, nn.Linear):
        return
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1 or isinstance(layer.padding, str) or layer.padding_mode != "zeros":
            raise GraphError(
                f"layer {name!r}: Conv2d with groups={layer.groups}, padding={layer.padding!r}, "
                f"padding_mode={layer.padding_mode!r} cannot be protected; supported: {SUPPORTED}"
            )
        return
    raise GraphError(f"layer {name!r}: type {type(layer).__name__} cannot be protected; supported: {SUPPORTED}")


def input_size(layer: nn.Module) -> int:
    """Length of one presynaptic activity vector of ``layer`` (a patch for a convolution)."""
    if isinstance(layer, nn.Linear):
        return layer.in_features
    kh, kw = layer.kernel_size
    return layer.in_channels * kh * kw


def weight_matrix(layer: nn.Module) -> torch.Tensor:
    """The layer's weight as ``[out, n]`` (a view, so in-place edits reach the layer)."""
    return layer.weight.view(layer.weight.shape[0], -1)


def record_inputs(model: nn.Module, layers: Mapping[str, nn.Module], x: torch.Tensor, keep_output: bool = False):
    """Run ``model`` once on time-major ``x`` and return each layer's time-major input ``[T, B, ...]``
    (detached), or ``(output, inputs)`` with ``keep_output=True`` (the output keeps its graph).

    A :class:`~spikeflow.torch.lowering.GraphModule` records the outputs of each layer's source
    nodes (their sum is the layer's input, as the graph semantics define it). Other modules are
    observed with forward pre-hooks; a layer may be called once on the whole sequence
    (``[T*B, ...]`` or ``[T, B, ...]``) or once per step (``[B, ...]``), joined in time order.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2))
        >>> record_inputs(net, {"0": net[0]}, torch.ones(4, 5, 3))["0"].shape
        torch.Size([4, 5, 3])
    """
    from spikeflow.torch.lowering import GraphModule

    steps = x.shape[0]
    if isinstance(model, GraphModule):
        needed = sorted({s for name in layers for s in model.sources[name]})
        y, rec = model.run(x, record=needed)
        out = {}
        for name in layers:
            srcs = model.sources[name]
            total = rec[srcs[0]]
            for s in srcs[1:]:
                total = total + rec[s]
            out[name] = total.detach()
        return (y, out) if keep_output else out
    calls: dict[str, list[torch.Tensor]] = {k: [] for k in layers}
    handles = [layer.register_forward_pre_hook(lambda mod, args, k=k: calls[k].append(args[0].detach()))
               for k, layer in layers.items()]
    try:
        y = model(x)
    finally:
        for handle in handles:
            handle.remove()
    out = {}
    for name, layer in layers.items():
        if not calls[name]:
            raise DataError(f"layer {name!r}: was not called during the forward pass, so its input could not be recorded")
        feature = (layer.in_features,) if isinstance(layer, nn.Linear) else tuple(calls[name][0].shape[-3:])
        joined = torch.cat([c.reshape((-1,) + feature) for c in calls[name]])
        if joined.shape[0] % steps:
            raise DataError(f"layer {name!r}: recorded {joined.shape[0]} input rows, not a multiple of {steps} time steps")
        out[name] = joined.reshape((steps, -1) + feature)
    return (y, out) if keep_output else out


def activity_vectors(layer: nn.Module, seq: torch.Tensor, activity: str = "rate", decay: float = 0.9) -> torch.Tensor:
    """The presynaptic activity vectors ``[N, n]`` of one layer from its time-major input ``[T, B, ...]``.

    Args:
        layer: the protected layer (a convolution's vectors are its unfolded input patches).
        seq: the layer's input over time.
        activity: ``"rate"``: one vector per sample, the input averaged over time; ``"step"``: one
            per sample and time step; ``"trace"``: one per sample and step, the input low-pass
            filtered as a leaky neuron sees it (``a_t = decay·a_{t-1} + (1 - decay)·x_t``).
        decay: the trace's decay per step.
    """
    if activity not in ACTIVITIES:
        raise DataError(f"activity must be one of {ACTIVITIES}, got {activity!r}")
    if activity == "rate":
        vec = seq.mean(0)
    elif activity == "step":
        vec = seq.reshape((-1,) + tuple(seq.shape[2:]))
    else:
        trace, traces = torch.zeros_like(seq[0]), []
        for x_t in seq:
            trace = decay * trace + (1 - decay) * x_t
            traces.append(trace)
        vec = torch.stack(traces).reshape((-1,) + tuple(seq.shape[2:]))
    if isinstance(layer, nn.Conv2d):
        patches = nn.functional.unfold(vec, layer.kernel_size, layer.dilation, layer.padding, layer.stride)
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])
    return vec.reshape(-1, layer.in_features)


def layer_activity(model: nn.Module, layers: Mapping[str, nn.Module], x: torch.Tensor, activity: str = "rate") -> dict[str, torch.Tensor]:
    """:func:`record_inputs` followed by :func:`activity_vectors` for every layer."""
    return {name: activity_vectors(layers[name], seq, activity) for name, seq in record_inputs(model, layers, x).items()}


def resolve_layers(model: nn.Module, layers: Iterable[str] | None) -> dict[str, nn.Module]:
    """Check and look up the layers to protect (default: every Linear and Conv2d layer).

    Raises:
        DataError: a name that is not a layer of the model, or nothing to protect.
        GraphError: a layer whose type cannot be protected.
    """
    known = named_layers(model)
    if layers is None:
        chosen = protectable_layers(model)
        for name, layer in chosen.items():
            _check_layer(name, layer)
    else:
        chosen = {}
        for name in layers:
            if name not in known:
                raise DataError(f"layer {name!r}: no such layer in the model; layers: {sorted(known)}")
            _check_layer(name, known[name])
            chosen[name] = known[name]
    if not chosen:
        raise DataError(f"no layer to protect: the model has no {SUPPORTED} layer")
    return chosen


# ------------------------------------------------------------------------ projection strategy


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm))


class OrthogonalProjection(ABC):
    """Protect layers by projecting their weight updates orthogonally to learned input subspaces.

    A continual-learning strategy (see :class:`spikeflow.continual.Strategy` for the hooks).
    Subclasses decide how a task's subspace is learned (:meth:`learn`).

    Args:
        subspace: new subspace directions per task: one int for every layer, or ``{layer: int}``.
        layers: names of the layers to protect (default: every Linear and Conv2d layer).
    """

    name = "projection"

    def __init__(self, subspace: int | Mapping[str, int] = 8, layers: Iterable[str] | None = None, activity: str = "rate"):
        if activity not in ACTIVITIES:
            raise DataError(f"activity must be one of {ACTIVITIES}, got {activity!r}")
        self.activity = activity
        self.subspace = subspace
        self.layer_names = None if layers is None else list(layers)
        self.layers: dict[str, nn.Module] = {}
        self.subspaces: dict[str, Subspace] = {}
        self.generator = torch.Generator()
        self.task = 0
        self._frozen: list[nn.Parameter] = []
        self._before: dict[str, torch.Tensor] = {}
        self._learning = False
        self._bases: dict = {}
        self.learn_epochs = 1

    # ------------------------------------------------------------------------------ setup

    def _subspace_options(self) -> dict[str, Any]:
        return {}

    def _k(self, name: str) -> int:
        if isinstance(self.subspace, Mapping):
            if name not in self.subspace:
                raise DataError(f"layer {name!r}: no subspace size given; sizes given for {sorted(self.subspace)}")
            return int(self.subspace[name])
        return int(self.subspace)

    def attach(self, model: nn.Module, seed: int) -> None:
        """Find and check the protected layers of ``model``; make one :class:`Subspace` per layer."""
        self.layers = resolve_layers(model, self.layer_names)
        if isinstance(self.subspace, Mapping):
            extra = sorted(set(self.subspace) - set(self.layers))
            if extra:
                raise DataError(f"subspace size given for {extra[0]!r}, which is not a protected layer; protected: {sorted(self.layers)}")
        self.subspaces = {}
        for name, layer in self.layers.items():
            n = input_size(layer)
            k = self._k(name)
            if k < 1 or k > n:
                raise DataError(f"layer {name!r}: a subspace of {k} neurons per task does not fit its input size {n} (need 1 <= k <= {n})")
            self.subspaces[name] = Subspace(n, name=name, **self._subspace_options())
        self.generator = torch.Generator().manual_seed(int(seed) + 7919)
        # frozen after the first task: what acts on every input, old or new (biases, neuron
        # parameters, normalisation); the weights of unprotected layers stay free
        dense = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
        self._frozen = [p for module in model.modules() for pname, p in module.named_parameters(recurse=False)
                        if not (pname == "weight" and isinstance(module, dense))]
        self._norms = [m for m in model.modules() if _is_norm(m)]

    # ----------------------------------------------------------------------------- hooks

    def begin_task(self, task: int, trainer) -> None:
        """Add this task's new subspace neurons (they learn during the task's last epochs)."""
        self.task = task
        self._bases = {}  # the frozen bases do not change during a task: cast them once
        for name, sub in self.subspaces.items():
            sub.add(self._k(name), self.generator)

    def begin_epoch(self, epoch: int, trainer) -> None:
        """Called after ``model.train()``: normalisation statistics stay frozen after the first
        task; the subspace learns from the forward passes of the last ``learn_epochs`` epochs."""
        if self.task > 0:
            for m in self._norms:
                m.eval()
        self._learning = epoch >= trainer.epochs - self.learn_epochs

    def forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The training forward pass; in learning epochs it also feeds the layers' inputs to :meth:`observe`."""
        if not self._learning:
            return model(x)
        out, inputs = record_inputs(model, self.layers, x, keep_output=True)
        with torch.no_grad():
            self.observe({name: activity_vectors(self.layers[name], seq, self.activity) for name, seq in inputs.items()})
        return out

    def training_tasks(self, task: int) -> list[int]:
        return [task]

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        return None

    def before_step(self) -> None:
        """Project the protected weights' gradients; drop the gradients of frozen parameters."""
        if self.task == 0:
            return
        for p in self._frozen:
            p.grad = None
        self._before = {}
        for name, layer in self.layers.items():
            grad = layer.weight.grad
            if grad is None or self.subspaces[name].frozen.shape[0] == 0:
                continue
            b, bt = self._basis(name, grad.dtype)
            g = grad if grad.dim() == 2 else grad.view(grad.shape[0], -1)
            g.sub_((g @ bt) @ b)
            self._before[name] = layer.weight.detach().clone()

    def _basis(self, name: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        key = (name, dtype)
        if key not in self._bases:
            b = self.subspaces[name].basis().to(dtype)
            self._bases[key] = (b, b.T.contiguous())
        return self._bases[key]

    @torch.no_grad()
    def after_step(self) -> None:
        """Project the optimiser's step too: momentum, Adam's per-weight scaling or weight decay
        would otherwise leave the orthogonal complement."""
        for name, before in self._before.items():
            b, bt = self._basis(name, before.dtype)
            w = weight_matrix(self.layers[name])
            delta = w - before.view_as(w)
            w.sub_((delta @ bt) @ b)
        self._before = {}

    def end_task(self, task: int, trainer) -> None:
        """Finish learning this task's subspaces, then merge them into the frozen bases."""
        self.finish()
        for sub in self.subspaces.values():
            sub.merge()
        self.task = task + 1

    @abstractmethod
    def observe(self, activity: Mapping[str, torch.Tensor]) -> None:
        """Learn from one batch of activity vectors ``{layer: [N, n]}``."""

    def finish(self) -> None:
        """End of the task's learning epochs (the new rows of every subspace must be final)."""

    # ------------------------------------------------------------------------- persistence

    def state_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "generator": self.generator.get_state().numpy().copy(),
            "subspaces": {name: sub.state_dict() for name, sub in self.subspaces.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        stored = state["subspaces"]
        if sorted(stored) != sorted(self.subspaces):
            raise DataError(f"checkpoint protects layers {sorted(stored)}, this strategy protects {sorted(self.subspaces)}")
        for name, sub in self.subspaces.items():
            sub.load_state_dict(stored[name])
        self.generator.set_state(torch.from_numpy(np.asarray(state["generator"], dtype=np.uint8)))
        self.task = int(state["task"])


class HLOP(OrthogonalProjection):
    """Hebbian learning based orthogonal projection: subspaces learned by Oja's rule.

    Args:
        subspace: new subspace neurons per task: one int for every layer, or ``{layer: int}``.
        layers: names of the layers to protect (default: every Linear and Conv2d layer).
        lr: Oja learning rate relative to ``E‖x‖²`` (see :class:`Subspace`).
        iterations: Oja updates per batch.
        hebbian_epochs: the subspace neurons learn during the task's last ``hebbian_epochs`` training
            epochs, from the same forward passes (no extra pass over the data).
        levels: ``None`` for rate subspace neurons, or the spike-count resolution of spiking ones.

    Example:
        >>> from spikeflow.continual.trainer import ContinualTrainer  # doctest: +SKIP
        >>> ContinualTrainer(net, strategy=HLOP(subspace={"affine1": 6, "affine3": 20}))  # doctest: +SKIP
    """

    name = "hlop"

    def __init__(self, subspace: int | Mapping[str, int] = 8, layers: Iterable[str] | None = None, *, lr: float = 0.5,
                 iterations: int = 5, hebbian_epochs: int = 2, levels: int | None = None, activity: str = "rate"):
        super().__init__(subspace, layers, activity)
        if hebbian_epochs < 1:
            raise DataError(f"HLOP: hebbian_epochs must be >= 1, got {hebbian_epochs}")
        self.options = {"lr": lr, "iterations": iterations, "levels": levels}
        self.learn_epochs = int(hebbian_epochs)
        Subspace(1, **self.options)  # validates the options now, not at the end of the first task

    def _subspace_options(self) -> dict[str, Any]:
        return dict(self.options)

    def observe(self, activity: Mapping[str, torch.Tensor]) -> None:
        """Online Oja updates of the new subspace neurons on one training batch's activity."""
        for name, vectors in activity.items():
            self.subspaces[name].update(vectors)
