"""A star of network namespaces: one per node, joined by veth pairs to a bridge in a switch
namespace, each node's link shaped by the kernel (``tc tbf``; ``netem`` for a delay).

    node i  namespace  <owner>-<tag>-n<i>   eth0 10.213.0.<i+1>/24
                 |  veth (shaped)
    switch  namespace  <owner>-<tag>-sw     p<i> -- bridge br0 -- p<j> ...

Two link disciplines:

- ``duplex``: one token bucket per direction (``tbf`` on eth0 for the uplink, on the switch
  port p<i> for the downlink): each direction carries ``rate`` on its own.
- ``shared``: both directions of a node pass one token bucket (eth0's egress and ingress are
  redirected to an ``ifb`` device that holds the ``tbf``): the link carries ``rate`` bytes per
  second in both directions together.

``tbf`` counts whole frames (Ethernet + IP + TCP headers), so ``rate`` is a line rate. A
per-link delay needs ``sch_netem``; where the kernel lacks it a non-zero delay is refused (no
sleeping stand-in). Namespace names start with the owner's pid, so a run that was killed
outright is cleaned up by the next one (:func:`remove_stale`).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

NETNS_DIR = Path("/var/run/netns")
PREFIX = "pipesched"
SUBNET = "10.213.0"
NODE_IF = "eth0"
_NAME = re.compile(rf"^{PREFIX}(\d+)-")


class KernelRefused(RuntimeError):
    """The kernel (or missing privileges/tools) refused the emulation; one-line reason."""


@dataclass(frozen=True)
class LinkSpec:
    rate_mbps: float
    delay_ms: float = 0.0


def run_command(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise KernelRefused(f"`{' '.join(command)}` failed: "
                            f"{result.stderr.strip().splitlines()[-1:] or ['?']}")


def _tbf(rate_mbps: float) -> list[str]:
    # a bucket of ~5 ms of traffic (at least two full frames) and a queue deep enough that
    # TCP is paced, not policed
    burst = max(3028, int(rate_mbps * 1e6 / 8 / 200))
    return ["tbf", "rate", f"{rate_mbps}mbit", "burst", str(burst), "limit", str(4 * 2**20)]


def pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def owned_namespaces(owner: int | None = None) -> list[str]:
    """Namespaces this module created (all, or those of ``owner``'s pid)."""
    if not NETNS_DIR.is_dir():
        return []
    names = []
    for entry in sorted(NETNS_DIR.iterdir()):
        match = _NAME.match(entry.name)
        if match and (owner is None or int(match.group(1)) == owner):
            names.append(entry.name)
    return names


def remove_stale() -> None:
    """Delete namespaces left by runs whose owner process no longer exists."""
    for name in owned_namespaces():
        match = _NAME.match(name)
        if match and not pid_alive(int(match.group(1))):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


class Fabric:
    """Namespaces, veths, bridge and qdiscs for ``len(links)`` nodes; a context manager."""

    def __init__(self, tag: str, links: Sequence[LinkSpec], shared: bool) -> None:
        if not links:
            raise ValueError("a fabric needs at least one node")
        for index, link in enumerate(links):
            if not link.rate_mbps > 0 or link.delay_ms < 0:
                raise ValueError(f"link {index}: rate_mbps must be > 0 and delay_ms >= 0, got "
                                 f"{link.rate_mbps}, {link.delay_ms}")
        self.links, self.shared = tuple(links), shared
        base = f"{PREFIX}{os.getpid()}-{tag}"
        self.switch = f"{base}-sw"
        self.namespaces = [f"{base}-n{i}" for i in range(len(links))]
        self._built = False

    def address(self, node: int) -> str:
        return f"{SUBNET}.{node + 1}"

    def exec_prefix(self, node: int) -> list[str]:
        """Prefix that runs a command inside ``node``'s namespace (with its own /sys)."""
        return ["ip", "netns", "exec", self.namespaces[node]]

    def __enter__(self) -> Fabric:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        remove_stale()
        self._built = True
        try:
            run_command("ip", "netns", "add", self.switch)
            run_command("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
            run_command("ip", "-n", self.switch, "link", "set", "br0", "up")
            for node, link in enumerate(self.links):
                self._node(node, link)
        except BaseException:  # deliberate: cleanup, re-raised
            self.down()
            raise

    def _node(self, node: int, link: LinkSpec) -> None:
        namespace, port = self.namespaces[node], f"p{node}"
        run_command("ip", "netns", "add", namespace)
        # IPv6 off before the link exists: its router solicitations and neighbour discovery
        # would otherwise show up in the byte counters (a 70-byte RS was seen). Where the
        # kernel has no IPv6 there is nothing to turn off.
        subprocess.run(["ip", "netns", "exec", namespace, "sysctl", "-qw",
                        "net.ipv6.conf.all.disable_ipv6=1",
                        "net.ipv6.conf.default.disable_ipv6=1"], capture_output=True)
        run_command("ip", "-n", self.switch, "link", "add", port, "type", "veth", "peer",
                    "name", NODE_IF, "netns", namespace)
        run_command("ip", "-n", self.switch, "link", "set", port, "master", "br0")
        run_command("ip", "-n", self.switch, "link", "set", port, "up")
        run_command("ip", "-n", namespace, "addr", "add", f"{self.address(node)}/24", "dev",
                    NODE_IF)
        for interface in (NODE_IF, "lo"):
            run_command("ip", "-n", namespace, "link", "set", interface, "up")
        shape = _tbf(link.rate_mbps)
        if link.delay_ms > 0:
            shape = ["netem", "delay", f"{link.delay_ms}ms", "rate", f"{link.rate_mbps}mbit",
                     "limit", "100000"]
        node_tc = ["ip", "netns", "exec", namespace, "tc"]
        if not self.shared:
            run_command(*node_tc, "qdisc", "add", "dev", NODE_IF, "root", *shape)
            run_command("ip", "netns", "exec", self.switch, "tc", "qdisc", "add", "dev", port,
                        "root", *shape)
            return
        redirect = ["protocol", "all", "u32", "match", "u32", "0", "0", "action", "mirred",
                    "egress", "redirect", "dev", "ifb0"]
        run_command("ip", "-n", namespace, "link", "add", "ifb0", "type", "ifb")
        run_command("ip", "-n", namespace, "link", "set", "ifb0", "up")
        run_command(*node_tc, "qdisc", "add", "dev", "ifb0", "root", *shape)
        run_command(*node_tc, "qdisc", "add", "dev", NODE_IF, "root", "handle", "1:", "htb")
        run_command(*node_tc, "filter", "add", "dev", NODE_IF, "parent", "1:", *redirect)
        run_command(*node_tc, "qdisc", "add", "dev", NODE_IF, "handle", "ffff:", "ingress")
        run_command(*node_tc, "filter", "add", "dev", NODE_IF, "parent", "ffff:", *redirect)

    def down(self) -> None:
        """Delete every namespace of this fabric (their veths, ifbs and qdiscs go with them)."""
        if not self._built:
            return
        for namespace in [*self.namespaces, self.switch]:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        self._built = False


def fabric_unavailable(shared: bool) -> str | None:
    """``None`` when a two-node fabric can be built here, else the kernel's reason (one line)."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    try:
        with Fabric("probe", [LinkSpec(10.0), LinkSpec(10.0)], shared):
            pass
    except (KernelRefused, FileNotFoundError) as error:
        return f"network emulation unavailable: {error}"
    return None


def read_counters(interface: str = NODE_IF) -> tuple[int, int]:
    """``(tx_bytes, rx_bytes)`` of ``interface`` as the kernel counts them (this namespace's
    /sys, which ``ip netns exec`` mounts)."""
    base = Path("/sys/class/net") / interface / "statistics"
    return int((base / "tx_bytes").read_text()), int((base / "rx_bytes").read_text())
