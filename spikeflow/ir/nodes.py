"""IR nodes: parameter-only dataclasses, one per primitive, each with its equation.

Shapes exclude the time and batch dimensions. Parameters are float64 NumPy arrays with physical
names (``tau``, ``v_threshold``; never inverses). Neuron parameters may be scalars, which broadcast
to the shape of the input. How continuous equations become discrete steps is decided by the graph
(``dt`` and ``integration``) in :mod:`spikeflow.ir.discretise`, so every backend integrates the same
update.
"""

from __future__ import annotations

import math
import sys
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Mapping

import numpy as np

from spikeflow.errors import GraphError

NODE_TYPES: dict[str, type["Node"]] = {}
"""Every node class by name, filled in by :meth:`Node.__init_subclass__` (one registry)."""

RESETS = ("zero", "subtract")


def _param(kind: str, default: Any = MISSING, *, n: int = 0, choices: tuple = (), sparse: bool = False):
    """A node field with a coercion ``kind``: array, positive, shape, ints, int, choice.

    ``sparse=True`` (2-d weight matrices only) also accepts a SciPy sparse matrix or the CSR dict
    of :func:`sparse_to_dict`; such a value is kept as a float64 ``scipy.sparse.csr_array``.
    """
    return field(default=default, metadata={"kind": kind, "n": n, "choices": choices, "sparse": sparse})


