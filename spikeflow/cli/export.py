"""``spikeflow export``: a graph file to a registered hardware target's export folder."""

from __future__ import annotations

from pathlib import Path

from spikeflow.cli._common import load_graph

HELP = "export a graph file to a hardware target"


def add_arguments(parser) -> None:
    parser.add_argument("path", help="graph file (.h5 or .nir)")
    from spikeflow.backends import target_names

    parser.add_argument("--target", default="spinnaker2", help=f"registered hardware target: {', '.join(target_names()) or 'none yet'}")
    parser.add_argument("--out", default="out/export", help="output folder")
    parser.add_argument("--dt", type=float, default=None, help="time step for NIR files without one")
    parser.add_argument("--samples", default=None, help="calibration inputs [T, B, ...] as .npy (activity figures, silence check)")
    parser.add_argument("--chips", type=int, default=None, help="chips available to the target")


def run(args) -> int:
    import numpy as np

    import spikeflow as sf
    from spikeflow.errors import DataError

    options = {}
    if args.samples is not None:
        try:
            options["samples"] = np.load(args.samples, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{args.samples}: not a .npy array ({exc})") from None
    if args.chips is not None:
        options["chip"] = {"chips": args.chips}
    report = sf.export(load_graph(args.path, args.dt), target=args.target, path=args.out, **options)
    print(report.text() if hasattr(report, "text") else report)
    picture = Path(args.out) / "sram.png"
    if picture.exists():
        print(f"SRAM per PE: {picture}")
    print(f"wrote {args.out}")
    return 0
