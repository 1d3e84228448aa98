"""``python -m spikeflow.cli``."""

import sys

from spikeflow.cli.main import main

sys.exit(main())
