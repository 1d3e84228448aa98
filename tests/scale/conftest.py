"""One small local Ray per test module (2 CPUs), always shut down at the end of the module."""

import sys

import pytest
import ray

from spikeflow.scale.cluster import OBJECT_STORE_BYTES, WORKER_ENV


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray with 2 CPUs; test modules' objectives travel by value (workers cannot import tests/)."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES, configure_logging=False,
             log_to_driver=False, runtime_env={"env_vars": dict(WORKER_ENV)})
    for name in [n for n in sys.modules if n.startswith("tests.scale.")]:
        ray.cloudpickle.register_pickle_by_value(sys.modules[name])
    yield ray
    ray.shutdown()
