"""``spikeflow sweep CONFIG``: trials run on Ray actors, stored as they finish, resumable.

The driver keeps one :class:`~spikeflow.scale.worker.SimulationWorker` actor per worker, hands
each a trial from the search (grid or Optuna), and writes every finished trial to its own JSON
file at once (:class:`~spikeflow.scale.store.TrialStore`). When a worker process dies (killed,
out of memory, its node lost), Ray raises ``RayActorError`` for its trial: the driver starts a new
actor and runs that trial again (up to ``max_attempts``), while every trial that had finished
stays on disk. Running the same command again skips the stored trials.

Why our own actors and Optuna's ask-and-tell rather than Ray Tune: Tune starts a trainable actor
per trial (recompiling numba each time unless actors are reused) and resumes experiments from
pickled state, which spikeflow never loads (files are JSON/HDF5 only); here resume needs nothing
but the trial files.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from spikeflow.scale.cluster import cluster_cpus, ray_session
from spikeflow.scale.config import SweepConfig, load_config
from spikeflow.scale.search import make_search
from spikeflow.scale.store import TrialStore, plot_pareto, write_table
from spikeflow.scale.worker import SimulationWorker, resolve_objective


def run_sweep(config: SweepConfig | str | Path, out: str | Path, *, address: str | None = None,
              objective: Callable | None = None, num_cpus: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a sweep and write its results.

    Args:
        config: a :class:`SweepConfig` or the path of a TOML file.
        out: the sweep folder (trial files, results.csv/json, pareto.png).
        address: a Ray cluster to use; None starts a local Ray (stopped again afterwards) unless
            this process is already connected.
        objective: a callable to use instead of ``config.objective`` (Python API; Ray pickles it).
        num_cpus: CPUs of a local Ray (default: the machine's).
        progress: show a tqdm bar.

    Returns:
        ``{"records", "paths", "lost", "workers"}``: every stored trial, the written files, how
        many trial runs were lost with their worker (and rerun), and the workers' warm-up info.
    """
    if not isinstance(config, SweepConfig):
        config = load_config(config)
    resolve_objective(objective if objective is not None else config.objective)  # fail here, not in a worker
    store = TrialStore(out, config.fingerprint())
    search = make_search(config)
    done = store.records()
    search.restore(done)
    with ray_session(address, num_cpus=num_cpus) as ray:
        count = config.workers or cluster_cpus(ray)
        actor_class = ray.remote(num_cpus=1, max_restarts=0)(SimulationWorker)
        workers = [actor_class.remote(config.backend) for _ in range(count)]
        info = ray.get([w.info.remote() for w in workers])
        lost = _drive(ray, actor_class, workers, config, search, store, objective, len(done), progress)
        for w in workers:  # the first actors and any replacements (killing a dead one is harmless)
            ray.kill(w)
    records = store.records()
    paths = write_table(records, out)
    paths["pareto"] = plot_pareto(records, config.objectives, Path(out) / "pareto.png")
    return {"records": records, "paths": paths, "lost": lost, "workers": info}


def _drive(ray, actor_class, workers, config, search, store, objective, already: int, progress: bool) -> int:
    """Keep every worker busy until the search is exhausted; return the number of lost runs.
    Replacement actors are appended to ``workers``."""
    from ray.exceptions import RayActorError, RayTaskError

    retry: deque[tuple[int, dict[str, Any], int]] = deque()  # (trial, params, attempts so far)
    idle, running, lost = list(workers), {}, 0
    target = objective if objective is not None else config.objective
    bar = tqdm(total=search.total, initial=already, desc="sweep", disable=not progress)

    def next_trial():
        if retry:
            return retry.popleft()
        proposal = search.propose()
        return None if proposal is None else (*proposal, 0)

    while True:
        while idle:
            item = next_trial()
            if item is None:
                break
            worker = idle.pop()
            trial, params, attempts = item
            ref = worker.run.remote(target, trial, params, config.options, config.seed)
            running[ref] = (worker, trial, params, attempts + 1, time.time())
        if not running:
            break
        (ref,), _ = ray.wait(list(running), num_returns=1)
        worker, trial, params, attempts, started = running.pop(ref)
        record = {"trial": trial, "params": params, "attempts": attempts, "started": started}
        try:
            result = ray.get(ref)
        except RayActorError:
            # the worker process died with this trial: replace it and run the trial again
            lost += 1
            workers.append(actor_class.remote(config.backend))
            idle.append(workers[-1])
            if attempts < config.max_attempts:
                retry.append((trial, params, attempts))
                continue
            record.update(status="lost", metrics=None, error=f"worker died {attempts} times")
        except RayTaskError as err:
            idle.append(worker)
            cause = err.cause if getattr(err, "cause", None) is not None else err
            record.update(status="error", metrics=None, error=f"{type(cause).__name__}: {cause}")
        else:
            idle.append(worker)
            missing = [m for m in config.objectives if m not in result["metrics"]]
            if missing:
                record.update(status="error", metrics=result["metrics"],
                              error=f"the objective returned no metric {missing[0]!r}")
            else:
                record.update(status="ok", **result)
        store.save(record)
        search.tell(trial, record["metrics"] if record["status"] == "ok" else None)
        bar.update(1)
    bar.close()
    return lost


def summary(result: dict[str, Any], objectives: dict[str, str]) -> str:
    """A short text table of the finished trials, best first by the first objective."""
    from spikeflow.scale.store import table_rows

    records = result["records"]
    first = next(iter(objectives))
    columns, rows = table_rows(records)
    sign = -1.0 if objectives[first] == "max" else 1.0
    rows.sort(key=lambda r: (r["status"] != "ok", sign * (r.get(first) or 0.0)))
    shown = [c for c in columns if c not in ("seconds",)]
    lines = ["  ".join(shown)]
    for r in rows:
        lines.append("  ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in shown))
    ok = sum(r["status"] == "ok" for r in records)
    lines.append(f"{ok}/{len(records)} trials ok, {result['lost']} runs lost with a worker and rerun")
    return "\n".join(lines)

