"""Dynamic-confidence early exit as a graph annotation (Li et al., ICCV 2023).

A policy names the Output node to decode and the stopping rule. After step :math:`s` (1-based)
the decoder holds the accumulated output :math:`a_s = \\delta\\, a_{s-1} + y_s` (``decay``
:math:`\\delta = 1`: a plain running sum) and its confidence

.. math:: c_s = \\max_j \\mathrm{softmax}(a_s / T)_j = 1 \\big/ \\textstyle\\sum_j e^{(a_{s,j} - \\max_k a_{s,k}) / T}

A sample stops at the first step with ``s >= min_steps`` and ``c_s >= threshold``, or at
``max_steps`` (or the end of its input); its prediction is :math:`\\arg\\max_j a_{s,j}`.

The policy lives in ``graph.metadata["exit_policy"]`` as a plain JSON dict, so it saves and loads
with the graph (HDF5, and through every function that keeps metadata).

Example:
    >>> import numpy as np, spikeflow as sf
    >>> g = sf.Graph.sequential(sf.ir.Linear(weight=np.ones((3, 4))), sf.ir.LIF(tau=0.01, v_threshold=1.0))
    >>> set_exit_policy(g, threshold=0.9, min_steps=2)
    ExitPolicy(output='output', threshold=0.9, min_steps=2, max_steps=None, decay=1.0, temperature=1.0, calibration=None)
    >>> get_exit_policy(g).threshold
    0.9
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from spikeflow.errors import GraphError
from spikeflow.ir.graph import register_metadata_check

METADATA_KEY = "exit_policy"


@dataclass(frozen=True)
class ExitPolicy:
    """The early-exit rule of a graph.

    Attributes:
        output: name of the Output node whose values are decoded (shape ``(classes,)``).
        threshold: confidence in (0, 1] that stops a sample.
        min_steps: no sample stops before this many steps (>= 1).
        max_steps: every sample stops after this many steps (None: at the end of its input).
        decay: smoothing of the accumulated output, in (0, 1]; 1 is a plain running sum.
        temperature: softmax temperature (> 0).
        calibration: what :func:`spikeflow.exit.calibrate` measured when it chose the threshold
            (validation accuracy and mean steps, the allowed drop); informational.
    """

    output: str
    threshold: float
    min_steps: int = 1
    max_steps: int | None = None
    decay: float = 1.0
    temperature: float = 1.0
    calibration: dict | None = None

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        """Raise GraphError naming the field when a value is out of range."""
        here = "exit_policy field"
        if not isinstance(self.output, str) or not self.output:
            raise GraphError(f"{here} 'output': expected the name of an Output node, got {self.output!r}")
        if not _is_number(self.threshold) or not 0.0 < self.threshold <= 1.0:
            raise GraphError(f"{here} 'threshold': expected a confidence in (0, 1], got {self.threshold!r}")
        if not _is_int(self.min_steps) or self.min_steps < 1:
            raise GraphError(f"{here} 'min_steps': expected an integer >= 1, got {self.min_steps!r}")
        if self.max_steps is not None:
            if not _is_int(self.max_steps) or self.max_steps < 1:
                raise GraphError(f"{here} 'max_steps': expected an integer >= 1 or None, got {self.max_steps!r}")
            if self.max_steps < self.min_steps:
                raise GraphError(f"{here} 'max_steps': {self.max_steps} is smaller than min_steps={self.min_steps}")
        if not _is_number(self.decay) or not 0.0 < self.decay <= 1.0:
            raise GraphError(f"{here} 'decay': expected a smoothing factor in (0, 1], got {self.decay!r}")
        if not _is_number(self.temperature) or not self.temperature > 0:
            raise GraphError(f"{here} 'temperature': expected a positive number, got {self.temperature!r}")
        if self.calibration is not None:
            if not isinstance(self.calibration, Mapping):
                raise GraphError(f"{here} 'calibration': expected a dict or None, got {type(self.calibration).__name__}")
            try:
                json.dumps(dict(self.calibration))
            except (TypeError, ValueError) as err:
                raise GraphError(f"{here} 'calibration': must be JSON-serialisable ({err})") from None

    def steps_for(self, n_input_steps: int) -> int:
        """The last step a sample may run, given an input of ``n_input_steps`` steps."""
        return n_input_steps if self.max_steps is None else min(self.max_steps, n_input_steps)

    def with_threshold(self, threshold: float, **changes: Any) -> "ExitPolicy":
        """A copy with another threshold (and other ``changes``)."""
        return replace(self, threshold=float(threshold), **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "ExitPolicy":
        """Build from :meth:`to_dict` output (or its JSON text); bad fields raise GraphError."""
        if isinstance(data, (str, bytes)):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as err:
                raise GraphError(f"exit_policy: not valid JSON ({err})") from None
        if not isinstance(data, Mapping):
            raise GraphError(f"exit_policy: expected a dict, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        extra = sorted(set(data) - names)
        if extra:
            raise GraphError(f"exit_policy: unexpected field {extra[0]!r}; fields are {sorted(names)}")
        for key in ("output", "threshold"):
            if key not in data:
                raise GraphError(f"exit_policy: missing field {key!r}")
        return cls(**dict(data))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _default_output(graph) -> str:
    outputs = graph.outputs
    if len(outputs) != 1:
        raise GraphError(f"exit_policy field 'output': the graph has outputs {outputs}; name the one to decode")
    return outputs[0]


def set_exit_policy(graph, policy: ExitPolicy | None = None, **fields_: Any) -> ExitPolicy:
    """Attach an exit policy to ``graph`` (``graph.metadata["exit_policy"]``) after checking it.

    Pass an :class:`ExitPolicy`, or its fields as keywords (``output`` defaults to the graph's only
    Output node). Keywords given with a policy override its fields.

    Raises:
        GraphError: a field out of range, or an ``output`` that is not an Output node of the graph.
    """
    if policy is None:
        fields_.setdefault("output", _default_output(graph))
        if "threshold" not in fields_:
            raise GraphError("exit_policy: missing field 'threshold'")
        policy = ExitPolicy(**fields_)
    elif fields_:
        policy = replace(policy, **fields_)
    if not isinstance(policy, ExitPolicy):
        raise GraphError(f"exit_policy: expected an ExitPolicy, got {type(policy).__name__}")
    _check_against(graph, policy)
    graph.metadata[METADATA_KEY] = policy.to_dict()
    return policy


def get_exit_policy(graph) -> ExitPolicy | None:
    """The graph's checked exit policy, or None when it has none."""
    if METADATA_KEY not in graph.metadata:
        return None
    return check_exit_policy(graph)


