"""The ``spikeflow`` command line: one module per command, assembled into one parser here.

Each command module in this package has ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``
(the exit status); a new command is one module and one entry in ``COMMANDS``.

Run as ``spikeflow ...``, ``python -m spikeflow ...`` or ``python -m spikeflow.cli ...``.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from spikeflow.errors import SpikeflowError

# command name -> module of this package, in the order --help lists them
COMMANDS = ("run", "demo", "train", "simulate", "export", "convert", "info", "sweep", "bench", "models")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from spikeflow._version import __version__

    parser = argparse.ArgumentParser(prog="spikeflow", description="Spiking networks: one graph IR, trained in PyTorch, exchanged through NIR.")
    parser.add_argument("--version", action="version", version=f"spikeflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = import_module(f"spikeflow.cli.{name}")
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``spikeflow`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpikeflowError as err:
        print(f"spikeflow {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
