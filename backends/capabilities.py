"""What a backend or hardware target can do, declared by its own module as ``CAPABILITIES``.

Callers ask the registry (:func:`spikeflow.backends.capabilities`, :func:`~spikeflow.backends.backend_names`)
instead of testing a backend's name, so a new backend or target is one module plus one
``register_backend`` / ``register_target`` line.

Example:
    >>> from spikeflow.backends import backend_names, capabilities
    >>> capabilities("numba-event").early_exit
    True
    >>> backend_names(early_exit=True)
    ['numba-clock', 'numba-event', 'torch']
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from spikeflow.errors import BackendError

KINDS = ("simulator", "target")


@dataclass(frozen=True)
class Capabilities:
    """One registry entry's abilities.

    Attributes:
        kind: "simulator" (``sf.simulate``) or "target" (``sf.export`` / ``sf.load_export``).
        engine: the implementation family ("numba", "torch", "brian2", or a target's own): the
            early-exit package picks its runner by it.
        precisions: what ``precision=`` accepts ("float64", "float32", "fixed", ...).
        event_driven: synapses do work only for nonzero inputs (stats count the events done).
        event_input: event arrays go straight to per-step entries (the module's ``run_events``),
            never a dense ``[T, B, ...]`` array; other backends get events binned densely.
        early_exit: per-sample dynamic-confidence early exit (:mod:`spikeflow.exit`).
        streaming: a state-keeping simulator fed chunk by chunk (``spikeflow.backends.Simulator``).
    """

    kind: str = "simulator"
    engine: str = ""
    precisions: tuple[str, ...] = ("float64",)
    event_driven: bool = False
    event_input: bool = False
    early_exit: bool = False
    streaming: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise BackendError(f"capabilities field 'kind': expected one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "precisions", tuple(self.precisions))

    def supports(self, **required: Any) -> bool:
        """True when every ``required`` field has the given value (``precision="float32"``: one of ``precisions``)."""
        names = {f.name for f in fields(self)}
        for key, value in required.items():
            if key == "precision":
                if value not in self.precisions:
                    return False
            elif key not in names:
                raise BackendError(f"unknown capability {key!r}; capabilities are {sorted(names | {'precision'})}")
            elif getattr(self, key) != value:
                return False
        return True

    def as_row(self) -> dict[str, str]:
        """The entry as text cells, for tables (``docs/architecture.md``, ``spikeflow info --backends``)."""
        yes = {True: "yes", False: "-"}
        return {"kind": self.kind, "engine": self.engine, "precisions": ", ".join(self.precisions),
                "event-driven": yes[self.event_driven], "event input": yes[self.event_input],
                "early exit": yes[self.early_exit], "streaming": yes[self.streaming]}
