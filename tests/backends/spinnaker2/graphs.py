"""Small graphs of every shape the SpiNNaker 2 target takes (seeded)."""

import numpy as np

import spikeflow as sf
from spikeflow.ir import nodes as n


def mlp(rng, n_in=12, hidden=20, out=5, reset="subtract"):
    return sf.Graph.sequential(
        n.Input(shape=(n_in,)),
        n.Affine(weight=rng.normal(0, 0.6, (hidden, n_in)), bias=rng.normal(0, 0.05, hidden)),
        n.LIF(tau=rng.uniform(5e-3, 30e-3, hidden), v_threshold=np.full(hidden, 1.0), r=np.full(hidden, 8.0), v_leak=rng.normal(0, 0.1, hidden),
              v_reset=np.zeros(hidden), reset=reset),
        n.Affine(weight=rng.normal(0, 0.5, (out, hidden)), bias=np.zeros(out)),
        n.LI(tau=np.full(out, 0.02), r=np.full(out, 20.0)),
        dt=1e-3,
    )


def recurrent_cuba(rng, n_in=10, hidden=16, out=4):
    nodes = {
        "input": n.Input(shape=(n_in,)),
        "fc_in": n.Linear(weight=rng.normal(0, 0.8, (hidden, n_in))),
        "cuba": n.CubaLIF(tau_syn=np.full(hidden, 5e-3), tau_mem=rng.uniform(1e-2, 3e-2, hidden), v_threshold=np.full(hidden, 0.5),
                          r=np.full(hidden, 6.0), w_in=np.full(hidden, 3.0), reset="subtract"),
        "rec": n.Affine(weight=rng.normal(0, 0.4, (hidden, hidden)), bias=rng.normal(0, 0.02, hidden)),
        "fc_out": n.Linear(weight=rng.normal(0, 0.5, (out, hidden))),
        "readout": n.LI(tau=np.full(out, 0.02), r=np.full(out, 20.0)),
        "output": n.Output(shape=(out,)),
    }
    edges = [("input", "fc_in"), ("fc_in", "cuba"), ("cuba", "rec"), ("rec", "cuba"), ("cuba", "fc_out"), ("fc_out", "readout"),
             ("readout", "output")]
    return sf.Graph(nodes, edges, dt=1e-3).validate()


def delayed_if(rng, n_in=8, hidden=14, out=6):
    nodes = {
        "input": n.Input(shape=(n_in,)),
        "fc1": n.Affine(weight=rng.normal(0, 0.7, (hidden, n_in)), bias=np.zeros(hidden)),
        "lif": n.LIF(tau=np.full(hidden, 0.01), v_threshold=np.full(hidden, 0.8), r=np.full(hidden, 10.0), v_reset=np.full(hidden, -0.1)),
        "delay": n.Delay(delay=rng.integers(0, 5, hidden) * 1e-3),
        "fc2": n.Affine(weight=rng.normal(0, 0.6, (out, hidden)), bias=rng.normal(0, 0.01, out)),
        "iaf": n.IF(v_threshold=np.full(out, 0.5), r=np.full(out, 400.0)),
        "output": n.Output(shape=(out,)),
    }
    names = list(nodes)
    return sf.Graph(nodes, list(zip(names, names[1:])), dt=1e-3).validate()


def small_cnn(rng, c1=3, c2=4):
    nodes = {
        "input": n.Input(shape=(2, 12, 12)), "pool0": n.SumPool2d(kernel_size=(2, 2), stride=(2, 2)),
        "conv1": n.Conv2d(weight=rng.normal(0, 0.5, (c1, 2, 3, 3)), bias=rng.normal(0, 0.02, c1), padding=(1, 1)),
        "lif1": n.LIF(tau=np.full((c1, 6, 6), 5e-3), v_threshold=np.ones((c1, 6, 6)), r=np.full((c1, 6, 6), 5.0)),
        "pool1": n.SumPool2d(kernel_size=(2, 2), stride=(2, 2)),
        "conv2": n.Conv2d(weight=rng.normal(0, 0.5, (c2, c1, 3, 3)), bias=np.zeros(c2), padding=(1, 1)),
        "lif2": n.LIF(tau=np.full((c2, 3, 3), 5e-3), v_threshold=np.ones((c2, 3, 3)), r=np.full((c2, 3, 3), 5.0)),
        "pool2": n.SumPool2d(kernel_size=(2, 2), stride=(2, 2)), "flatten": n.Flatten(),
        "fc": n.Affine(weight=rng.normal(0, 0.5, (5, c2)), bias=np.zeros(5)),
        "readout": n.LI(tau=np.full(5, 0.02), r=np.full(5, 20.0)), "output": n.Output(shape=(5,)),
    }
    names = list(nodes)
    return sf.Graph(nodes, list(zip(names, names[1:])), dt=1e-3).validate()


def spikes(rng, steps, batch, shape, p=0.3):
    return (rng.random((steps, batch, *shape)) < p).astype(np.float64)
