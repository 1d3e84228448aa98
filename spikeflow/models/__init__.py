"""The model zoo: networks as IR graphs, shared by the demo, the examples, the CLI and the tests.

Each builder returns a fresh, untrained :class:`spikeflow.Graph` from its hyper-parameters and a
seed. ``MODELS`` names them for the command line (``spikeflow train --model NAME``).

Example:
    >>> import spikeflow as sf
    >>> g = sf.models.build("digits-mlp", hidden=16)
    >>> g.nodes["lif2"].tau.shape
    (16,)
"""

from spikeflow.errors import GraphError
from spikeflow.models.cnn import saccade_cnn
from spikeflow.models.mlp import digits_mlp, spiking_mlp

# name -> builder(**options) -> Graph
MODELS = {
    "digits-mlp": digits_mlp,
    "saccade-cnn": saccade_cnn,
    "mlp": spiking_mlp,
}


def build(name: str, **options):
    """A fresh network from the zoo by name (see ``MODELS``), built with ``options``."""
    if name not in MODELS:
        raise GraphError(f"unknown model {name!r}; the zoo has {sorted(MODELS)}")
    return MODELS[name](**options)


__all__ = ["MODELS", "build", "digits_mlp", "saccade_cnn", "spiking_mlp"]
