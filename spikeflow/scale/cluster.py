"""Connecting to Ray: a local cluster started on demand, or the address of a running one.

Ray is an optional dependency (``pip install "spikeflow[ray]"``); everything here imports it lazily
and says how to install it when it is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from spikeflow.errors import BackendError

# every Ray worker runs single-threaded numba/torch: the workers are the parallelism, and two
# spinning thread pools per core would crawl (DESIGN: one place sets the thread counts)
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# the smallest object store Ray accepts: results here are a few numbers per trial
OBJECT_STORE_BYTES = 80 * 2**20


def require_ray():
    """Import and return ``ray``, or raise :class:`BackendError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise BackendError('Ray is not installed; install the extra: pip install "spikeflow[ray]"') from None
    return ray


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Use Ray inside a ``with`` block, and leave it as it was found.

    Args:
        address: a running cluster (``"ray://host:10001"`` or ``"host:6379"``, or ``"auto"``);
            None starts a local Ray on this machine, unless this process is already connected.
        num_cpus: CPUs of a local Ray started here (default: ``os.cpu_count()``).

    Yields:
        the ``ray`` module, connected.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray  # the caller (a test fixture, a notebook) owns this connection
        return
    options: dict[str, Any] = {"configure_logging": False, "log_to_driver": False,
                               "runtime_env": {"env_vars": dict(WORKER_ENV)}}
    if address is None:
        options.update(num_cpus=int(num_cpus or os.cpu_count() or 1), include_dashboard=False,
                       object_store_memory=OBJECT_STORE_BYTES)
    else:
        options["address"] = address
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray"
        raise BackendError(f"could not start or reach {where}: {err}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_cpus(ray) -> int:
    """CPUs the connected cluster offers (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
