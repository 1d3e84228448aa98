"""A realistic run dict, built once from real objects: DigitSaccades events, a small zoo CNN trained
for two epochs, a real ``sf.simulate`` recording, early-exit calibration on real outputs, and real
export folders of both hardware targets."""

from pathlib import Path

import numpy as np
import pytest

PIPELINE_TEXT = """[run]
name = "report-test"   # <not a tag> & "quoted"
[data]
dataset = "digit-saccades"
bins = 8
[model]
zoo = "saccade-cnn"
"""


def build_run(folder: Path) -> dict:
    import spikeflow as sf
    from spikeflow.datasets import DigitSaccades

    bins = 8
    train_set = DigitSaccades(folder / "data", subset=24, progress=False)
    test_set = DigitSaccades(folder / "data", train=False, subset=16, progress=False)
    x_train, y_train = train_set.frames(n_bins=bins)
    x_test, y_test = test_set.frames(n_bins=bins)
    graph = sf.models.build("saccade-cnn", bins=bins, channels=(2, 4))
    trainer = sf.Trainer(graph, loss="membrane_max_ce", lr=3e-3, epochs=2, batch_size=8, progress=False)
    history = trainer.fit((x_train, y_train), (x_test[:8], y_test[:8]))
    graph = sf.to_graph(trainer.model)

    x = np.swapaxes(x_test, 0, 1).astype(np.float64)  # [T, N, ...]
    spiking = [k for k, v in graph.nodes.items() if v.spiking]
    res = sf.simulate(graph, x, backend="numba-event", record=spiking)
    acc = float((res.output.sum(axis=0).argmax(axis=1) == y_test).mean())
    one = {k: res.spikes[k][:, 0].reshape(bins, -1) for k in spiking}
    calib = sf.exit.calibrate_outputs(res.output, y_test, max_accuracy_drop=0.05)

    s2 = sf.export(graph, target="spinnaker2", path=folder / "s2", samples=x[:, :4])
    mlp = sf.models.build("digits-mlp", hidden=24)
    rram_report = sf.export(mlp, target="rram-lsm", path=folder / "rram")
    robustness = {"rows": [{"case": "ideal device", "accuracy": 0.91}, {"case": "drift 1 day <b>", "accuracy": 0.87}]}
    exits = sf.exit.simulate(graph, x, backend="numba-event", policy=calib.policy)

    n_neurons = {k: one[k].shape[1] for k in spiking}
    return {
        "name": "report-test <run> & co",
        "pipeline": PIPELINE_TEXT,
        "seconds": {"data": 2.5, "model": 0.1, "train": 12.0, "evaluate": 3.0, "early_exit": 0.0, "export": 7.0},
        "cached": ["early_exit"],
        "data": {"dataset": "digit-saccades", "sensor_size": (34, 34, 2), "bins": bins, "n_train": len(train_set),
                 "n_test": len(test_set), "classes": [str(c) for c in range(10)],
                 "examples": [test_set[i] for i in range(3)]},
        "model": {"graph": graph, "source": "zoo:saccade-cnn"},
        "train": {"history": history, "strategy": "bptt"},
        "evaluate": {
            "backends": {"numba-event": {"accuracy": acc, "synaptic_events": res.stats["synaptic_events"] / x.shape[1],
                                         "seconds_per_sample": res.stats["wall_time"] / x.shape[1]},
                         "torch": {"accuracy": acc, "synaptic_events": None, "seconds_per_sample": 0.004}},
            "record": {"dt": graph.dt, "spikes": one, "v": {k: res.traces[k][:, 0].reshape(bins, -1) for k in spiking},
                       "threshold": {k: float(np.mean(graph.nodes[k].v_threshold)) for k in spiking}, "label": int(y_test[0])},
            "layers": {k: {"rate": float(res.spikes[k].mean()), "synaptic_events": float(res.spikes[k].sum() / x.shape[1]) * 9}
                       for k in spiking},
        },
        "early_exit": {"curve": {"threshold": calib.pareto["threshold"].tolist(), "accuracy": calib.pareto["accuracy"].tolist(),
                                 "mean_steps": calib.pareto["mean_steps"].tolist()},
                       "chosen": {"threshold": calib.threshold, "accuracy": calib.accuracy, "mean_steps": calib.mean_steps},
                       "test": {"accuracy": exits.accuracy(y_test), "mean_steps": float(exits.exit_steps.mean()), "samples": len(y_test)},
                       "full": {"accuracy": acc, "synaptic_events": res.stats["synaptic_events"] / x.shape[1]},
                       "synaptic_events": exits.stats["synaptic_events"] / x.shape[1],
                       "full_steps": calib.t_max, "backend": "numba-event"},
        "exports": {"spinnaker2": {"path": str(folder / "s2"), "report": s2.to_dict()},
                    "rram-lsm": {"path": str(folder / "rram"), "report": rram_report, "robustness": robustness}},
    }


@pytest.fixture(scope="session")
def real_run(tmp_path_factory) -> dict:
    return build_run(tmp_path_factory.mktemp("real_run"))
