"""Train a spiking MLP on rate-coded handwritten digits, save it to HDF5 and NIR, reload and check,
then run it on the test set with numba-event next to torch.

:func:`spikeflow.workflows.train_digits` (what ``spikeflow train`` runs without ``--dataset``), then
:func:`spikeflow.workflows.reload_check` and :func:`spikeflow.workflows.compare_backends`. Run:

    python examples/train_digits_mlp.py [--out out/digits] [--epochs 15]
"""

import argparse
from pathlib import Path

from spikeflow.workflows import compare_backends, reload_check, summary, train_digits

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/digits", help="output folder")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs")
    args = parser.parse_args()
    result = train_digits(args.out, epochs=args.epochs)
    result["paths"]["nir"] = Path(args.out) / "digits_mlp.nir"
    result["reload"] = reload_check(result, result["paths"]["hdf5"], result["paths"]["nir"])
    result["simulate"] = compare_backends(result["graph"], result["x_test"], result["y_test"])
    print(summary(result))
