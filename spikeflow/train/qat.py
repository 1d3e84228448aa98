"""Quantisation-aware fine-tuning for a hardware target, with the target's own quantiser.

The straight-through fake quantisation lives with the target
(:func:`spikeflow.backends.spinnaker2.qat.fake_quantise`); this is the training loop around it.
"""

from __future__ import annotations

import torch
from torch.nn.utils import parametrize


def finetune(graph, train, val=None, *, chip=None, epochs: int = 2, lr: float = 1e-3, loss: str = "membrane_max_ce", **trainer_options):
    """Fine-tune ``graph`` on ``train`` (``(x [N, T, ...], y)``) with SpiNNaker 2-quantised weights in
    the forward pass; returns ``(graph with the quantised weights, trainer)``.

    ``chip``: the target's overrides (as for ``sf.export``); ``**trainer_options`` go to :class:`Trainer`.
    """
    from spikeflow.backends.spinnaker2.qat import fake_quantise
    from spikeflow.torch import to_graph, to_torch
    from spikeflow.train.trainer import Trainer

    net = to_torch(graph, dtype=torch.float32)
    names = fake_quantise(net, graph, chip)
    trainer = Trainer(net, loss=loss, lr=lr, epochs=epochs, **trainer_options)
    trainer.fit(train, val)
    for name in names:
        parametrize.remove_parametrizations(net.layers[name], "weight", leave_parametrized=True)
    return to_graph(net), trainer
