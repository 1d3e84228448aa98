"""The ``spikeflow`` command line (see :mod:`spikeflow.cli.main`); one module per command."""

from spikeflow.cli.main import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]
