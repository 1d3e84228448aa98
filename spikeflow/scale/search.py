"""Search algorithms behind a sweep: a plain grid, or Optuna's TPE through its ask-and-tell API.

Both hand out trials one at a time (``propose``), hear back finished ones (``tell``), and can be
rebuilt from the trials a previous run already stored (``restore``), so a resumed sweep continues
the same search instead of starting over.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from spikeflow.errors import BackendError
from spikeflow.scale.config import SweepConfig


class GridSearch:
    """Every combination of the parameters' values, in the order the file lists them."""

    def __init__(self, config: SweepConfig):
        names = list(config.params)
        points = itertools.product(*(config.params[n].values for n in names))
        self.points = [dict(zip(names, p)) for p in points][: config.trials]
        self._next = 0
        self._done: set[int] = set()

    @property
    def total(self) -> int:
        return len(self.points)

    def restore(self, records: list[dict[str, Any]]) -> None:
        """Skip the points already finished (they are never proposed again)."""
        self._next = 0
        self._done = {r["trial"] for r in records}

    def propose(self) -> tuple[int, dict[str, Any]] | None:
        """The next unfinished ``(trial number, params)``, or None when the grid is exhausted."""
        while self._next < len(self.points):
            number, self._next = self._next, self._next + 1
            if number not in self._done:
                return number, dict(self.points[number])
        return None

    def tell(self, number: int, metrics: dict[str, float] | None) -> None:
        """A grid does not learn from results."""


class OptunaSearch:
    """Optuna (TPE sampler, seeded) asked for one trial at a time; several objectives make a
    multi-objective study, whose Pareto front Optuna's sampler then explores."""

    def __init__(self, config: SweepConfig):
        try:
            import optuna
        except ImportError:
            raise BackendError('Optuna is not installed; install the extra: pip install "spikeflow[ray]"') from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self.metrics = list(config.objectives)
        self.total = int(config.trials)
        self.distributions = {name: _distribution(optuna, p) for name, p in config.params.items()}
        directions = ["maximize" if config.objectives[m] == "max" else "minimize" for m in self.metrics]
        self.study = optuna.create_study(directions=directions, sampler=optuna.samplers.TPESampler(seed=config.seed))
        self._asked: dict[int, Any] = {}
        self._count = 0

    def restore(self, records: list[dict[str, Any]]) -> None:
        """Tell the study every stored trial, so sampling continues from what is known."""
        for r in sorted(records, key=lambda r: r["trial"]):
            values = self._values(r.get("metrics"))
            state = self._optuna.trial.TrialState.COMPLETE if values is not None else self._optuna.trial.TrialState.FAIL
            self.study.add_trial(self._optuna.trial.create_trial(
                params=r["params"], distributions=self.distributions, values=values, state=state))
        self._count = max([r["trial"] + 1 for r in records], default=0)

    def propose(self) -> tuple[int, dict[str, Any]] | None:
        if self._count >= self.total:
            return None
        trial = self.study.ask(self.distributions)
        number, self._count = self._count, self._count + 1
        self._asked[number] = trial
        return number, dict(trial.params)

    def tell(self, number: int, metrics: dict[str, float] | None) -> None:
        trial = self._asked.pop(number, None)
        if trial is None:
            return
        values = self._values(metrics)
        if values is None:
            self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, values)

    def _values(self, metrics: dict[str, float] | None) -> list[float] | None:
        if metrics is None:
            return None
        values = [float(metrics[m]) for m in self.metrics]
        return None if any(math.isnan(v) for v in values) else values


def _distribution(optuna, p):
    if p.values is not None:
        return optuna.distributions.CategoricalDistribution(list(p.values))
    if p.integer:
        return optuna.distributions.IntDistribution(int(p.low), int(p.high), log=p.log)
    return optuna.distributions.FloatDistribution(p.low, p.high, log=p.log)


def make_search(config: SweepConfig):
    """The search that ``config.search`` names."""
    return GridSearch(config) if config.search == "grid" else OptunaSearch(config)
