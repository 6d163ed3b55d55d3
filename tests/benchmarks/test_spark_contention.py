"""The contention benchmark's analysis on hand-made records whose answers are known."""

import numpy as np
import pytest

from benchmarks import spark_contention as sc
from envs.spark_dag import Job, Stage, Waves, scale_network

MB = 2**20


def task(host: str, launch_ms: float, finish_ms: float, remote_bytes: float) -> dict:
    return {"executor": "1", "host": host, "launch_ms": launch_ms, "finish_ms": finish_ms,
            "fetch_wait_s": 0.0, "remote_bytes": remote_bytes, "run_s": 0.0}


def record(rate_mbps: float = 8.0) -> dict:
    """Round 0: stage 0 alone (one reducer per link, 1 MB each), then with stage 1 at once."""
    w0, w1 = sc.cluster.worker_ip(0), sc.cluster.worker_ip(1)
    link = {"pscw0h": {"rx": 0, "tx": MB}, "pscw1h": {"rx": 0, "tx": MB}}
    both = {"pscw0h": {"rx": 0, "tx": 2 * MB}, "pscw1h": {"rx": 0, "tx": 2 * MB}}
    runs = [
        {"round": 0, "stage": 0, "concurrency": 2, "alone": True, "wall_s": 1.5,
         "link_bytes": link, "tasks": [task(w0, 0, 1000, MB), task(w1, 0, 1000, MB)]},
        {"round": 0, "stage": 1, "concurrency": 2, "alone": True, "wall_s": 1.5,
         "link_bytes": link, "tasks": [task(w0, 0, 1000, MB), task(w1, 0, 1000, MB)]},
        {"round": 0, "stage": 0, "concurrency": 2, "alone": False, "wall_s": 2.5,
         "link_bytes": both, "tasks": [task(w0, 0, 2000, MB), task(w1, 0, 2000, MB)]},
        {"round": 0, "stage": 1, "concurrency": 2, "alone": False, "wall_s": 2.5,
         "link_bytes": both, "tasks": [task(w0, 0, 2000, MB), task(w1, 0, 2000, MB)]},
    ]
    return {"rate_mbps": rate_mbps, "stage_mb": 4.0, "runs": runs}


def test_ratios_and_goodput_come_from_the_record():
    data = record()
    ratios = sc.stage_ratios(data)
    assert [r["ratio"] for r in ratios] == pytest.approx([2.5 / 1.5, 2.5 / 1.5])
    links = sc.link_goodput(data, sc.worker_hosts(data))
    # alone: 1 MB over 1 s on each link; together: 2 MB over 2 s, two reducers per link
    alone = [r for r in links if r["alone"]]
    shared = [r for r in links if not r["alone"]]
    assert len(alone) == 4 and len(shared) == 2
    assert all(r["goodput_mbps"] == pytest.approx(8 * MB / 1e6) for r in links)
    assert {r["reducers"] for r in shared} == {2}


def test_the_simulated_fetch_follows_the_law():
    data = record(rate_mbps=8.0)
    alone, shared = data["runs"][0], data["runs"][2:]
    link_bytes_s = 8.0 * 1e6 / 8
    # alone: each reducer has its own link at full efficiency: fixed + bytes / rate
    (one,) = sc.simulate_group([alone], 8.0, (1.0, 1.0, 0.5, 0.0))
    assert one == pytest.approx(0.5 + MB / link_bytes_s)
    # two stages at once, work-conserving: four flows on two links take twice as long
    two = sc.simulate_group(shared, 8.0, (1.0, 1.0, 0.5, 0.0))
    assert two == pytest.approx([0.5 + 2 * MB / link_bytes_s] * 2)
    # a per-flow overhead beta slows four shared flows by 1 + 3 beta
    slow = sc.simulate_group(shared, 8.0, (1.0, 1.0, 0.5, 0.5))
    assert slow == pytest.approx([0.5 + 2 * 2.5 * MB / link_bytes_s] * 2)


def test_a_law_is_fitted_on_some_rounds_and_scored_on_others():
    data = record()
    data["runs"] += [dict(r, round=1) for r in data["runs"]]
    fit, score = sc.split_rounds([data], quick=False)
    assert fit == {(8.0, 0)} and score == {(8.0, 1)}
    errors = sc.relative_errors([data], score, (1.0, 1.0, 0.5, 0.0))
    assert errors.size == 4 and np.all(np.isfinite(errors))


def test_scale_network_stretches_only_network_time():
    waves = {2: Waves(first_wave=(2.0,), rest_wave=(2.0,), fresh=(3.0,), network_fraction=0.5)}
    job = Job("j", 0.0, [Stage(0, (), 2, network_s=1.0, compute_s=1.0, waves=waves)])
    (slow,) = scale_network([job], 3.0)
    stage = slow.stages[0]
    np.testing.assert_allclose(stage.network_s, 3.0)
    np.testing.assert_allclose(stage.compute_s, 1.0)
    # a 2 s task with half its time on the network: 1 + 3 * 1 = 4 s, 3/4 of it network
    assert stage.waves[2].first_wave == pytest.approx((4.0,))
    assert stage.waves[2].network_fraction == pytest.approx(0.75)
