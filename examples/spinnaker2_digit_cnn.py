"""Train the DigitSaccades spiking CNN, export it to SpiNNaker 2, and compare accuracies.

float (torch) / post-training quantisation (the export's executor) / quantisation-aware fine-tuning
(the export's executor again). The executor is checked bit for bit against numba's fixed point on the
dequantised graph on the whole test set. Writes ``examples/out/spinnaker2/accuracy.json``.

    python examples/spinnaker2_digit_cnn.py [--epochs 8] [--qat-epochs 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import spikeflow as sf
from spikeflow import workflows
from spikeflow.train.qat import finetune
from spikeflow.train import RateUpperBound


def accuracy(output: np.ndarray, y: np.ndarray) -> float:
    """The decision: the class whose output is largest over time."""
    return float((output.max(axis=0).argmax(-1) == y).mean())


def executor_accuracy(graph, folder: Path, calib: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> tuple[float, bool, object]:
    report = sf.export(graph, target="spinnaker2", path=folder, samples=calib, silent="warn")
    prog = sf.load_export(folder)
    got = prog.run(x_test)
    want = sf.simulate(prog.graph, x_test, backend="numba-event", precision=prog.precision)
    return accuracy(got.output, y_test), bool(np.array_equal(got.output, want.output)), report


def main(epochs: int = 8, qat_epochs: int = 2, out: str = "examples/out/spinnaker2") -> dict:
    out_dir = Path(out)
    result = workflows.train_saccade_cnn(out_dir / "train", epochs=epochs, progress=False)
    cfg = result["config"]
    data = workflows.saccade_data(result["data_root"], cfg["bins"], cfg["subset"], cfg["val_fraction"], cfg["seed"], progress=False)
    x_test = np.ascontiguousarray(np.swapaxes(data["x_test"], 0, 1)).astype(np.float64)
    y_test = data["y_test"]
    calib = np.ascontiguousarray(np.swapaxes(data["x_train"][:64], 0, 1)).astype(np.float64)
    float_acc = accuracy(sf.simulate(result["graph"], x_test, backend="numba-event").output, y_test)
    ptq_acc, ptq_exact, ptq_report = executor_accuracy(result["graph"], out_dir / "ptq", calib, x_test, y_test)
    regularizers = [RateUpperBound(("lif1", "lif2"), cfg["max_rate"], cfg["rate_weight"])]
    qat_graph, _ = finetune(result["graph"], (data["x_train"], data["y_train"]), (data["x_val"], data["y_val"]), epochs=qat_epochs,
                            lr=cfg["lr"] / 3, batch_size=cfg["batch_size"], seed=cfg["seed"], progress=False, regularizers=regularizers)
    qat_acc, qat_exact, qat_report = executor_accuracy(qat_graph, out_dir / "qat", calib, x_test, y_test)
    numbers = {"test_samples": int(y_test.size), "float_torch": result["test_acc"], "float_numba_float64": float_acc,
               "post_training_executor": ptq_acc, "qat_executor": qat_acc, "executor_equals_numba_fixed": ptq_exact and qat_exact,
               "pes": ptq_report.pes, "epochs": epochs, "qat_epochs": qat_epochs,
               "ptq_activity": ptq_report.activity, "layers": ptq_report.layers}
    (out_dir / "accuracy.json").write_text(json.dumps(numbers, indent=1))
    print(ptq_report.text())
    print(json.dumps({k: v for k, v in numbers.items() if not isinstance(v, (dict, list))}, indent=1))
    return numbers


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--qat-epochs", type=int, default=2)
    args = parser.parse_args()
    main(args.epochs, args.qat_epochs)
