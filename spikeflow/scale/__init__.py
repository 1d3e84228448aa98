"""Many independent networks on Ray: sweeps (grid or Optuna) and region ensembles.

One network trained on several workers is :mod:`spikeflow.train.distributed` (torch.distributed);
this package is for work that splits into independent pieces, each run by a Ray actor that keeps
its compiled simulator. Ray and Optuna are the optional extra ``spikeflow[ray]``; nothing here
imports them until it is used.
"""

from spikeflow.scale.cluster import ray_session, require_ray
from spikeflow.scale.config import Param, SweepConfig, load_config, parse_config
from spikeflow.scale.store import TrialStore, pareto_mask, plot_pareto, write_table
from spikeflow.scale.sweep import run_sweep
from spikeflow.scale.worker import OBJECTIVES, SimulationWorker, WorkerContext

__all__ = [
    "OBJECTIVES", "Param", "SimulationWorker", "SweepConfig", "TrialStore", "WorkerContext", "load_config",
    "pareto_mask", "parse_config", "plot_pareto", "ray_session", "require_ray", "run_sweep", "write_table",
]
