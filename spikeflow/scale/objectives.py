"""Objectives that ship with spikeflow: ``objective(params, context) -> {metric: value}``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from spikeflow.errors import DataError

DIGITS_PARAMS = {"hidden": 32, "tau": 10e-3, "threshold": 1.0, "lr": 2e-3, "steps": 10, "epochs": 2, "batch_size": 32}


def digits_snn(params: dict[str, Any], context) -> dict[str, float]:
    """Train the demo's spiking MLP on rate-coded digits with these hyper-parameters (torch), then
    run the test set on the worker's compiled simulator.

    Parameters (each from ``params`` or the sweep's ``[options]``, else :data:`DIGITS_PARAMS`):
    ``hidden``, ``tau`` (s), ``threshold``, ``lr``, ``steps``, ``epochs``, ``batch_size``.

    Returns:
        ``accuracy`` (test set, simulated on ``context.backend``), ``synaptic_events`` and
        ``spikes`` per test sample, and ``train_accuracy`` (torch, last epoch).
    """
    import torch

    import spikeflow as sf
    from spikeflow.workflows import digits_split
    from spikeflow.models import digits_mlp
    from spikeflow.train import RateEncoder, Trainer

    cfg = {**DIGITS_PARAMS, **{k: v for k, v in context.options.items() if k in DIGITS_PARAMS}, **params}
    unknown = sorted(set(params) - set(DIGITS_PARAMS))
    if unknown:
        raise DataError(f"digits_snn: unknown parameter {unknown[0]!r}; known: {sorted(DIGITS_PARAMS)}")
    hidden, steps = int(cfg["hidden"]), int(cfg["steps"])
    graph = digits_mlp(hidden, float(cfg["tau"]), seed=context.seed)
    lif = graph.nodes["lif2"]
    graph.nodes["lif2"] = replace(lif, v_threshold=np.full(hidden, float(cfg["threshold"])))
    torch.manual_seed(context.seed)
    net = sf.to_torch(graph, dtype=torch.float32)
    data = digits_split(0)
    trainer = Trainer(net, loss="membrane_max_ce", lr=float(cfg["lr"]), epochs=int(cfg["epochs"]),
                      batch_size=int(cfg["batch_size"]), seed=context.seed, encoder=RateEncoder(steps), progress=False)
    history = trainer.fit((data["x_train"], data["y_train"]))
    x_test = RateEncoder(steps)(torch.as_tensor(data["x_test"]), torch.Generator().manual_seed(context.seed + 1))
    res = context.simulate(sf.to_graph(net), x_test.numpy().astype(np.float64), record=["lif2"])
    pred = np.asarray(res.output).max(axis=0).argmax(-1)
    n = len(data["y_test"])
    return {
        "accuracy": float((pred == data["y_test"]).mean()),
        "synaptic_events": res.stats["synaptic_events"] / n,
        "spikes": float(np.asarray(res.spikes["lif2"]).sum()) / n,
        "train_accuracy": history["train_acc"][-1],
    }