def clear_exit_policy(graph) -> None:
    """Remove the graph's exit policy, if any."""
    graph.metadata.pop(METADATA_KEY, None)


def check_exit_policy(graph) -> ExitPolicy | None:
    """Check ``graph.metadata["exit_policy"]`` (if present) against the graph; return the policy.

    Raises:
        GraphError: malformed policy, threshold outside (0, 1], inconsistent min/max steps, or an
            exit on a node that is not an Output node of shape ``(classes,)`` with classes >= 2.
    """
    if METADATA_KEY not in graph.metadata:
        return None
    policy = ExitPolicy.from_dict(graph.metadata[METADATA_KEY])
    _check_against(graph, policy)
    return policy


def _check_against(graph, policy: ExitPolicy) -> None:
    from spikeflow.ir import nodes as n

    node = graph.nodes.get(policy.output)
    if node is None:
        raise GraphError(f"exit_policy field 'output': {policy.output!r} is not a node of the graph; Output nodes: {graph.outputs}")
    if not isinstance(node, n.Output):
        raise GraphError(
            f"exit_policy field 'output': node {policy.output!r} is a {type(node).__name__}, not an Output node; "
            f"exit on one of {graph.outputs}"
        )
    if len(node.shape) != 1 or node.shape[0] < 2:
        raise GraphError(f"exit_policy field 'output': node {policy.output!r} has shape {node.shape}; decoding needs class scores of shape (classes >= 2,)")


register_metadata_check(METADATA_KEY, check_exit_policy)
