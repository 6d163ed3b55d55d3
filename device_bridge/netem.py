"""A real, kernel-shaped network path: a veth pair between two network namespaces.

    device namespace  psdb_dev  veth psdb-dev 10.211.0.1/30
    server namespace  psdb_srv  veth psdb-srv 10.211.0.2/30

The device side's egress carries ``tc qdisc ... netem delay <latency> rate <bandwidth>``: the
uplink is shaped by the kernel (TCP, packetisation and queueing included), the downlink is not.
Kernels without ``sch_netem`` (many containers) get a ``tbf`` rate limit instead, and the
latency is then added by the client before each upload (``up`` returns whether the kernel
delays). Needs root (CAP_NET_ADMIN) and iproute2; ``netem_unavailable()`` says why the path
cannot be built.
Run the server under ``ip netns exec psdb_srv`` and enter the device namespace with
``enter_namespace(DEVICE_NS)`` (per thread: only sockets the calling thread creates afterwards
live in it).

    python -m device_bridge.netem up --bandwidth-mbps 5.85 --latency-ms 5
    python -m device_bridge.netem down
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import subprocess
import threading
from collections.abc import Sequence

DEVICE_NS, SERVER_NS = "psdb_dev", "psdb_srv"
DEVICE_IF, SERVER_IF = "psdb-dev", "psdb-srv"
DEVICE_IP, SERVER_IP = "10.211.0.1", "10.211.0.2"
CLONE_NEWNET = 0x40000000


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")


def netem_unavailable() -> str | None:
    """``None`` when the veth path with a kernel rate limit can be built here, else why not."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} (iproute2) not installed"
    probe = "psdb_probe"
    try:
        _run("ip", "netns", "add", probe)
    except RuntimeError as error:
        return f"cannot create network namespaces: {error}"
    try:
        _run("ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root",
             *_tbf_args(5.0))
    except RuntimeError as error:
        return f"no rate-limiting qdisc: {error}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _tbf_args(bandwidth_mbps: float) -> list[str]:
    # a bucket of ~10 ms of traffic (at least two full frames), a deep queue so TCP is not
    # policed; GSO super-packets larger than the bucket are segmented by tbf
    burst = max(3028, int(bandwidth_mbps * 1e6 / 8 / 100))
    return ["tbf", "rate", f"{bandwidth_mbps}mbit", "burst", str(burst), "limit", str(4 * 2**20)]


def _qdisc(verb: str, bandwidth_mbps: float, latency_ms: float) -> bool:
    """Install the uplink qdisc; True when netem (delay + rate), False for tbf (rate only)."""
    base = ["ip", "netns", "exec", DEVICE_NS, "tc", "qdisc", verb, "dev", DEVICE_IF, "root"]
    try:
        _run(*base, "netem", "delay", f"{latency_ms}ms", "rate", f"{bandwidth_mbps}mbit",
             "limit", "10000")
        return True
    except RuntimeError as error:
        if "unknown" not in str(error):
            raise
    _run(*base, *_tbf_args(bandwidth_mbps))
    return False


def up(bandwidth_mbps: float, latency_ms: float) -> bool:
    """Create both namespaces, the veth pair, addresses and the uplink qdisc (fresh).

    Returns True when the kernel also applies the latency (netem), False when only the rate."""
    down()
    _run("ip", "netns", "add", DEVICE_NS)
    _run("ip", "netns", "add", SERVER_NS)
    _run("ip", "link", "add", DEVICE_IF, "netns", DEVICE_NS, "type", "veth", "peer", "name",
         SERVER_IF, "netns", SERVER_NS)
    for namespace, interface, address in ((DEVICE_NS, DEVICE_IF, DEVICE_IP),
                                          (SERVER_NS, SERVER_IF, SERVER_IP)):
        _run("ip", "-n", namespace, "addr", "add", f"{address}/30", "dev", interface)
        _run("ip", "-n", namespace, "link", "set", interface, "up")
        _run("ip", "-n", namespace, "link", "set", "lo", "up")
    return _qdisc("add", bandwidth_mbps, latency_ms)


def set_rate(bandwidth_mbps: float, latency_ms: float) -> bool:
    return _qdisc("replace", bandwidth_mbps, latency_ms)


def down() -> None:
    for namespace in (DEVICE_NS, SERVER_NS):
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def netns_command(namespace: str, command: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", namespace, *command]


def enter_namespace(namespace: str) -> int:
    """Move the calling thread into ``namespace``; returns an fd of the previous one."""
    libc = ctypes.CDLL(None, use_errno=True)
    previous = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns({namespace}): {os.strerror(errno)}")
    finally:
        os.close(target)
    return previous


def leave_namespace(previous_fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        if libc.setns(previous_fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns(back): {os.strerror(errno)}")
    finally:
        os.close(previous_fd)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m device_bridge.netem",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("up", "down", "check"))
    parser.add_argument("--bandwidth-mbps", type=float, default=5.85)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.action == "check":
        reason = netem_unavailable()
        print("kernel-shaped veth path available" if reason is None
              else f"kernel-shaped path unavailable: {reason}")
    elif args.action == "up":
        kernel_delay = up(args.bandwidth_mbps, args.latency_ms)
        delay = f"{args.latency_ms} ms" if kernel_delay else "no kernel delay (tbf)"
        print(f"{DEVICE_NS} {DEVICE_IP} --[{args.bandwidth_mbps} Mbit/s, {delay}]--> "
              f"{SERVER_NS} {SERVER_IP}")
    else:
        down()


if __name__ == "__main__":
    main()
