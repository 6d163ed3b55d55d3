import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # The machine is shared by several processes; oversubscribed OpenMP threads make CPU
    # inference ~10x slower, so the bridge tests compute with one thread like the device.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
