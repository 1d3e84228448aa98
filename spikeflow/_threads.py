"""Threads: the one place that sets numba's threading layer, the OpenMP wait policy and the thread
counts of torch and numba (DESIGN.md, "Threads").

numba's parallel kernels and torch each run an OpenMP thread pool (torch's wheel bundles its own
libgomp). An idle OpenMP thread normally spins for a while before it sleeps; with two pools
spinning on a 2-core machine each steals the other's cores, and the same short training took
2.9 s or 122 s (8 of 16 runs slow; 0 of 12 with passive waiting). :func:`configure` runs when
``spikeflow`` is imported, before numba or torch load their runtimes, and sets (unless the user
already did) ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep at once; both libgomp copies read it
when they load) and numba's threading-layer priority "omp" first, the layer whose waiting that
policy controls, deterministically rather than whichever numba finds. torch imported before
spikeflow has already read its environment: set ``OMP_WAIT_POLICY=PASSIVE`` in the shell then.
:func:`set_threads` gives torch and numba the same thread count.
"""

from __future__ import annotations

import os
import sys

ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE", "NUMBA_THREADING_LAYER_PRIORITY": "omp tbb workqueue"}


def configure() -> None:
    """Set the environment of both OpenMP pools, leaving any value the user chose."""
    for key, value in ENVIRONMENT.items():
        os.environ.setdefault(key, value)


def usable_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_threads(n: int | None = None) -> int:
    """Use ``n`` threads in torch and in spikeflow's numba kernels (default: torch's count, which
    follows ``OMP_NUM_THREADS``, else the usable CPUs). Returns the count set."""
    import numba
    import torch

    if n is None:
        n = torch.get_num_threads() if "OMP_NUM_THREADS" in os.environ else usable_cpus()
    n = max(1, int(n))
    torch.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))  # numba's pool cannot grow past its start size
    return n


_announced = False


def announce_first_compile(namespace: dict) -> None:
    """Say once per process that numba compiles, when a kernel module has no on-disk cache yet
    (the first run after installing takes up to a minute more; later runs load the cache)."""
    global _announced
    if _announced:
        return
    for obj in list(namespace.values()):
        cache_file = getattr(getattr(obj, "_cache", None), "_cache_file", None)
        index = getattr(cache_file, "_index_path", None)
        if index is not None and not os.path.exists(index):
            _announced = True
            print("spikeflow: compiling kernels, first run only (cached for later runs)", file=sys.stderr, flush=True)
            return
