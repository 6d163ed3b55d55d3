"""offload_live's channel measurement end to end on loopback (few rounds): every send kind is
carried and timed, the TLS kinds really run TLS 1.3 with AES-GCM, and the CPU cost of TLS
is measured against plain TCP."""

import shutil

import pytest

from benchmarks import offload_live_protocol as channel
from device_bridge.tls import self_signed_pair


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not installed")
    return self_signed_pair(tmp_path_factory.mktemp("tls"), "bench", days=1)


def test_every_send_kind_is_timed_on_loopback_with_tls_aes_gcm(tls_files):
    path = channel.protocol_overhead(3, 1, tls_files, "loopback")
    assert set(path["kinds"]) == set(channel.SEND_KINDS)
    assert all(entry["median_ms"] > 0 for entry in path["kinds"].values())
    for kind in channel.SEND_KINDS[1:]:
        entry = path["kinds"][kind]
        assert entry["overhead_low"] <= entry["overhead"] <= entry["overhead_high"]
    assert "GCM" in path["tls_cipher"] and "AES" in path["tls_cipher"]


def test_tls_cpu_cost_is_measured_against_plain_tcp(tls_files):
    cost = channel.tls_cpu_cost(tls_files, mib=4, repetitions=1)
    assert cost["tls_send_recv_ms_per_mib"] > 0 and cost["plain_send_recv_ms_per_mib"] > 0
    assert cost["aead_both_ends_ms_per_mib"] == pytest.approx(
        cost["tls_send_recv_ms_per_mib"] - cost["plain_send_recv_ms_per_mib"])