def _coerce(node: str, f, value: Any) -> Any:
    kind, n = f.metadata["kind"], f.metadata["n"]
    here = f"{node} field {f.name!r}"
    if f.metadata.get("sparse") and (is_sparse(value) or isinstance(value, Mapping)):
        return _coerce_sparse(here, value)
    if kind in ("array", "positive"):
        if np.iscomplexobj(value):  # casting would silently drop the imaginary part
            raise GraphError(f"{here}: expected real numbers, got complex values")
        try:
            arr = np.array(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise GraphError(f"{here}: expected numbers, got {type(value).__name__} ({err})") from None
        if not np.all(np.isfinite(arr)):
            raise GraphError(f"{here}: contains NaN or inf")
        if kind == "positive" and np.any(arr <= 0):
            raise GraphError(f"{here}: must be > 0, found {arr.min():g}")
        return arr
    if kind in ("shape", "ints"):
        items = [value] * n if np.ndim(value) == 0 and n else value
        try:
            out = tuple(int(v) for v in np.asarray(items).reshape(-1))
            if not all(np.asarray(items).reshape(-1) == np.array(out)):
                raise ValueError("not integers")
        except (TypeError, ValueError):
            raise GraphError(f"{here}: expected integers, got {value!r}") from None
        if n and len(out) != n:
            raise GraphError(f"{here}: expected {n} integers, got {len(out)}")
        low = 1 if kind == "shape" else 0
        if not out and kind == "shape" or any(v < low for v in out):
            raise GraphError(f"{here}: expected integers >= {low}, got {out}")
        return out
    if kind == "int":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            if not (isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iu"):
                raise GraphError(f"{here}: expected an integer, got {value!r}")
        return int(value)
    if kind == "choice":
        if isinstance(value, bytes):
            value = value.decode()
        if value not in f.metadata["choices"]:
            raise GraphError(f"{here}: expected one of {f.metadata['choices']}, got {value!r}")
        return str(value)
    raise AssertionError(kind)


# ------------------------------------------------------------------------------ sparse weights

SPARSE_FORMAT = "csr"
"""The ``format`` entry of a sparse weight's dict (and HDF5 group)."""
SPARSE_KEYS = ("format", "shape", "indptr", "indices", "data")


def is_sparse(value: Any) -> bool:
    """True for a SciPy sparse matrix or array (without importing SciPy when nobody else did)."""
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(value)


def dense_weight(value: Any) -> np.ndarray:
    """The weight of an Affine/Linear node (or a weight itself) as a dense float64 array.

    Sparse weights are densified, so call this only where a dense matrix is really needed
    (e.g. an ``nn.Linear``); it allocates ``rows * cols`` floats.
    """
    weight = value.weight if isinstance(value, Node) else value
    if is_sparse(weight):
        return weight.toarray()
    return np.asarray(weight, dtype=np.float64)


def sparse_to_dict(weight) -> dict[str, Any]:
    """A canonical CSR weight as plain arrays: ``{"format": "csr", "shape", "indptr", "indices", "data"}``."""
    return {
        "format": SPARSE_FORMAT,
        "shape": np.array(weight.shape, dtype=np.int64),
        "indptr": np.asarray(weight.indptr),
        "indices": np.asarray(weight.indices),
        "data": np.asarray(weight.data, dtype=np.float64),
    }


def _coerce_sparse(here: str, value: Any):
    """A float64 ``csr_array`` with sorted indices, no duplicates (summed) and no stored zeros,
    from SciPy or a CSR dict."""
    import scipy.sparse as sp

    if not is_sparse(value):  # a CSR dict (DOK matrices are Mappings too)
        value = _csr_from_dict(here, value)
    if value.ndim != 2:
        raise GraphError(f"{here}: expected a 2-d sparse matrix, got {value.ndim} dims")
    if value.dtype.kind not in "biuf":
        raise GraphError(f"{here}: expected real numbers, got a sparse matrix of {value.dtype}")
    try:
        out = sp.csr_array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as err:
        raise GraphError(f"{here}: cannot convert {type(value).__name__} to float64 CSR ({err})") from None
    out.sum_duplicates()  # also sorts the column indices of every row
    out.eliminate_zeros()  # a stored zero is no synapse: backends count what is stored
    if not np.all(np.isfinite(out.data)):
        raise GraphError(f"{here}: contains NaN or inf")
    return out


def _csr_from_dict(here: str, data: Mapping[str, Any]):
    """Check every part of a CSR dict (the arrays may come from a file) and build the matrix."""
    import scipy.sparse as sp

    keys = sorted(data)
    if keys != sorted(SPARSE_KEYS):
        raise GraphError(f"{here}: a sparse weight needs exactly the entries {sorted(SPARSE_KEYS)}, found {keys}")
    fmt = data["format"].decode() if isinstance(data["format"], bytes) else data["format"]
    if not isinstance(fmt, str) or fmt != SPARSE_FORMAT:
        raise GraphError(f"{here}: sparse format {fmt!r} is not supported (expected {SPARSE_FORMAT!r})")
    parts = {}
    for key, kinds in (("shape", "iu"), ("indptr", "iu"), ("indices", "iu"), ("data", "iuf")):
        arr = np.asarray(data[key])
        if arr.ndim != 1 or arr.dtype.kind not in kinds:
            expected = "numbers" if kinds == "iuf" else "integers"
            raise GraphError(f"{here}: CSR {key!r} must be a 1-d array of {expected}, found {arr.dtype} of shape {arr.shape}")
        parts[key] = arr
    shape, indptr, indices, values = parts["shape"], parts["indptr"], parts["indices"], parts["data"]
    if shape.size != 2 or np.any(shape < 0):
        raise GraphError(f"{here}: CSR 'shape' must be 2 sizes >= 0 (rows, cols), found {shape.tolist()}")
    rows, cols = int(shape[0]), int(shape[1])
    if indptr.size != rows + 1:
        raise GraphError(f"{here}: CSR 'indptr' must have rows + 1 = {rows + 1} entries, found {indptr.size}")
    if indptr[0] != 0 or np.any(np.diff(indptr.astype(np.int64)) < 0):
        raise GraphError(f"{here}: CSR 'indptr' must start at 0 and never decrease")
    if indices.size != values.size or int(indptr[-1]) != indices.size:
        raise GraphError(
            f"{here}: CSR lengths disagree: indptr ends at {int(indptr[-1])}, "
            f"'indices' has {indices.size} entries, 'data' has {values.size}"
        )
    if indices.size and (indices.min() < 0 or indices.max() >= cols):
        bad = int(np.flatnonzero((indices < 0) | (indices >= cols))[0])
        raise GraphError(f"{here}: CSR 'indices'[{bad}] = {int(indices[bad])} is outside the {cols} columns")
    if not np.all(np.isfinite(values)):
        raise GraphError(f"{here}: contains NaN or inf")
    return sp.csr_array((values.astype(np.float64), indices.astype(np.int64), indptr.astype(np.int64)), shape=(rows, cols))


def _same_values(a: Any, b: Any) -> bool:
    """Value equality of two parameters; a sparse weight equals the dense array with its entries."""
    if not (is_sparse(a) or is_sparse(b)):
        return np.array_equal(a, b)
    if a.shape != b.shape:
        return False
    if is_sparse(a) and is_sparse(b):
        return (a != b).nnz == 0
    sparse, dense = (a, b) if is_sparse(a) else (b, a)
    coo = sparse.tocoo()
    dense = np.asarray(dense)
    return bool(np.array_equal(dense[coo.row, coo.col], coo.data)) and np.count_nonzero(dense) == np.count_nonzero(coo.data)


@dataclass(eq=False)
class Node:
    """Base of all IR nodes: parameters only, plus shape inference and dict conversion."""

    stateful: ClassVar[bool] = False
    """Carries state from one time step to the next (only such nodes may close a cycle)."""
    spiking: ClassVar[bool] = False
    """Emits binary spikes."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            NODE_TYPES[cls.__name__] = cls

    def __post_init__(self):
        for f in fields(self):
            setattr(self, f.name, _coerce(type(self).__name__, f, getattr(self, f.name)))
        self.check()

    def check(self) -> None:
        """Check that the parameters agree with each other; raise GraphError naming the field."""

    def input_shape(self) -> tuple[int, ...] | None:
        """The input shape the parameters imply, or None if any shape is accepted."""
        return None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output shape for ``input_shape``; raise GraphError when they do not fit."""
        expected = self.input_shape()
        if expected is not None and tuple(input_shape) != expected:
            raise GraphError(f"{type(self).__name__}: expects input shape {expected}, got {tuple(input_shape)}")
        return tuple(input_shape)

    def to_dict(self) -> dict[str, Any]:
        """Field values by name, plus ``type``; arrays stay arrays, tuples become int arrays and
        sparse weights become the CSR dict of :func:`sparse_to_dict`."""
        out: dict[str, Any] = {"type": type(self).__name__}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = np.array(value, dtype=np.int64)
            elif is_sparse(value):
                value = sparse_to_dict(value)
            out[f.name] = value
        return out

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "Node":
        """Build a node from :meth:`to_dict` output; unknown types and bad fields raise GraphError."""
        data = dict(data)
        kind = data.pop("type", None)
        if isinstance(kind, bytes):
            kind = kind.decode()
        cls = NODE_TYPES.get(kind)
        if cls is None:
            raise GraphError(f"unknown node type {kind!r}; known: {sorted(NODE_TYPES)}")
        names = {f.name for f in fields(cls)}
        extra = sorted(set(data) - names)
        if extra:
            raise GraphError(f"{kind}: unexpected field {extra[0]!r}")
        missing = [f.name for f in fields(cls) if f.name not in data and f.default is MISSING]
        if missing:
            raise GraphError(f"{kind}: missing field {missing[0]!r}")
        return cls(**data)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(_same_values(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))

    __hash__ = None  # mutable parameters

    def __repr__(self) -> str:
        def show(v):
            if is_sparse(v):
                return f"csr{v.shape}[nnz={v.nnz}]"
            if isinstance(v, np.ndarray):
                return f"{v.item():g}" if v.ndim == 0 else f"array{v.shape}"
            return repr(v)

        args = ", ".join(f"{f.name}={show(getattr(self, f.name))}" for f in fields(self))
        return f"{type(self).__name__}({args})"


class _Elementwise(Node):
    """A node whose parameters broadcast to its input, and whose output has the input's shape."""

    def _param_shape(self) -> tuple[int, ...]:
        arrays = [getattr(self, f.name) for f in fields(self) if f.metadata["kind"] in ("array", "positive")]
        try:
            return tuple(np.broadcast_shapes(*(a.shape for a in arrays)))
        except ValueError:
            shapes = {f.name: getattr(self, f.name).shape for f in fields(self) if f.metadata["kind"] in ("array", "positive")}
            raise GraphError(f"{type(self).__name__}: parameter shapes do not agree: {shapes}") from None

    def check(self) -> None:
        self._param_shape()

    def input_shape(self) -> tuple[int, ...] | None:
        shape = self._param_shape()
        return shape or None

    def output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        shape = self._param_shape()
        try:
            ok = np.broadcast_shapes(shape, input_shape) == input_shape
        except ValueError:
            ok = False
        if not ok:
            raise GraphError(f"{type(self).__name__}: parameters of shape {shape} do not fit input shape {input_shape}")
        return input_shape


# ----------------------------------------------------------------------------------- structure


@dataclass(eq=False, repr=False)
class Input(Node):
    """Graph input of a given per-sample shape.  :math:`y = x`"""

    shape: tuple = _param("shape")

    def input_shape(self):
        return self.shape


@dataclass(eq=False, repr=False)
class Output(Node):
    """Graph output of a given per-sample shape.  :math:`y = x`"""

    shape: tuple = _param("shape")

    def input_shape(self):
        return self.shape


@dataclass(eq=False, repr=False)
class Flatten(Node):
    """Merge the per-sample dimensions ``start_dim..end_dim`` (batch and time are not counted)."""

    start_dim: int = _param("int", 0)
    end_dim: int = _param("int", -1)

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        start, end = self.start_dim % len(shape), self.end_dim % len(shape)
        if not -len(shape) <= self.start_dim < len(shape) or not -len(shape) <= self.end_dim < len(shape) or start > end:
            raise GraphError(f"Flatten: dims {self.start_dim}..{self.end_dim} do not fit input shape {shape}")
        return shape[:start] + (math.prod(shape[start : end + 1]),) + shape[end + 1 :]


# ------------------------------------------------------------------------------------- synapses


@dataclass(eq=False, repr=False)
class Affine(Node):
    """Synapses with bias; ``weight`` is dense or sparse (CSR).  :math:`y = W x + b`"""

    weight: np.ndarray = _param("array", sparse=True)
    bias: np.ndarray = _param("array")

    def check(self):
        if self.weight.ndim != 2:
            raise GraphError(f"Affine field 'weight': expected 2 dims (out, in), got shape {self.weight.shape}")
        if self.bias.shape != self.weight.shape[:1]:
            raise GraphError(f"Affine field 'bias': expected shape {self.weight.shape[:1]}, got {self.bias.shape}")

    def input_shape(self):
        return self.weight.shape[1:]

    def output_shape(self, input_shape):
        super().output_shape(input_shape)
        return self.weight.shape[:1]


@dataclass(eq=False, repr=False)
class Linear(Node):
    """Synapses; ``weight`` is dense or sparse (CSR).  :math:`y = W x`"""

    weight: np.ndarray = _param("array", sparse=True)

    def check(self):
        if self.weight.ndim != 2:
            raise GraphError(f"Linear field 'weight': expected 2 dims (out, in), got shape {self.weight.shape}")

    def input_shape(self):
        return self.weight.shape[1:]

    def output_shape(self, input_shape):
        super().output_shape(input_shape)
        return self.weight.shape[:1]


@dataclass(eq=False, repr=False)
class Scale(_Elementwise):
    """Elementwise gain.  :math:`y = s \\odot x`"""

    scale: np.ndarray = _param("array")


def _conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class _Conv(Node):
    ndim: ClassVar[int]

    def check(self):
        name = type(self).__name__
        if self.weight.ndim != self.ndim + 2:
            raise GraphError(f"{name} field 'weight': expected {self.ndim + 2} dims (out, in/groups, kernel...), got shape {self.weight.shape}")
        if self.bias.shape != self.weight.shape[:1]:
            raise GraphError(f"{name} field 'bias': expected shape {self.weight.shape[:1]}, got {self.bias.shape}")
        if self.groups < 1 or self.weight.shape[0] % self.groups:
            raise GraphError(f"{name} field 'groups': {self.groups} does not divide {self.weight.shape[0]} output channels")
        if min(self.stride) < 1 or min(self.dilation) < 1:
            raise GraphError(f"{name}: stride and dilation must be >= 1")

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return self.weight.shape[2:]

    def output_shape(self, input_shape):
        name, shape = type(self).__name__, tuple(input_shape)
        channels = self.weight.shape[1] * self.groups
        if len(shape) != self.ndim + 1 or shape[0] != channels:
            raise GraphError(f"{name}: expects input (channels={channels}, {self.ndim} spatial dims), got {shape}")
        spatial = tuple(
            _conv_out(s, k, st, p, d)
            for s, k, st, p, d in zip(shape[1:], self.kernel_size, self.stride, self.padding, self.dilation)
        )
        if min(spatial) < 1:
            raise GraphError(f"{name}: kernel {self.kernel_size} does not fit input {shape}")
        return (self.weight.shape[0],) + spatial


@dataclass(eq=False, repr=False)
class Conv1d(_Conv):
    """1-d convolution over (channels, length).  :math:`y = W * x + b`"""

    ndim: ClassVar[int] = 1
    weight: np.ndarray = _param("array")
    bias: np.ndarray = _param("array")
    stride: tuple = _param("ints", 1, n=1)
    padding: tuple = _param("ints", 0, n=1)
    dilation: tuple = _param("ints", 1, n=1)
    groups: int = _param("int", 1)


@dataclass(eq=False, repr=False)
class Conv2d(_Conv):
    """2-d convolution over (channels, height, width).  :math:`y = W * x + b`"""

    ndim: ClassVar[int] = 2
    weight: np.ndarray = _param("array")
    bias: np.ndarray = _param("array")
    stride: tuple = _param("ints", 1, n=2)
    padding: tuple = _param("ints", 0, n=2)
    dilation: tuple = _param("ints", 1, n=2)
    groups: int = _param("int", 1)


class _Pool2d(Node):
    def check(self):
        if min(self.kernel_size) < 1 or min(self.stride) < 1:
            raise GraphError(f"{type(self).__name__}: kernel_size and stride must be >= 1")

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) != 3:
            raise GraphError(f"{type(self).__name__}: expects input (channels, height, width), got {shape}")
        spatial = tuple(_conv_out(s, k, st, p, 1) for s, k, st, p in zip(shape[1:], self.kernel_size, self.stride, self.padding))
        if min(spatial) < 1:
            raise GraphError(f"{type(self).__name__}: kernel {self.kernel_size} does not fit input {shape}")
        return (shape[0],) + spatial


@dataclass(eq=False, repr=False)
class SumPool2d(_Pool2d):
    """Sum over each window.  :math:`y_{c,i,j} = \\sum_{(k,l) \\in \\text{window}(i,j)} x_{c,k,l}`"""

    kernel_size: tuple = _param("ints", n=2)
    stride: tuple = _param("ints", n=2)
    padding: tuple = _param("ints", 0, n=2)


@dataclass(eq=False, repr=False)
class AvgPool2d(_Pool2d):
    """Mean over each window (zero padding counts).  :math:`y = \\text{SumPool2d}(x) / (k_h k_w)`"""

    kernel_size: tuple = _param("ints", n=2)
    stride: tuple = _param("ints", n=2)
    padding: tuple = _param("ints", 0, n=2)


@dataclass(eq=False, repr=False)
class Delay(_Elementwise):
    """Per-element transmission delay in seconds, rounded to whole steps.  :math:`y(t) = x(t - d)`"""

    stateful: ClassVar[bool] = True
    delay: np.ndarray = _param("array")

    def check(self):
        super().check()
        if np.any(self.delay < 0):
            raise GraphError("Delay field 'delay': must be >= 0")


# -------------------------------------------------------------------------------------- neurons


@dataclass(eq=False, repr=False)
class Threshold(_Elementwise):
    """Stateless spike generator.  :math:`z = H(x - \\theta)`"""

    spiking: ClassVar[bool] = True
    threshold: np.ndarray = _param("array")


@dataclass(eq=False, repr=False)
class I(_Elementwise):  # noqa: E742 (NIR's name)
    """Integrator.  :math:`\\dot v = R\\, x`, output :math:`v`"""

    stateful: ClassVar[bool] = True
    r: np.ndarray = _param("array", 1.0)


@dataclass(eq=False, repr=False)
class IF(_Elementwise):
    """Integrate-and-fire.  :math:`\\dot v = R\\, x`; :math:`z = H(v - v_{th})`, then reset."""

    stateful: ClassVar[bool] = True
    spiking: ClassVar[bool] = True
    v_threshold: np.ndarray = _param("array")
    r: np.ndarray = _param("array", 1.0)
    v_reset: np.ndarray = _param("array", 0.0)
    reset: str = _param("choice", "zero", choices=RESETS)


@dataclass(eq=False, repr=False)
class LI(_Elementwise):
    """Leaky integrator.  :math:`\\tau \\dot v = (v_{leak} - v) + R\\, x`, output :math:`v`"""

    stateful: ClassVar[bool] = True
    tau: np.ndarray = _param("positive")
    r: np.ndarray = _param("array", 1.0)
    v_leak: np.ndarray = _param("array", 0.0)


@dataclass(eq=False, repr=False)
class LIF(_Elementwise):
    """Leaky integrate-and-fire.  :math:`\\tau \\dot v = (v_{leak} - v) + R\\, x`; :math:`z = H(v - v_{th})`, then reset."""

    stateful: ClassVar[bool] = True
    spiking: ClassVar[bool] = True
    tau: np.ndarray = _param("positive")
    v_threshold: np.ndarray = _param("array")
    r: np.ndarray = _param("array", 1.0)
    v_leak: np.ndarray = _param("array", 0.0)
    v_reset: np.ndarray = _param("array", 0.0)
    reset: str = _param("choice", "zero", choices=RESETS)


@dataclass(eq=False, repr=False)
class CubaLI(_Elementwise):
    """Current-based leaky integrator.

    :math:`\\tau_{syn} \\dot i = -i + w_{in} x`;  :math:`\\tau_{mem} \\dot v = (v_{leak} - v) + R\\, i`, output :math:`v`
    """

    stateful: ClassVar[bool] = True
    tau_syn: np.ndarray = _param("positive")
    tau_mem: np.ndarray = _param("positive")
    r: np.ndarray = _param("array", 1.0)
    v_leak: np.ndarray = _param("array", 0.0)
    w_in: np.ndarray = _param("array", 1.0)


@dataclass(eq=False, repr=False)
class CubaLIF(_Elementwise):
    """Current-based LIF.

    :math:`\\tau_{syn} \\dot i = -i + w_{in} x`;  :math:`\\tau_{mem} \\dot v = (v_{leak} - v) + R\\, i`;
    :math:`z = H(v - v_{th})`, then reset.
    """

    stateful: ClassVar[bool] = True
    spiking: ClassVar[bool] = True
    tau_syn: np.ndarray = _param("positive")
    tau_mem: np.ndarray = _param("positive")
    v_threshold: np.ndarray = _param("array")
    r: np.ndarray = _param("array", 1.0)
    v_leak: np.ndarray = _param("array", 0.0)
    v_reset: np.ndarray = _param("array", 0.0)
    w_in: np.ndarray = _param("array", 1.0)
    reset: str = _param("choice", "zero", choices=RESETS)
