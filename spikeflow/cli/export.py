"""``spikeflow export``: a graph file to a registered hardware target's export folder."""

from __future__ import annotations

from spikeflow.cli._common import load_graph

HELP = "export a graph file to a hardware target"


def add_arguments(parser) -> None:
    parser.add_argument("path", help="graph file (.h5 or .nir)")
    from spikeflow.backends import target_names

    parser.add_argument("--target", default="spinnaker2", help=f"registered hardware target: {', '.join(target_names()) or 'none yet'}")
    parser.add_argument("--out", default="out/export", help="output folder")
    parser.add_argument("--dt", type=float, default=None, help="time step for NIR files without one")


def run(args) -> int:
    import spikeflow as sf

    report = sf.export(load_graph(args.path, args.dt), target=args.target, path=args.out)
    print(report)
    return 0
