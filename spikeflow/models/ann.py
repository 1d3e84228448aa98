"""ANNs trained for conversion to spiking networks (:func:`spikeflow.convert.ann_to_snn`).

``ANNS`` names them for pipeline files (``[model] convert = "qcfs-mlp"``); each builder returns a
fresh, seeded ``torch.nn.Sequential`` of layers the conversion supports.
"""

from __future__ import annotations

import math

from spikeflow.errors import GraphError


def qcfs_mlp(input_shape: tuple[int, ...] = (2, 34, 34), hidden: int = 64, classes: int = 10, levels: int = 16,
             threshold: float = 2.0, pool: int = 2, seed: int = 0):
    """``AvgPool2d(pool)`` (frames only) -> Flatten -> Linear -> BatchNorm1d -> QCFS -> Linear.

    The pooling shrinks the first weight matrix ``pool**2`` times (a small shipped file) and is
    exact under conversion (an average is linear).

    Example:
        >>> net = qcfs_mlp((2, 8, 8), hidden=4)
        >>> [type(m).__name__ for m in net]
        ['AvgPool2d', 'Flatten', 'Linear', 'BatchNorm1d', 'QCFS', 'Linear']
    """
    import torch
    from torch import nn

    from spikeflow.convert import QCFS

    shape = tuple(int(s) for s in input_shape)
    if min(hidden, classes, levels, pool) < 1 or not shape or min(shape) < 1:
        raise GraphError(f"qcfs_mlp: sizes must be >= 1, got input_shape={shape}, hidden={hidden}, classes={classes}, "
                         f"levels={levels}, pool={pool}")
    layers: list[nn.Module] = []
    if len(shape) == 3 and pool > 1:
        layers.append(nn.AvgPool2d(pool))
        shape = (shape[0], shape[1] // pool, shape[2] // pool)
    n_in = math.prod(shape)
    with torch.random.fork_rng():  # the caller's global torch RNG is left alone
        torch.manual_seed(seed)
        layers += [nn.Flatten(), nn.Linear(n_in, hidden), nn.BatchNorm1d(hidden), QCFS(levels, threshold), nn.Linear(hidden, classes)]
    return nn.Sequential(*layers)


# name -> builder(**options) -> torch.nn.Sequential
ANNS = {"qcfs-mlp": qcfs_mlp}
