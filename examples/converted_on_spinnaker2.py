"""The shipped converted network (``sf.models.pretrained("converted-exit")``: a QCFS MLP converted to
IF neurons) exported to SpiNNaker 2, its half-threshold pulse as initial membranes.

Test accuracy over the full 16 steps (rate code: the class with the largest output sum) of the float
graph and of the export's executor, which is checked bit for bit against numba's fixed point on
``prog.graph`` on the whole test split. Writes ``examples/out/converted_on_spinnaker2.json``.

    python examples/converted_on_spinnaker2.py [--root data]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import spikeflow as sf
from spikeflow.models.retrain import read_recipe, saccade_split
from spikeflow.pipeline.stages import direct_encoding, predict


def main(root: str = "data", out: str = "examples/out") -> dict:
    graph = sf.models.pretrained("converted-exit")
    data = saccade_split(read_recipe("converted-exit"), root)
    x = np.moveaxis(direct_encoding(data["x_test"]), 0, 1)  # [T, N, ...]: the time-averaged frame every step
    calib = np.moveaxis(direct_encoding(data["x_train"][:64]), 0, 1)
    y = data["y_test"]

    def accuracy(output: np.ndarray) -> float:
        return float((predict(output, "sum") == y).mean())

    folder = Path(out) / "converted_on_spinnaker2"
    report = sf.export(graph, target="spinnaker2", path=folder, samples=calib, silent="warn")
    prog = sf.load_export(folder)
    got = prog.run(x)
    want = sf.simulate(prog.graph, x, backend="numba-event", precision=prog.precision)
    network = json.loads((folder / "network.json").read_text())
    result = {
        "test_samples": int(len(y)), "steps": int(x.shape[0]),
        "float64_accuracy": accuracy(sf.simulate(graph, x, backend="numba-event").output),
        "executor_accuracy": accuracy(got.output),
        "executor_equals_numba_fixed_point": bool(np.array_equal(got.output, want.output)),
        "pes": report.pes, "chips": report.chips,
        "populations": {p["name"]: p.get("params", {}).get("v_init") for p in network["populations"]},
    }
    (Path(out) / "converted_on_spinnaker2.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data", help="DigitSaccades cache folder (built on first use)")
    parser.add_argument("--out", default="examples/out")
    args = parser.parse_args()
    print(json.dumps(main(args.root, args.out), indent=1))
