"""The one training loop of spikeflow, shared by :class:`~spikeflow.train.Trainer` and the
continual-learning trainer (:class:`spikeflow.continual.ContinualTrainer`).

It owns what every trainer sets up the same way: the model's dtype and device, the time-major
batch (optional spike encoder, then ``[T, B, ...]`` in the model's dtype), the optimiser, one
optimisation step, one epoch with its running loss and accuracy, and the checkpoint file (HDF5,
no pickle: :func:`save_state` / :func:`load_state`).

Step structure (:meth:`TrainingLoop.step`), where a strategy plugs in::

    out, record = hooks.forward(model, x)          # a strategy's forward (HLOP records traces)
    loss = loss_fn(out, target) + regularizers(record) + hooks.penalty(model)   # EWC's penalty
    optimizer.zero_grad(); loss.backward()
    hooks.before_step()                            # gradient projection (HLOP, exact projection)
    optimizer.step()
    hooks.after_step()

A long-sequence strategy (``sequence=``, :class:`spikeflow.train.long_sequences.SequenceStrategy`)
runs the forward and backward of a step itself (chunk by chunk), then the same ``penalty``,
``before_step``, ``optimizer.step()``, ``after_step``.

:meth:`TrainingLoop.epoch` runs ``step`` over an iterable of batches; data parallelism
(:class:`spikeflow.train.distributed.DistributedLoop`) overrides ``epoch`` to hand each worker its
shard of every batch and sums the gradients over the workers before ``hooks.before_step()``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from spikeflow._progress import progress_bar
from spikeflow.errors import DataError, FormatError
from spikeflow.train.losses import get_loss

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


class NoHooks:
    """The plain step: no strategy."""

    def forward(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model(x)

    def penalty(self, model: torch.nn.Module) -> torch.Tensor | None:
        return None

    def before_step(self) -> None:
        return None

    def after_step(self) -> None:
        return None


def make_optimizer(model: torch.nn.Module, optimizer: str | Callable, lr: float, momentum: float = 0.0) -> torch.optim.Optimizer:
    """An optimiser over the model's trainable parameters: a name in ``OPTIMIZERS`` or ``(params, lr) -> Optimizer``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise DataError("training: the model has no trainable parameters")
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise DataError(f"training: unknown optimizer {optimizer!r}; known: {sorted(OPTIMIZERS)}")
        if optimizer == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=momentum)
        return OPTIMIZERS[optimizer](params, lr=lr)
    return optimizer(params, lr=lr)


