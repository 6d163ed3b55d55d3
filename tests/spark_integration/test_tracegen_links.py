"""The rate-limited namespace links that linked-cluster traces cross (`cluster up --link-mbps`):
a real TCP transfer between two worker namespaces is held to the configured rate, and the
namespaces are gone after ``links_down``."""

from __future__ import annotations

import os
import subprocess
import sys

from spark_integration import cluster

RECEIVER = """
import socket, sys, time
server = socket.socket()
server.bind((sys.argv[1], 9000))
server.listen()
print("ready", flush=True)
conn, _ = server.accept()
received, started = 0, time.monotonic()
while chunk := conn.recv(1 << 16):
    received += len(chunk)
print(received, time.monotonic() - started, flush=True)
"""
SENDER = """
import socket, sys
with socket.create_connection((sys.argv[1], 9000), timeout=30) as conn:
    conn.sendall(b"x" * int(sys.argv[2]))
"""


def _namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in listing.splitlines() if line.strip()}


def test_worker_links_hold_the_rate_and_are_removed(real_run: None) -> None:
    prefix = f"psl{os.getpid() % 10000}"  # not the default: a cluster may be up beside us
    mbps, size = 20.0, 2_500_000  # 1 s at the limit
    created = cluster.links_up(2, mbps, prefix)
    try:
        assert created == [cluster.hub_ns(prefix), cluster.driver_ns(prefix),
                           cluster.worker_ns(0, prefix), cluster.worker_ns(1, prefix)]
        receiver = subprocess.Popen(
            ["ip", "netns", "exec", cluster.worker_ns(1, prefix), sys.executable, "-c", RECEIVER,
             cluster.worker_ip(1)], stdout=subprocess.PIPE, text=True)
        assert receiver.stdout.readline().strip() == "ready"
        subprocess.run(["ip", "netns", "exec", cluster.worker_ns(0, prefix), sys.executable, "-c",
                        SENDER, cluster.worker_ip(1), str(size)], check=True, timeout=60)
        received, seconds = receiver.communicate(timeout=60)[0].split()
        assert int(received) == size
        # worker 0 -> bridge -> worker 1 crosses two 20 Mbit/s limits: no faster than the
        # rate (one ~10 ms bucket aside), and not absurdly slower
        ideal_s = size * 8 / 1e6 / mbps
        assert 0.9 * ideal_s < float(seconds) < 3 * ideal_s + 1
    finally:
        cluster.links_down(created)
    assert not set(created) & _namespaces()
