"""Train a spiking MLP on rate-coded handwritten digits, save it to HDF5 and NIR, reload and check,
then run it on the test set with numba-event next to torch.

The first stage of ``spikeflow demo`` (:func:`spikeflow.demo.run_demo` without the CNN). Run:

    python examples/train_digits_mlp.py [--out out/demo] [--epochs 15]
"""

import argparse

from spikeflow.demo import run_demo, summary

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/demo", help="output folder")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs")
    args = parser.parse_args()
    result = run_demo(args.out, epochs=args.epochs, cnn=False)
    print(summary(result))
    print(f"\ntest accuracy {result['test_acc']:.2%}; pictures in {args.out}/")
