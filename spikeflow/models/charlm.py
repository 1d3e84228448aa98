"""A character-level language model as an IR graph: one-hot characters -> embedding -> EGRU -> logits."""

from __future__ import annotations

import numpy as np

from spikeflow.errors import GraphError
from spikeflow.ir import nodes
from spikeflow.ir.graph import Graph
from spikeflow.models.mlp import uniform_init


def egru_char_lm(vocab: int = 103, embed: int = 16, hidden: int = 96, threshold_mean: float = 0.3,
                 pseudo_derivative_dampening: float = 0.7, seed: int = 0) -> Graph:
    """``input`` (one-hot characters, ``[vocab]``) -> ``embed`` (Linear: the embedding table as a
    ``[embed, vocab]`` matrix, so a one-hot step picks one column) -> ``egru`` -> ``readout``
    (Affine, next-character logits) -> ``output``.

    The EGRU starts as :class:`spikeflow.torch.egru.EGRU` does (uniform weights, Beta-distributed
    thresholds around ``threshold_mean``), seeded by ``seed``.

    Example:
        >>> g = egru_char_lm(vocab=5, embed=3, hidden=4)
        >>> list(g.nodes), g.nodes["egru"].hidden_size
        (['input', 'embed', 'egru', 'readout', 'output'], 4)
    """
    import torch

    from spikeflow.torch.egru import EGRU

    if min(vocab, embed, hidden) < 1:
        raise GraphError(f"egru_char_lm: vocab, embed and hidden must be >= 1, got {vocab}, {embed}, {hidden}")
    rng = np.random.default_rng(seed)
    fork = torch.random.fork_rng()  # the caller's global torch RNG is left alone
    with fork:
        torch.manual_seed(seed)
        (egru,) = EGRU(embed, hidden, threshold_mean=threshold_mean, pseudo_derivative_dampening=pseudo_derivative_dampening,
                       dtype=torch.float64).to_nodes()
    layers = {
        "input": nodes.Input(shape=(vocab,)),
        "embed": nodes.Linear(weight=rng.normal(0.0, 1.0, (embed, vocab))),  # nn.Embedding's N(0, 1) init
        "egru": egru,
        "readout": nodes.Affine(weight=uniform_init(rng, (vocab, hidden), hidden), bias=uniform_init(rng, (vocab,), hidden)),
        "output": nodes.Output(shape=(vocab,)),
    }
    names = list(layers)
    meta = {"model": "egru-char-lm", "input": f"one-hot characters of a {vocab}-character vocabulary"}
    return Graph(layers, list(zip(names, names[1:])), dt=1e-3, metadata=meta).validate()
