"""A standalone cluster on loopback: up, a run that loses a worker, down."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from spark_integration import cluster


@pytest.mark.slow
def test_standalone_up_run_lose_worker_down(tmp_path) -> None:
    state = tmp_path / "cluster"
    info = cluster.up(workers=2, cores=1, memory="1g", state_dir=state)
    try:
        assert info.master_url.startswith("spark://127.0.0.1:")
        assert cluster.alive_workers(info) == 2
        with pytest.raises(RuntimeError, match="already up"):
            cluster.up(workers=1, state_dir=state)
        out = tmp_path / "run.json"
        run = subprocess.run(
            [sys.executable, "-m", "spark_integration.run", "--master", info.master_url,
             "--executors", "2", "--scheduler", "sjf", "--queries", "q6,q14",
             "--scale", "0.1", "--kill-worker", "1", "--kill-after", "2",
             "--cluster-state-dir", str(state), "--json", str(out), "--lean-jvm"],
            capture_output=True, text=True, timeout=200)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
        record = json.loads(out.read_text())
        assert all(j["status"] == "done" for j in record["jobs"])
        assert 1 in record["executor_counts"]  # the lost worker was noticed and survived
        assert cluster.alive_workers(info) == 1
    finally:
        pids = cluster.down(state)
    assert info.master_pid in pids
    assert not any(cluster._alive(pid) for pid in pids)
    assert not cluster.state_file(state).exists()
