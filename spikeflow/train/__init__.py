"""Training spiking networks: the Trainer, losses on spikes and membranes, activity regularisers.

Continual learning (HLOP and its baselines) lives in :mod:`spikeflow.continual`."""

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
    "SEQUENCE_STRATEGIES", "StepResult", "train_step", "Plan", "parse_bytes", "plan",
]
