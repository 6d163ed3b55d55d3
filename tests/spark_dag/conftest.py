from pathlib import Path

import pytest

from envs.spark_dag import Job, Stage

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def decima_dir() -> Path:
    return FIXTURES / "decima_tpch"


def single_stage_job(name: str = "j", arrival_s: float = 0.0, num_tasks: int = 4,
                     network_s: float = 0.0, compute_s: float = 2.0) -> Job:
    return Job(name, arrival_s, [Stage(0, (), num_tasks, network_s=network_s,
                                       compute_s=compute_s)])
