import pytest

from envs.offload.dag import DagJob, DagLayer


@pytest.fixture
def shared_tensor_job() -> DagJob:
    """``a`` feeds both ``b`` and ``c`` (which merge in ``d``): a's tensor is read twice."""
    layers = (
        DagLayer("a", 1.0, 0.1, 1000, ("input",)),
        DagLayer("b", 1.0, 0.1, 200, ("a",)),
        DagLayer("c", 1.0, 0.1, 300, ("a",)),
        DagLayer("d", 1.0, 0.1, 10, ("b", "c")),
    )
    return DagJob("diamond", 5000, layers)
