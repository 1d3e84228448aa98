"""``spikeflow convert``: points to the Python call, since a model file cannot be loaded without unpickling it."""

from __future__ import annotations

import sys

from spikeflow.cli._common import EXIT_UNAVAILABLE

HELP = "convert a trained non-spiking model into a spiking graph"


def add_arguments(parser) -> None:
    parser.add_argument("path", help="model file")
    parser.add_argument("--to", default="snn", help="conversion target")


def run(args) -> int:
    print("spikeflow convert: conversion is not available from the command line: a model file cannot be loaded without "
          "unpickling it; from Python call spikeflow.convert.ann_to_snn(model)", file=sys.stderr)
    return EXIT_UNAVAILABLE
