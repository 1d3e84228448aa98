"""Train a spiking CNN on DigitSaccades events, save and reload it, and run it with numba-event.

The DigitSaccades spiking CNN on its own (:func:`spikeflow.workflows.train_saccade_cnn` and
:func:`spikeflow.workflows.compare_backends`): the built-in event set (real handwritten digits moved
along N-MNIST's saccades in front of the DVS emulator) is generated once and cached, binned into
``--bins`` frames, and learned by a graph Conv2d -> LIF -> SumPool2d -> ... -> Affine -> LI lowered
with ``sf.to_torch``. The trained graph then runs on the test set with numba-event (fed the raw
events one sample at a time, too) next to the torch forward. Run:

    python examples/digit_saccades_cnn.py [--out out/cnn] [--epochs 8] [--bins 8] [--data DIR] [--subset N]
"""

import argparse

from spikeflow.workflows import CNN_DEFAULTS, LATENCY_SAMPLES, SENSOR_SIZE, saccade_test_events, backend_table, compare_backends, train_saccade_cnn

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/cnn", help="output folder")
    parser.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {CNN_DEFAULTS['epochs']})")
    parser.add_argument("--bins", type=int, default=CNN_DEFAULTS["bins"], help="time bins per recording")
    parser.add_argument("--data", default=None, help="DigitSaccades cache folder (default OUT/data)")
    parser.add_argument("--subset", type=int, default=None, help="only the first N digits of each split")
    args = parser.parse_args()
    result = train_saccade_cnn(args.out, epochs=args.epochs, data_root=args.data, bins=args.bins, subset=args.subset)
    sizes = result["sizes"]
    print(f"DigitSaccades {sizes['train']} train / {sizes['val']} val / {sizes['test']} test, T={args.bins} bins: "
          f"test accuracy {result['test_acc']:.2%} after {result['trainer'].epoch} epochs "
          f"(data {result['data_seconds']:.1f} s, training {result['train_seconds']:.1f} s)")
    for kind, check in result["reload"].items():
        print(f"reloaded {kind}: {check['acc']:.2%}, identical predictions: {check['same_predictions']}")
    report = compare_backends(result["graph"], result["x_test"], result["y_test"],
                              events=saccade_test_events(result, LATENCY_SAMPLES), sensor_size=SENSOR_SIZE)
    print(backend_table({"CNN": report}))
    print("files:", ", ".join(str(p) for p in result["paths"].values()))
