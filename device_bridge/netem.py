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
live in it). Every function takes a ``VethPair`` (default the one above), so a second path
with other names (``VethPair.named("pch", 212)``) can live beside it; ``up_duplex`` shapes
both directions, each veth end's egress by its own ``tbf``, as a full-duplex link.

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
from dataclasses import dataclass


@dataclass(frozen=True)
class VethPair:
    """Two network namespaces, the device's and the server's, joined by a veth pair."""

    device_ns: str
    server_ns: str
    device_if: str
    server_if: str
    device_ip: str
    server_ip: str

    @classmethod
    def named(cls, prefix: str, subnet: int) -> VethPair:
        """``PREFIX_dev`` / ``PREFIX_srv`` with veths ``PREFIX-dev`` / ``PREFIX-srv`` on
        10.SUBNET.0.1 and .2 (/30)."""
        return cls(f"{prefix}_dev", f"{prefix}_srv", f"{prefix}-dev", f"{prefix}-srv",
                   f"10.{subnet}.0.1", f"10.{subnet}.0.2")


DEFAULT_PAIR = VethPair.named("psdb", 211)
DEVICE_NS, SERVER_NS = DEFAULT_PAIR.device_ns, DEFAULT_PAIR.server_ns
DEVICE_IF, SERVER_IF = DEFAULT_PAIR.device_if, DEFAULT_PAIR.server_if
DEVICE_IP, SERVER_IP = DEFAULT_PAIR.device_ip, DEFAULT_PAIR.server_ip
CLONE_NEWNET = 0x40000000
# the token bucket of tbf holds this much traffic; 10 ms at WiFi rates is two full frames
DEFAULT_BURST_S = 0.01


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


def _tbf_args(bandwidth_mbps: float, burst_s: float = DEFAULT_BURST_S) -> list[str]:
    # a bucket of burst_s of traffic (at least two full frames), a deep queue so TCP is not
    # policed; GSO super-packets larger than the bucket are segmented by tbf
    burst = max(3028, int(bandwidth_mbps * 1e6 / 8 * burst_s))
    return ["tbf", "rate", f"{bandwidth_mbps}mbit", "burst", str(burst), "limit", str(4 * 2**20)]


def _qdisc(verb: str, bandwidth_mbps: float, latency_ms: float, pair: VethPair) -> bool:
    """Install the uplink qdisc; True when netem (delay + rate), False for tbf (rate only)."""
    base = ["ip", "netns", "exec", pair.device_ns, "tc", "qdisc", verb, "dev", pair.device_if,
            "root"]
    try:
        _run(*base, "netem", "delay", f"{latency_ms}ms", "rate", f"{bandwidth_mbps}mbit",
             "limit", "10000")
        return True
    except RuntimeError as error:
        if "unknown" not in str(error):
            raise
    _run(*base, *_tbf_args(bandwidth_mbps))
    return False


def _create(pair: VethPair) -> None:
    """Both namespaces, the veth pair and its addresses, fresh (no qdisc)."""
    down(pair)
    _run("ip", "netns", "add", pair.device_ns)
    _run("ip", "netns", "add", pair.server_ns)
    _run("ip", "link", "add", pair.device_if, "netns", pair.device_ns, "type", "veth", "peer",
         "name", pair.server_if, "netns", pair.server_ns)
    for namespace, interface, address in ((pair.device_ns, pair.device_if, pair.device_ip),
                                          (pair.server_ns, pair.server_if, pair.server_ip)):
        _run("ip", "-n", namespace, "addr", "add", f"{address}/30", "dev", interface)
        _run("ip", "-n", namespace, "link", "set", interface, "up")
        _run("ip", "-n", namespace, "link", "set", "lo", "up")


def up(bandwidth_mbps: float, latency_ms: float, pair: VethPair = DEFAULT_PAIR) -> bool:
    """Create both namespaces, the veth pair, addresses and the uplink qdisc (fresh).

    Returns True when the kernel also applies the latency (netem), False when only the rate."""
    _create(pair)
    return _qdisc("add", bandwidth_mbps, latency_ms, pair)


def up_duplex(bandwidth_mbps: float, pair: VethPair, burst_s: float = DEFAULT_BURST_S) -> None:
    """Create the pair with both directions rate-limited on their own (each veth end's egress
    by a ``tbf`` of ``bandwidth_mbps``), as a full-duplex link; no added latency."""
    _create(pair)
    for namespace, interface in ((pair.device_ns, pair.device_if),
                                 (pair.server_ns, pair.server_if)):
        _run("ip", "netns", "exec", namespace, "tc", "qdisc", "add", "dev", interface, "root",
             *_tbf_args(bandwidth_mbps, burst_s))


def set_rate(bandwidth_mbps: float, latency_ms: float, pair: VethPair = DEFAULT_PAIR) -> bool:
    return _qdisc("replace", bandwidth_mbps, latency_ms, pair)


def down(pair: VethPair = DEFAULT_PAIR) -> None:
    for namespace in (pair.device_ns, pair.server_ns):
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
