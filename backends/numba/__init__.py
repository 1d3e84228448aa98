"""numba backends: one compiled interpreter, run clock-driven (dense) or event-driven (sparse)."""

from importlib.util import find_spec


def is_available() -> bool:
    """True when numba is installed (imported only when a simulation runs)."""
    return find_spec("numba") is not None
