"""Spiking multilayer perceptrons: inputs -> LIF hidden layer -> leaky-integrator readout."""

from __future__ import annotations

import math

import numpy as np

from spikeflow.ir import nodes
from spikeflow.ir.graph import Graph


def uniform_init(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    """torch.nn.Linear / Conv2d's default: kaiming-uniform with a=sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape)


def spiking_mlp(n_in: int, hidden: int, n_out: int = 10, seed: int = 0, *, tau: float = 10e-3, tau_out: float = 20e-3,
                dt: float = 1e-3, metadata: dict | None = None) -> Graph:
    """``n_in`` inputs -> ``hidden`` LIF -> ``n_out`` leaky integrators, torch's default init.

    ``r = tau / dt`` makes each input add its full weight to the membrane in one Euler step
    (``v <- (1 - dt/tau) v + W x``), the convention of snnTorch's ``Leaky``.

    Example:
        >>> g = spiking_mlp(4, 8, 3)
        >>> [type(node).__name__ for node in g.nodes.values()]
        ['Input', 'Affine', 'LIF', 'Affine', 'LI', 'Output']
    """
    rng = np.random.default_rng(seed)
    w1, b1 = uniform_init(rng, (hidden, n_in), n_in), uniform_init(rng, (hidden,), n_in)
    w2, b2 = uniform_init(rng, (n_out, hidden), hidden), uniform_init(rng, (n_out,), hidden)
    return Graph.sequential(
        nodes.Input(shape=(n_in,)),
        nodes.Affine(weight=w1, bias=b1),
        nodes.LIF(tau=np.full(hidden, tau), v_threshold=np.ones(hidden), r=np.full(hidden, tau / dt)),
        nodes.Affine(weight=w2, bias=b2),
        nodes.LI(tau=np.full(n_out, tau_out), r=np.full(n_out, tau_out / dt)),
        dt=dt,
        metadata=metadata,
    )


def digits_mlp(hidden: int = 128, tau: float = 10e-3, tau_out: float = 20e-3, dt: float = 1e-3, seed: int = 0) -> Graph:
    """The demo network: 64 inputs (8x8 scikit-learn digits) -> ``hidden`` LIF -> 10 leaky integrators."""
    return spiking_mlp(64, hidden, 10, seed, tau=tau, tau_out=tau_out, dt=dt,
                       metadata={"model": "digits-mlp", "input": "rate-coded sklearn digits, 8x8 scaled to [0, 1]"})
