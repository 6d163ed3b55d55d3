"""CPU quotas per process: one cpu cgroup each, so a device of speed ``v`` gets ``v`` CPUs.

cgroup v1 (a hierarchy mounted with the ``cpu`` controller): ``cpu.cfs_period_us`` and
``cpu.cfs_quota_us = v * period``; cgroup v2: ``cpu.max = "<v * period> <period>"``. Node processes
join their group themselves once set up (:func:`join_assigned_group`). The
period is short (20 ms) so that a throttled process runs in fine slices: a slow device's op
that is shorter than the period still takes about ``t / v``, not ``t`` plus a whole
throttled period. Groups live under ``<cpu hierarchy>/pipesched/<owner pid>-<tag>-<i>``; the
owner's pid in the name lets the next run remove groups of a killed run
(:func:`remove_stale`). The owner is the creating process unless given: a Spark cluster whose
``up`` command exits names its master daemon, so its groups live as long as the cluster.
A process started inside a group from birth (:meth:`CpuQuotas.preexec`) takes every child it
forks along (a JVM's executors included).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from runtimes.netns import KernelRefused, pid_alive

PERIOD_US = 20_000
# weight of the parent group against the machine's other tasks (v1 shares, v2 weight): a quota
# is a ceiling, this makes it also what the process gets when other jobs load the CPU
PARENT_SHARES, PARENT_WEIGHT = 65536, 10000
JOIN_ENV = "PIPESCHED_CGROUP_JOIN_DIR"
MIN_QUOTA_US = 1_000
PARENT = "pipesched"


def _cpu_hierarchy() -> tuple[Path, int] | None:
    """``(mount point, version)`` of the cgroup hierarchy that holds the cpu controller."""
    v2 = None
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mount, kind, options = line.split()[:4]
        if kind == "cgroup" and "cpu" in options.split(","):
            return Path(mount), 1
        if kind == "cgroup2":
            controllers = Path(mount) / "cgroup.controllers"
            if controllers.exists() and "cpu" in controllers.read_text().split():
                v2 = Path(mount)
    return (v2, 2) if v2 else None


def _remove(group: Path) -> None:
    """Kill what is left in ``group`` and delete it (a cgroup with tasks cannot be removed)."""
    if not group.is_dir():
        return
    for _ in range(50):
        pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            group.rmdir()
            return
        except OSError:
            time.sleep(0.05)
    raise KernelRefused(f"cannot remove cgroup {group}: processes remain")


def remove_groups(groups: Sequence[Path]) -> None:
    """Delete ``groups`` (their processes killed), then their parent unless another run still
    has groups in it."""
    for group in reversed(groups):
        _remove(group)
    if groups:
        try:
            groups[0].parent.rmdir()
        except OSError:
            pass


def remove_stale(root: Path) -> None:
    parent = root / PARENT
    if not parent.is_dir():
        return
    for group in parent.iterdir():
        owner = group.name.split("-", 1)[0]
        if group.is_dir() and owner.isdigit() and not pid_alive(int(owner)):
            _remove(group)


class CpuQuotas:
    """One cgroup per process with ``speeds[i]`` CPUs; a context manager."""

    def __init__(self, tag: str, speeds: Sequence[float], owner: int | None = None) -> None:
        for index, speed in enumerate(speeds):
            if not (speed * PERIOD_US >= MIN_QUOTA_US):
                raise ValueError(f"process {index}: a quota of {speed:g} CPUs is below the "
                                 f"smallest one the kernel takes ({MIN_QUOTA_US / PERIOD_US:g}"
                                 " CPUs)")
        self.tag, self.speeds = tag, tuple(speeds)
        self.owner = os.getpid() if owner is None else owner
        self.groups: list[Path] = []
        self.version = 0

    def __enter__(self) -> CpuQuotas:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        found = _cpu_hierarchy()
        if found is None:
            raise KernelRefused("no cgroup hierarchy with the cpu controller is mounted")
        root, self.version = found
        remove_stale(root)
        parent = root / PARENT
        try:
            parent.mkdir(exist_ok=True)
            if self.version == 2:
                (root / "cgroup.subtree_control").write_text("+cpu")
                (parent / "cgroup.subtree_control").write_text("+cpu")
                (parent / "cpu.weight").write_text(str(PARENT_WEIGHT))
            else:
                (parent / "cpu.shares").write_text(str(PARENT_SHARES))
            for index, speed in enumerate(self.speeds):
                group = parent / f"{self.owner}-{self.tag}-{index}"
                group.mkdir()
                self.groups.append(group)
                quota = int(round(speed * PERIOD_US))
                if self.version == 1:
                    (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                    (group / "cpu.cfs_quota_us").write_text(str(quota))
                else:
                    (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        except OSError as error:
            self.down()
            raise KernelRefused(f"cannot set a CPU quota under {parent}: {error}") from None
        except BaseException:  # deliberate: cleanup on Ctrl-C while groups are made, re-raised
            self.down()
            raise

    def move(self, index: int, pid: int) -> None:
        """Put process ``pid`` (all its threads) into group ``index``."""
        (self.groups[index] / "cgroup.procs").write_text(str(pid))

    def preexec(self, index: int) -> Callable[[], None]:
        """A ``subprocess.Popen(preexec_fn=...)`` that starts the child in group ``index``."""
        procs = str(self.groups[index] / "cgroup.procs")

        def join() -> None:
            with open(procs, "w") as out:   # "0": the writing process itself
                out.write("0")
        return join

    def down(self) -> None:
        remove_groups(self.groups)
        self.groups = []


def join_assigned_group(rank: int, timeout_s: float = 120.0) -> None:
    """Ask the launcher to move this process into its cgroup, and wait until it has.

    Node processes call this after their set-up (imports, model building), so the quota
    shapes the measured work and not the start-up. The launcher does the move because
    ``ip netns exec`` gives the process a /sys without the cgroup hierarchy."""
    folder = os.environ.get(JOIN_ENV)
    if not folder:
        return
    (Path(folder) / f"ready{rank}").touch()
    deadline = time.monotonic() + timeout_s
    while not (Path(folder) / f"joined{rank}").exists():
        if time.monotonic() > deadline:
            raise KernelRefused(f"rank {rank}: not moved into its cgroup in {timeout_s:.0f} s")
        time.sleep(0.01)


def cgroup_unavailable() -> str | None:
    """``None`` when a CPU quota can be set here, else why not (one line)."""
    try:
        with CpuQuotas("probe", [0.5]):
            pass
    except (KernelRefused, OSError) as error:
        return f"CPU quota unavailable: {error}"
    return None
