"""Continual learning: one network trained on a sequence of tasks, and what it forgets.

* :mod:`spikeflow.continual.hlop`: HLOP (Hebbian subspace neurons and orthogonal projection);
* :mod:`spikeflow.continual.strategies`: its baselines (fine-tuning, EWC, exact-SVD projection,
  multitask), all with the same hooks;
* :mod:`spikeflow.continual.trainer`: :class:`ContinualTrainer`, which runs a strategy over tasks;
* :mod:`spikeflow.continual.metrics`: the accuracy matrix, ACC, BWT and their pictures;
* :mod:`spikeflow.continual.tasks`: tasks and the permuted-digits benchmark.
"""

from spikeflow.continual.hlop import HLOP, Subspace, principal_cosines, top_subspace
from spikeflow.continual.metrics import ContinualResult, average_accuracy, backward_transfer, plot_accuracy_matrix, plot_task_curves
from spikeflow.continual.strategies import EWC, STRATEGIES, ExactProjection, FineTuning, Multitask, Strategy, get_strategy
from spikeflow.continual.tasks import Task, permuted_digits, permuted_tasks
from spikeflow.continual.trainer import ContinualTrainer
from spikeflow.models.mlp import spiking_mlp

__all__ = [
    "ContinualResult", "ContinualTrainer", "EWC", "ExactProjection", "FineTuning", "HLOP", "Multitask",
    "STRATEGIES", "Strategy", "Subspace", "Task", "average_accuracy", "backward_transfer", "get_strategy", "permuted_digits",
    "permuted_tasks", "plot_accuracy_matrix", "plot_task_curves", "principal_cosines", "spiking_mlp", "top_subspace",
]
