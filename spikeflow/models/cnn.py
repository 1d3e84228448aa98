"""Spiking convolutional networks for event-camera frames."""

from __future__ import annotations

import numpy as np

from spikeflow.errors import DataError
from spikeflow.ir import nodes
from spikeflow.ir.graph import Graph
from spikeflow.models.mlp import uniform_init


def saccade_cnn(bins: int = 8, channels: tuple[int, int] = (8, 16), tau_steps: float = 5.0, tau_out_steps: float = 20.0,
                seed: int = 0, duration_us: float | None = None) -> Graph:
    """The demo's spiking CNN as an IR graph, for ``[T, B, 2, 34, 34]`` event-count frames.

    2x2 sum pooling (34 -> 17) -> 3x3 conv -> LIF -> 2x2 sum pool (-> 8) -> 3x3 conv -> LIF ->
    2x2 sum pool (-> 4) -> flatten -> affine -> 10 leaky integrators. One time step is one bin
    of the recording (``dt = duration / bins``; default duration: a DigitSaccades recording), so
    the graph also runs on raw events binned at ``dt``; time constants are given in steps. The
    first pooling makes the input 4x smaller before any synapse, which keeps training and
    simulation cheap.
    """
    if bins < 1 or len(channels) != 2 or min(channels) < 1:
        raise DataError(f"saccade_cnn: need bins >= 1 and two positive channel counts, got bins={bins}, channels={channels}")
    rng = np.random.default_rng(seed)
    duration_us = saccade_duration_us() if duration_us is None else float(duration_us)
    dt = duration_us * 1e-6 / bins
    c1, c2 = (int(c) for c in channels)

    def conv(c_in, c_out):
        return nodes.Conv2d(weight=uniform_init(rng, (c_out, c_in, 3, 3), 9 * c_in), bias=np.zeros(c_out), padding=(1, 1))

    def lif(shape, tau):  # r = tau/dt: one step adds the whole input (see spiking_mlp)
        return nodes.LIF(tau=np.full(shape, tau), v_threshold=np.ones(shape), r=np.full(shape, tau / dt))

    def pool():
        return nodes.SumPool2d(kernel_size=(2, 2), stride=(2, 2))

    tau, tau_out, n_flat = tau_steps * dt, tau_out_steps * dt, c2 * 4 * 4
    layers = {
        "input": nodes.Input(shape=(2, 34, 34)), "pool0": pool(),
        "conv1": conv(2, c1), "lif1": lif((c1, 17, 17), tau), "pool1": pool(),
        "conv2": conv(c1, c2), "lif2": lif((c2, 8, 8), tau), "pool2": pool(), "flatten": nodes.Flatten(),
        "fc": nodes.Affine(weight=uniform_init(rng, (10, n_flat), n_flat), bias=np.zeros(10)),
        "readout": nodes.LI(tau=np.full(10, tau_out), r=np.full(10, tau_out / dt)),
        "output": nodes.Output(shape=(10,)),
    }
    names = list(layers)
    meta = {"model": "digit-saccades-cnn", "input": f"DigitSaccades event counts in {bins} bins of {duration_us / bins:g} us, [2, 34, 34]"}
    return Graph(layers, list(zip(names, names[1:])), dt=dt, metadata=meta).validate()


def saccade_duration_us() -> float:
    """Length of every DigitSaccades recording (three saccades) in µs."""
    from spikeflow.datasets.digits import DigitSaccades

    return float(DigitSaccades.duration_us)
