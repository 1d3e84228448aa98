"""Place recognition with an ensemble of compact, region-specific SNNs, trained in parallel on Ray.

Two traverses over the photographs that scikit-learn ships (no download): a reference traverse
and a query traverse under changed illumination, noise and small camera offsets, turned into
events by the DVS emulator. Four members learn ten places each on Ray actors; the hyperactive-
neuron regulariser prunes place neurons that respond to other regions; the ensemble is saved as
one spikeflow graph. Prints Recall@1 against one SNN of the same size and against a non-spiking
sum-of-absolute-differences matcher, and the training wall-clock on 1 and 2 Ray workers.

Run:  python examples/place_recognition_ensemble.py [--out examples/out/places] [--epochs 30]
(needs the extra: pip install "spikeflow[ray]")
"""

import argparse
import json
from pathlib import Path

import numpy as np

import spikeflow as sf
from spikeflow._atomic import atomic_path
from spikeflow.scale.ensemble import MemberConfig, compare_place_recognition, place_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/out/places")
    parser.add_argument("--epochs", type=int, default=MemberConfig.epochs)
    parser.add_argument("--address", default=None, help="a Ray cluster (default: local Ray, 1 then 2 workers)")
    args = parser.parse_args()

    result = compare_place_recognition(MemberConfig(epochs=args.epochs), workers=(1, 2), address=args.address, out=args.out)
    print(f"{'method':45s} {'Recall@1':>9s} {'neurons':>8s} {'train s':>8s}")
    for row in result["rows"]:
        print(f"{row['method']:45s} {row['recall_at_1']:9.3f} {row['neurons']:8d} {row['train_seconds']:8.1f}")
    one, two = result["timing"][1], result["timing"][2]
    print(f"ensemble training wall-clock: 1 worker {one:.1f} s, 2 workers {two:.1f} s (speed-up {one / two:.2f}x)")
    for count, seconds in result["member_seconds"].items():
        print(f"  {count} worker(s): members took {', '.join(f'{s:.1f}' for s in seconds)} s each (sum {sum(seconds):.1f} s)")
    print(f"place neurons removed by the regulariser per member: {result['removed']}")

    # the saved ensemble is one graph: reload it and check it answers the same on the query
    path = result["paths"]["ensemble"]
    query = result["data"]["query"]
    same = np.allclose(place_scores(sf.load(path), query["x"]), place_scores(result["graphs"]["ensemble + regulariser"], query["x"]))
    print(f"saved {path}; reloaded graph gives the same scores: {same}")
    record = {"rows": result["rows"], "timing": {str(k): v for k, v in result["timing"].items()},
              "member_seconds": {str(k): v for k, v in result["member_seconds"].items()}, "removed": result["removed"]}
    with atomic_path(Path(args.out) / "results.json") as tmp:
        tmp.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
