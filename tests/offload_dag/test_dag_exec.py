"""Split execution of the real DAG models at multi-tensor partitions equals the full model."""

import numpy as np
import pytest
import torch

from device_bridge.dag_exec import PartitionRunner
from envs.offload.dag import dag_job_from_profile


@pytest.mark.parametrize("model", ["resnet18", "googlenet"])
def test_split_execution_equals_the_full_model(model):
    runner = PartitionRunner(model)
    graph = dag_job_from_profile(model, 5.85, 0.01).graph
    x = torch.randn(runner.split.input_shape, generator=torch.Generator().manual_seed(1))
    full = runner.run_full(x)
    rng = np.random.default_rng(0)
    multi_tensor = 0
    for _ in range(2):
        mask = np.zeros(len(graph), dtype=bool)
        mask[rng.choice(len(graph), 3)] = True
        mask = graph.close_up(mask)
        partition = graph.partition(mask)
        sent = runner.run_device(x, partition)
        expected = {"x" if u < 0 else graph.names[u] for u in graph.crossing(mask)}
        assert set(sent) == expected
        multi_tensor += len(sent) > 1
        torch.testing.assert_close(runner.run_server(sent, partition), full)
    assert multi_tensor >= 1
    with pytest.raises(ValueError, match="not closed"):
        runner.run_device(x, {graph.names[-1]})
