"""The shipped converted network (``sf.models.pretrained("converted-exit")``: 2x2 average pooling,
then a QCFS MLP converted to IF neurons) and the shipped spiking CNN (``"saccade-cnn"``: sum pooling
and two 3x3 convolutions) exported to the RRAM crossbar target.

Pooling runs in the digital periphery, each convolution is its im2col kernel matrix programmed once
and read at every output position. For each model: test accuracy (first ``--samples`` test digits)
of the float graph, of the crossbar on an ideal device (checked bit for bit against numba's fixed
point on ``prog.graph``) and on a sampled default device (programming noise, stuck cells, drift
after one day), with the report's tiles, cells, conversions per step and the energy per inference.
Writes ``examples/out/converted_on_rram.json``.

    python examples/converted_on_rram.py [--root data] [--samples 100]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import spikeflow as sf
from spikeflow.models.retrain import read_recipe, saccade_split
from spikeflow.pipeline.stages import direct_encoding, predict


#: Crossbar options per model. The CNN sums 2x2 windows of event counts before its first kernel: with
#: the default state format (10 bits, fractional bits so that twice the threshold fits: range +-4) those
#: sums saturate and accuracy drops (0.83 on an ideal device); 12 bits with 7 fractional (+-16) fit them.
OPTIONS = {"converted-exit": {}, "saccade-cnn": {"adc_bits": 12, "dac_bits": 12, "state_frac": 7}}


def _inputs(name: str, root: str, samples: int):
    """``(x [T, N, ...], labels, readout)`` of a pretrained model's test split, as its recipe feeds it."""
    data = saccade_split(read_recipe(name), root)
    x, y = data["x_test"][:samples], data["y_test"][:samples]
    if name == "converted-exit":  # direct encoding: the time-averaged frame at every step, rate-coded output
        return np.moveaxis(direct_encoding(x), 0, 1), y, "sum"
    return np.moveaxis(x, 0, 1).astype(np.float64), y, "max"


def _study(name: str, root: str, samples: int, out: Path) -> dict:
    graph = sf.models.pretrained(name)
    x, y, readout = _inputs(name, root, samples)

    def accuracy(output: np.ndarray) -> float:
        return float((predict(output, readout) == y).mean())

    result = {"test_samples": int(len(y)), "steps": int(x.shape[0]), "options": OPTIONS[name],
              "float64_accuracy": accuracy(sf.simulate(graph, x, backend="numba-event").output)}
    for device in ("ideal", "default"):
        report = sf.export(graph, target="rram-lsm", path=out / f"{name}-{device}", device=device, seed=0, **OPTIONS[name])
        prog = sf.load_export(out / f"{name}-{device}")
        got = prog.run(x, age_s=86400.0)
        result[f"{device}_accuracy"] = accuracy(got.output)
        if device == "ideal":
            want = sf.simulate(prog.graph, x, backend="numba-event", precision=prog.precision)
            result["ideal_equals_numba_fixed_point"] = bool(np.array_equal(got.output, want.output))
            result.update({k: report[k] for k in ("tiles", "cells", "tile_reads_per_step", "adc_conversions_per_step", "neurons")})
            result["energy_per_step_pj_max"] = round(report["energy_per_step_pj_max"], 1)
            result["adc_conversions_per_inference"] = got.stats["adc_conversions"] / len(y)
            result["rows_driven_per_inference"] = got.stats["rows_driven"] / len(y)
            result["energy_nj_per_inference"] = round(got.stats["energy_pj_per_sample"] / 1e3, 2)
    return result


def main(root: str = "data", out: str = "examples/out", samples: int = 100) -> dict:
    folder = Path(out) / "converted_on_rram"
    result = {name: _study(name, root, samples, folder) for name in ("converted-exit", "saccade-cnn")}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "converted_on_rram.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data", help="DigitSaccades cache folder (built on first use)")
    parser.add_argument("--out", default="examples/out")
    parser.add_argument("--samples", type=int, default=100, help="test digits")
    args = parser.parse_args()
    print(json.dumps(main(args.root, args.out, args.samples), indent=1))
