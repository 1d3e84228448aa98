"""Continual learning: one network trained on a sequence of tasks, and what it forgets.

HLOP (Hebbian subspace neurons and orthogonal projection) and its baselines (fine-tuning, EWC,
exact-SVD projection, multitask) share :class:`ContinualTrainer`, the accuracy matrix and its
metrics (ACC, BWT).
"""

from spikeflow.continual.hlop import HLOP, Subspace, principal_cosines, top_subspace
from spikeflow.continual.trainer import (
    EWC,
    STRATEGIES,
    ContinualResult,
    ContinualTrainer,
    ExactProjection,
    FineTuning,
    Multitask,
    Strategy,
    Task,
    average_accuracy,
    backward_transfer,
    permuted_digits,
    permuted_tasks,
    plot_accuracy_matrix,
    plot_task_curves,
)
from spikeflow.models.mlp import spiking_mlp

__all__ = [
    "ContinualResult", "ContinualTrainer", "EWC", "ExactProjection", "FineTuning", "HLOP", "Multitask",
    "STRATEGIES", "Strategy", "Subspace", "Task", "average_accuracy", "backward_transfer", "permuted_digits",
    "permuted_tasks", "plot_accuracy_matrix", "plot_task_curves", "principal_cosines", "spiking_mlp", "top_subspace",
]
