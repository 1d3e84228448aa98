"""DigitSaccades tour: build the built-in event set, look at it, bin it for a spiking CNN.

Run: ``.venv/bin/python examples/digit_saccades_events.py [--subset N] [--out DIR]``
Writes pictures and files to ``examples/out/`` (ignored by git).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import spikeflow as sf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=None, help="only the first N digits of each split")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args()
    ds_mod = sf.datasets

    # 1. The event set: generated once (progress bar), then read from the HDF5 cache.
    train = ds_mod.DigitSaccades(args.out / "data", train=True, subset=args.subset)
    test = ds_mod.DigitSaccades(args.out / "data", train=False, subset=args.subset)
    events, label = train[0]
    counts = [len(train[i][0]) for i in range(min(len(train), 50))]
    print(f"train {len(train)} / test {len(test)} samples; sample 0: label {label}, {len(events)} events, "
          f"{events['p'].mean():.0%} ON; mean {np.mean(counts):.0f} events per digit")

    # 2. Pictures: the whole sample, a strip over the three saccades, a raster.
    for path in (
        ds_mod.plot_event_frame(events, train.sensor_size, args.out / "digit_frame.png", title=f"label {label}"),
        ds_mod.plot_frame_strip(events, train.sensor_size, args.out / "digit_strip.png", n_frames=6, duration=train.duration_us),
        ds_mod.plot_raster(events, args.out / "digit_raster.png", title="events (neuron = pixel)"),
    ):
        print("wrote", path)

    # 3. Interchange: the same events as an N-MNIST .bin file, read back identically.
    bin_path = ds_mod.write_nmnist_bin(args.out / "digit0.bin", events)
    assert np.array_equal(ds_mod.read_nmnist_bin(bin_path), events)
    print("wrote", bin_path, "(N-MNIST format, readable by tonic)")

    # 4. Time windows straight from the store: the first saccade only.
    first = train.read_window(0, 0, 105_000)
    print(f"first saccade: {len(first)} of {len(events)} events")

    # 5. Tensors for a spiking CNN: [N, T, 2, 34, 34] counts and labels (time-major on request).
    x, y = train.frames(n_bins=10)
    print(f"frames {x.shape} {x.dtype}, labels {np.bincount(y, minlength=10).tolist()}")
    spikes = ds_mod.rate_encode(np.clip(x[:4].mean(axis=1), 0, 1), n_steps=20, seed=0)
    print(f"rate-coded mean frames for 4 samples: {spikes.shape} (time-major)")


if __name__ == "__main__":
    main()
