"""The multi-slot bed: a standalone cluster the bridge did not start, off loopback, master and
workers each in their own network namespace (two executors behind each worker's shaped link,
a CPU quota per worker), the driver in a third, reached over the bridge's 10.213.0.x addresses
only; the data on an absolute path every namespace reads. A worker is killed mid-run and every
job still finishes; ``down`` leaves no namespace and no cgroup behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spark_integration import cluster

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bed_runs_a_stream_and_survives_a_lost_worker(tmp_path: Path, real_run: None
                                                            ) -> None:
    prefix = f"pst{os.getpid() % 10000}"  # not the default: a user's cluster may be up
    state, out = tmp_path / "cluster", tmp_path / "run.json"
    data = ROOT / ".cache" / "tpch"
    data.mkdir(parents=True, exist_ok=True)
    info = cluster.up(workers=2, cores=2, memory="2g", state_dir=state, link_mbps=50,
                      prefix=prefix, cpus=0.9)
    groups = [Path(group) for group in info.cpu_groups]
    try:
        assert info.master_url.startswith(f"spark://{cluster.HUB_IP}:")
        assert cluster.alive_workers(info) == 2
        assert [g.name for g in groups] == [f"{info.master_pid}-spark-{i}" for i in range(2)]
        assert all((g / "cpu.cfs_quota_us").read_text().strip() == "18000" for g in groups)
        assert all(int((g / "cgroup.procs").read_text().split()[0]) > 0 for g in groups)
        with pytest.raises(RuntimeError, match="already up"):
            cluster.up(workers=1, state_dir=state)
        # from another directory, so nothing can be found through a relative path
        run = subprocess.Popen(
            ["ip", "netns", "exec", cluster.driver_ns(prefix), sys.executable, "-m",
             "spark_integration.run", "--master", info.master_url, "--executors", "4",
             "--scheduler", "sjf", "--queries", "q6,q14,q12,q3", "--scale", "0.1",
             "--data", str(data), "--json", str(out), "--lean-jvm",
             "--traces", str(ROOT / "data/spark_traces/tpch_sf0.1.json")],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = run.stdout.readline()  # the first finished job: the run is under way
        assert " done, JCT " in first, first + run.stderr.read()[-3000:]
        # the executors were forked inside their worker's group
        assert all(len((g / "cgroup.procs").read_text().split()) >= 2 for g in groups)
        cluster.kill_worker(1, state)
        stdout, stderr = run.communicate(timeout=240)
        assert run.returncode == 0, stdout[-2000:] + stderr[-3000:]
        record = json.loads(out.read_text())
        assert all(j["status"] == "done" for j in record["jobs"])
        assert sum(j["end_s"] > 0 for j in record["jobs"]) == 4
        counts = record["executor_counts"]
        assert (min(counts), max(counts)) == (2, 4)  # the lost worker was noticed, survived
        assert record["spark"]["driver_host"] == cluster.DRIVER_IP
        assert record["spark"]["data"] == str(data.resolve() / "sf0.1")
        assert cluster.alive_workers(info) == 1
    finally:
        pids = cluster.down(state)
    assert info.master_pid in pids
    assert not any(cluster._alive(pid) for pid in pids)
    assert not cluster.state_file(state).exists()
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(line.startswith(f"{prefix}_") for line in listing.splitlines())
    assert not any(group.exists() for group in groups)
