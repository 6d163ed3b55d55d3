"""Whether this machine can run the real-run tests (processes in network namespaces on
``tc``-shaped links, with cgroup CPU quotas), probed once with the system's own tools.

The probe does not use ``runtimes/``: a bug there must fail its tests, not make them skip. On a
capable machine :func:`require_real_run` never skips, and ``tests/conftest.py`` fails the session
if a test marked ``real_run`` was skipped anyway (see there)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

# not the runtimes' ``pipesched<pid>-`` prefix, so their stale-namespace sweep never touches it
_PROBE_NAMESPACE = f"pstestprobe{os.getpid()}"
_TBF = ["tbf", "rate", "10mbit", "burst", "3028", "limit", str(2**20)]
_REDIRECT = ["protocol", "all", "u32", "match", "u32", "0", "0", "action", "mirred", "egress",
             "redirect", "dev", "ifb0"]


def _failed(command: list[str]) -> str | None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode == 0:
        return None
    last = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
    return f"`{' '.join(command)}` failed: {last}"


def _network_missing() -> str | None:
    """What the fabrics need: a namespace, a veth pair, a bridge, a token bucket, and an ifb
    device fed by a mirred redirect (the shared-link discipline)."""
    if (reason := _failed(["ip", "netns", "add", _PROBE_NAMESPACE])) is not None:
        return reason
    in_ns, tc = ["ip", "-n", _PROBE_NAMESPACE], ["ip", "netns", "exec", _PROBE_NAMESPACE, "tc"]
    steps = [[*in_ns, "link", "add", "pr0", "type", "veth", "peer", "name", "pr1"],
             [*in_ns, "link", "add", "br0", "type", "bridge"],
             [*in_ns, "link", "add", "ifb0", "type", "ifb"],
             [*tc, "qdisc", "add", "dev", "pr0", "root", *_TBF],
             [*tc, "qdisc", "add", "dev", "pr1", "handle", "ffff:", "ingress"],
             [*tc, "filter", "add", "dev", "pr1", "parent", "ffff:", *_REDIRECT]]
    try:
        return next((reason for step in steps if (reason := _failed(step)) is not None), None)
    finally:
        subprocess.run(["ip", "netns", "del", _PROBE_NAMESPACE], capture_output=True)


def _cpu_cgroup_missing() -> str | None:
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mount, kind, options = line.split()[:4]
        v1 = kind == "cgroup" and "cpu" in options.split(",")
        controllers = Path(mount) / "cgroup.controllers"
        v2 = kind == "cgroup2" and controllers.exists() and "cpu" in controllers.read_text().split()
        if (v1 or v2) and os.access(mount, os.W_OK):
            return None
    return "no writable cgroup hierarchy with the cpu controller is mounted"


@functools.cache
def real_run_missing() -> str | None:
    """``None`` where the real-run tests can run here, else what is missing (one line)."""
    if os.geteuid() != 0:
        return "not root (network namespaces and cgroups need CAP_NET_ADMIN, CAP_SYS_ADMIN)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"the `{tool}` command is not installed"
    return _network_missing() or _cpu_cgroup_missing()


def require_real_run() -> None:
    """Skip the calling test, with the reason, where this machine cannot run real runs."""
    reason = real_run_missing()
    if reason is not None:
        pytest.skip(f"real run impossible on this machine: {reason}")
