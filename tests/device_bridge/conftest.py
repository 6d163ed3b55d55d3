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


TOKEN = b"test-token-0123456789abcdef-0123456789"  # >= 32 bytes
SERVED_MODELS = ("alexnet", "resnet18", "mobilenet_v2")


@pytest.fixture(scope="session")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_bytes(TOKEN + b"\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def server(_one_torch_thread):
    from device_bridge.server import OffloadServer, ServerLimits

    limits = ServerLimits(max_frame_bytes=16 * 2**20, handshake_timeout_s=2.0)
    instance = OffloadServer(SERVED_MODELS, TOKEN, port=0, device="cpu", limits=limits).start()
    yield instance
    instance.close()
