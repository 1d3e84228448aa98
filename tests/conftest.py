"""Suite-wide test settings: hypothesis runs a fixed, derandomised profile (the same examples on
every run and machine, so CI never fails by chance), with a deadline per example; tests that are
slow by nature override the deadline explicitly."""

import os

from hypothesis import settings

settings.register_profile("spikeflow", derandomize=True, database=None, deadline=5000, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, deadline=5000, max_examples=500)
settings.load_profile(os.environ.get("SPIKEFLOW_HYPOTHESIS_PROFILE", "spikeflow"))