class TrainingLoop:
    """Dtype, device, encoding, optimiser and the optimisation step of one model.

    Args:
        model: ``nn.Module`` mapping ``[T, B, ...]`` to ``[T, B, C]``.
        loss: a name from :data:`spikeflow.train.losses.LOSSES` or a callable ``loss(y, target)``
            (its ``scores(y) -> [B, C]``, default the sum over time, decides predictions).
        optimizer: built by :func:`make_optimizer` (set :attr:`optimizer` again to restart it).
        device: where the model and batches live.
        encoder: ``encoder(x_dense_batch, generator) -> [T, B, ...]``; None: ``x`` is batch-first
            ``[B, T, ...]`` and is transposed.
        regularizers: callables on the ``record`` dict of ``model.run(x, record=...)``, each
            naming its nodes in ``.nodes``.
        hooks: a strategy with ``forward``, ``penalty``, ``before_step``, ``after_step`` (see the
            module docstring); default :class:`NoHooks`.
        progress: a bar per epoch, labelled by ``desc`` (on a terminal; off in logs, see spikeflow/_progress.py).
        sequence: a long-sequence strategy
            (:class:`spikeflow.train.long_sequences.SequenceStrategy`: lean BPTT, truncated BPTT,
            OTTT, a memory budget) that runs the forward and backward of each step; None: one
            autograd pass over the whole sequence.
    """

    def __init__(self, model: torch.nn.Module, loss: str | Callable, optimizer: torch.optim.Optimizer | None = None, *,
                 device: str | torch.device = "cpu", encoder: Callable | None = None, regularizers: Sequence[Callable] = (),
                 hooks: Any = None, progress: bool = True, sequence: Any = None):
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.loss = get_loss(loss)
        self.optimizer = optimizer
        self.encoder = encoder
        self.regularizers = list(regularizers)
        self.record = tuple(dict.fromkeys(n for r in self.regularizers for n in getattr(r, "nodes", ())))
        if self.regularizers and not hasattr(model, "run"):
            raise DataError("training: regularizers need a model with run(x, record=...), such as sf.to_torch(graph)")
        self.hooks = hooks if hooks is not None else NoHooks()
        self.progress = progress
        self.sequence = sequence
        if sequence is not None:
            sequence.check(self)

    @property
    def dtype(self) -> torch.dtype:
        """The model's floating-point dtype (inputs are cast to it once per batch)."""
        p = next(self.model.parameters(), None)
        return p.dtype if p is not None and p.is_floating_point() else torch.get_default_dtype()

    def time_major(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A batch-first batch as the model's time-major input ``[T, B, ...]``, on its device and dtype."""
        if self.encoder is not None:
            x = self.encoder(x, generator)
        else:
            if x.dim() < 2:
                raise DataError(f"data: expected batch-first x of shape [B, T, ...], got {tuple(x.shape)}")
            x = x.transpose(0, 1)
        return x.to(self.device, self.dtype)

    def scores(self, y: torch.Tensor) -> torch.Tensor:
        """Class scores ``[B, C]`` of an output ``[T, B, C]``, as the loss defines them."""
        scores = getattr(self.loss, "scores", None)
        return scores(y) if scores is not None else y.sum(0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training forward pass: the strategy's, or ``model.run`` when regularisers need records."""
        if self.record:
            return self.model.run(x, record=self.record)
        return self.hooks.forward(self.model, x), {}

    def step(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step on a time-major batch; returns the (detached) loss and output."""
        out, record = self.forward(x)
        loss = self.loss(out, target)
        for reg in self.regularizers:
            loss = loss + reg(record)
        extra = self.hooks.penalty(self.model)
        if extra is not None:
            loss = loss + extra
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.hooks.before_step()
        self.optimizer.step()
        self.hooks.after_step()
        return loss.detach(), out.detach()

    def epoch(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], generator: torch.Generator, *,
              count: int | None = None, desc: str = "") -> tuple[float, float]:
        """Train on batch-first ``(x, target)`` batches; return the mean loss and accuracy.

        The caller puts the model in training mode first (a strategy may then freeze parts of it,
        as HLOP does with normalisation statistics).
        """
        total, correct, seen = 0.0, 0, 0
        bar = progress_bar(batches, total=count, desc=desc, enabled=self.progress, leave=False)
        for x, target in bar:
            x, target = self.time_major(x, generator), target.to(self.device)
            if self.sequence is not None:
                loss, scores = self.sequence.step(self, x, target)
            else:
                loss, out = self.step(x, target)
                scores = self.scores(out)
            batch = target.shape[0]
            total += float(loss) * batch
            correct += int((scores.argmax(-1) == target).sum())
            seen += batch
            bar.set_postfix(loss=f"{total / seen:.4f}", acc=f"{correct / seen:.3f}")
        bar.close()
        if seen == 0:
            raise DataError("fit: the training data is empty")
        return total / seen, correct / seen


# ------------------------------------------------------------------------------ checkpoints


def save_state(path: str | Path, format_name: str, version: int, state: Mapping[str, Any]) -> Path:
    """Write a training state atomically as HDF5: tensors and arrays as datasets, everything else
    (numbers, strings, None, nested dicts/lists/tuples, integer keys) as one JSON document."""
    from spikeflow._checked_files import sealed_hdf5_writer
    from spikeflow.io.hdf5 import write_header

    arrays: list[np.ndarray] = []
    tree = _pack(state, arrays)
    # Sealed: the SHA-256 in the user block is checked before libhdf5 parses the file (docs/files.md).
    with sealed_hdf5_writer(path) as f:
        write_header(f, format_name, version)
        f.attrs["state"] = json.dumps(tree)
        group = f.create_group("arrays")
        for i, arr in enumerate(arrays):
            group.create_dataset(str(i), data=arr)
    return Path(path)


def load_state(path: str | Path, format_name: str, version: int, what: str = "checkpoint") -> dict[str, Any]:
    """Read a state written by :func:`save_state`; a missing, damaged (checksum), unsealed, truncated
    or foreign file raises FormatError, checked before libhdf5 parses it."""
    from spikeflow._checked_files import as_format_error, load_sealed_hdf5
    from spikeflow.io.hdf5 import check_header

    path = Path(path)
    where = f"{what} {str(path)!r}"
    raw = load_sealed_hdf5(path, _state_tree, where)
    # The header read in the helper, checked here with the same messages as every spikeflow file.
    check_header(SimpleNamespace(attrs={"format": raw["format"], "format_version": raw["version"]}), where, format_name, version)
    if raw["state"] is None:
        raise FormatError(f"{where}: not a training state file (no 'state' document or 'arrays' group)")
    with as_format_error(where):
        state = _unpack(json.loads(raw["state"]), raw["arrays"])
    if not isinstance(state, dict):
        raise FormatError(f"{what} {str(path)!r}: expected a dict, got {type(state).__name__}")
    return state


def _state_tree(f, where: str) -> dict[str, Any]:
    """Header, JSON document and arrays of an open, structure-checked state file (parse helper)."""
    import h5py

    state, arrays = f.attrs.get("state"), f.get("arrays")
    ok = isinstance(state, str) and isinstance(arrays, h5py.Group)
    return {
        "format": f.attrs.get("format"), "version": f.attrs.get("format_version"), "state": state if ok else None,
        "arrays": {k: np.asarray(v[()]) for k, v in arrays.items()} if ok else {},
    }


def restore_all_or_nothing(owner: Any, state: Mapping[str, Any], shared: tuple = ()) -> None:
    """``owner._restore(state)``, but first on a deep copy of ``owner`` (sharing the objects in
    ``shared``, e.g. its data): a state that does not fit raises there and leaves ``owner`` untouched."""
    trial = copy.deepcopy(owner, {id(v): v for v in shared})
    trial._restore(state)
    owner._restore(state)


def _pack(value: Any, arrays: list[np.ndarray]) -> Any:
    if isinstance(value, torch.Tensor):
        arrays.append(value.detach().cpu().numpy())
        return {"tensor": len(arrays) - 1}
    if isinstance(value, np.ndarray):
        arrays.append(value)
        return {"array": len(arrays) - 1}
    if isinstance(value, Mapping):
        return {"dict": [[_pack(k, arrays), _pack(v, arrays)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"tuple": [_pack(v, arrays) for v in value]}
    if isinstance(value, list):
        return [_pack(v, arrays) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise FormatError(f"checkpoint: cannot store a value of type {type(value).__name__}")


def _unpack(value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(value, list):
        return [_unpack(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise FormatError(f"checkpoint: malformed entry {sorted(value)}")
    (kind, body), = value.items()
    if kind in ("tensor", "array"):
        if str(body) not in arrays:
            raise FormatError(f"checkpoint: array {body!r} is missing")
        arr = arrays[str(body)]
        return torch.from_numpy(np.array(arr)) if kind == "tensor" else arr
    if kind == "dict":
        return {_unpack(k, arrays): _unpack(v, arrays) for k, v in body}
    if kind == "tuple":
        return tuple(_unpack(v, arrays) for v in body)
    raise FormatError(f"checkpoint: unknown entry kind {kind!r}")
