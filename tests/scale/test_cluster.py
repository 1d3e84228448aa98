"""ray_session starts a small local Ray on demand and leaves none behind."""

import ray

from spikeflow.scale.cluster import cluster_cpus, ray_session


def test_local_ray_is_started_and_shut_down():
    assert not ray.is_initialized()
    with ray_session(num_cpus=1) as session:
        assert session.is_initialized() and cluster_cpus(session) == 1
        # a connection the caller already holds is used as it is and left open
        with ray_session(num_cpus=2) as inner:
            assert cluster_cpus(inner) == 1
        assert ray.is_initialized()
    assert not ray.is_initialized()
