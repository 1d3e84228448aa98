"""``python -m spikeflow``: the command line."""

import sys

from spikeflow.cli.main import main

sys.exit(main())
