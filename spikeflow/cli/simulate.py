"""``spikeflow simulate``: a graph file on input spikes from a ``.npy`` file."""

from __future__ import annotations

import numpy as np

from spikeflow.cli._common import load_graph
from spikeflow.errors import FormatError

HELP = "simulate a graph file on input spikes from a .npy file"


def add_arguments(parser) -> None:
    parser.add_argument("path", help="graph file (.h5 or .nir)")
    parser.add_argument("inputs", help=".npy file holding the input [T, B, ...] (no pickles)")
    from spikeflow.backends import backend_names, capabilities

    names = backend_names()
    precisions = sorted({p for name in names for p in capabilities(name).precisions if p != "fixed"})
    parser.add_argument("--backend", default="numba-event", choices=names, help="registered simulation backend (default numba-event)")
    parser.add_argument("--precision", default="float64", choices=precisions, help="number format (default float64; "
                        "each backend's precisions: spikeflow info)")
    parser.add_argument("--record", nargs="*", default=[], help="nodes whose outputs to keep")
    parser.add_argument("--out", default=None, help="write output, recorded nodes and stats to this .npz file")
    parser.add_argument("--dt", type=float, default=None, help="time step for NIR files without one")


def run(args) -> int:
    import spikeflow as sf
    from spikeflow._atomic import atomic_path

    graph = load_graph(args.path, args.dt)
    try:
        x = np.load(args.inputs, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise FormatError(f"{args.inputs}: not a readable .npy array ({err})") from None
    res = sf.simulate(graph, x, backend=args.backend, record=args.record, precision=args.precision)
    output = np.asarray(res.output)
    print(f"{args.backend}: output {output.shape}, sum over time and batch per unit:")
    print(np.array2string(output.reshape(output.shape[0], output.shape[1], -1).sum((0, 1)), precision=3))
    for key, value in res.stats.items():
        print(f"  {key}: {value}")
    if args.out:
        arrays = {"output": output, **{f"record/{k}": np.asarray(v) for k, v in res.spikes.items()}}
        arrays.update({f"stats/{k}": np.asarray(v) for k, v in res.stats.items() if np.isscalar(v)})
        with atomic_path(args.out) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        print(f"wrote {args.out}")
    return 0
