"""Training spiking networks: the Trainer, losses on spikes and membranes, activity regularisers,
and continual learning (HLOP and its baselines)."""

from spikeflow.train.continual import (
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
    spiking_mlp,
)
from spikeflow.train.hlop import HLOP, Subspace, principal_cosines, top_subspace
from spikeflow.train.losses import (
    LOSSES,
    MembraneCrossEntropy,
    RateLowerBound,
    RateUpperBound,
    SpikeCountCrossEntropy,
    SpikeCountL1,
    SpikeCountL2,
    SpikeCountMSE,
)
from spikeflow.train.long_sequences import STRATEGIES as SEQUENCE_STRATEGIES
from spikeflow.train.long_sequences import StepResult, train_step
from spikeflow.train.planner import Plan, parse_bytes, plan
from spikeflow.train.trainer import RateEncoder, Trainer

__all__ = [
    "LOSSES", "MembraneCrossEntropy", "RateEncoder", "RateLowerBound", "RateUpperBound",
    "SpikeCountCrossEntropy", "SpikeCountL1", "SpikeCountL2", "SpikeCountMSE", "Trainer",
    "ContinualResult", "ContinualTrainer", "EWC", "ExactProjection", "FineTuning", "Multitask",
    "STRATEGIES", "Strategy", "Task", "average_accuracy", "backward_transfer", "permuted_digits",
    "permuted_tasks", "plot_accuracy_matrix", "plot_task_curves", "spiking_mlp",
    "HLOP", "Subspace", "principal_cosines", "top_subspace",
    "SEQUENCE_STRATEGIES", "StepResult", "train_step", "Plan", "parse_bytes", "plan",
]
