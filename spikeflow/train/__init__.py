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
from spikeflow.train.trainer import RateEncoder, Trainer

__all__ = [
    "LOSSES", "MembraneCrossEntropy", "RateEncoder", "RateLowerBound", "RateUpperBound",
    "SpikeCountCrossEntropy", "SpikeCountL1", "SpikeCountL2", "SpikeCountMSE", "Trainer",
]
