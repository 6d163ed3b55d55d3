import pytest

from envs.offload import Layer, OffloadInstance, OffloadJob


@pytest.fixture
def two_job_instance() -> OffloadInstance:
    """8 Mbit/s and no latency: one byte takes exactly 1 microsecond to upload."""
    job_a = OffloadJob("A", 1000, (Layer("a1", 1.0, 0.5, 500_000), Layer("a2", 2.0, 0.25, 4)))
    job_b = OffloadJob("B", 2_000_000, (Layer("b1", 0.5, 0.1, 1_000_000),))
    return OffloadInstance(bandwidth_mbps=8.0, latency_s=0.0, jobs=(job_a, job_b))
