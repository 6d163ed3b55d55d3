"""Namespaces and cgroups are gone after a run fails, is interrupted, or was killed outright."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtimes import cgroup, netns
from runtimes.launch import ROOT, RunFailed, run_nodes


def cgroups_of(owner: int) -> list[str]:
    found = cgroup._cpu_hierarchy()
    parent = found[0] / cgroup.PARENT if found else None
    if parent is None or not parent.is_dir():
        return []
    return [g.name for g in parent.iterdir() if g.name.startswith(f"{owner}-")]


def test_failing_process_stops_the_run_and_leaves_nothing(real_run):
    links = [netns.LinkSpec(10.0), netns.LinkSpec(10.0)]
    with pytest.raises(RunFailed, match="exited with code 1: .*No module named") as error:
        with netns.Fabric("fail", links, shared=True) as fabric, \
                cgroup.CpuQuotas("fail", [0.5, 0.5]) as quotas:
            assert len(netns.owned_namespaces(os.getpid())) == 3
            assert len(cgroups_of(os.getpid())) == 2
            run_nodes("runtimes.no_such_module", {}, fabric, quotas, timeout_s=60)
    assert "\n" not in str(error.value)
    assert netns.owned_namespaces(os.getpid()) == []
    assert cgroups_of(os.getpid()) == []


def test_ctrl_c_tears_down_namespaces_and_cgroups(real_run):
    command = [sys.executable, "-m", "runtimes.ps", "--dataset",
               str(ROOT / "data" / "param_server" / "sitepackages.npz"), "--planner", "hash",
               "--iterations", "50", "--rounds", "20"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(cgroups_of(process.pid)) < 4 and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.1)
    assert len(netns.owned_namespaces(process.pid)) == 5   # 4 machines and the switch
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, errors = process.communicate(timeout=60)
    assert process.returncode != 0
    assert errors.strip().splitlines()[-1] == (
        "runtimes.ps: interrupted (namespaces and cgroups removed)")
    assert netns.owned_namespaces(process.pid) == []
    assert cgroups_of(process.pid) == []


def test_leftovers_of_a_killed_run_are_removed_by_the_next(real_run):
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1   # never a live pid
    subprocess.run(["ip", "netns", "add", f"{netns.PREFIX}{dead}-ps-sw"], check=True)
    root = cgroup._cpu_hierarchy()[0]
    stale = root / cgroup.PARENT / f"{dead}-ps-0"
    stale.mkdir(parents=True)
    with netns.Fabric("t", [netns.LinkSpec(10.0)], shared=False), cgroup.CpuQuotas("t", [0.5]):
        assert netns.owned_namespaces(dead) == []
        assert not stale.exists()


def test_refused_emulation_is_one_line_and_leaves_nothing(real_run):
    fabric = netns.Fabric("delay", [netns.LinkSpec(10.0, delay_ms=5.0)], shared=False)
    try:
        fabric.up()
    except netns.KernelRefused as error:   # kernels without sch_netem
        assert "\n" not in str(error) and "netem" in str(error)
    else:
        fabric.down()
    assert netns.owned_namespaces(os.getpid()) == []
    assert not Path("/var/run/netns", fabric.switch).exists()
