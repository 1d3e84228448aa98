"""The model zoo: networks as IR graphs, shared by the demo, the examples, the CLI and the tests.

Each builder returns a fresh, untrained :class:`spikeflow.Graph` from its hyper-parameters and a
seed. ``MODELS`` names them for the command line (``spikeflow train --model NAME``).
``pretrained(name)`` returns a *trained* graph shipped with spikeflow (``PRETRAINED``, docs/models.md).

Example:
    >>> import spikeflow as sf
    >>> g = sf.models.build("digits-mlp", hidden=16)
    >>> g.nodes["lif2"].tau.shape
    (16,)
"""

from spikeflow.errors import GraphError
from spikeflow.models.charlm import egru_char_lm
from spikeflow.models.cnn import saccade_cnn
from spikeflow.models.lsm import reservoir
from spikeflow.models.mlp import digits_mlp, spiking_mlp
from spikeflow.models.pretrained import PRETRAINED, pretrained, pretrained_info, pretrained_names

# name -> builder(**options) -> Graph
MODELS = {
    "digits-mlp": digits_mlp,
    "saccade-cnn": saccade_cnn,
    "mlp": spiking_mlp,
    "lsm-reservoir": reservoir,
    "egru-char-lm": egru_char_lm,
}


def build(name: str, **options):
    """A fresh network from the zoo by name (see ``MODELS``), built with ``options``."""
    if name not in MODELS:
        raise GraphError(f"unknown model {name!r}; the zoo has {sorted(MODELS)}")
    return MODELS[name](**options)


__all__ = [
    "MODELS", "PRETRAINED", "build", "digits_mlp", "egru_char_lm", "pretrained", "pretrained_info", "pretrained_names",
    "reservoir", "saccade_cnn", "spiking_mlp",
]
