"""Live offloading on loopback: token-bucket uplink, correctness, re-planning, server death."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from device_bridge import client as client_module
from device_bridge import protocol
from device_bridge.client import OffloadClient, parse_jobs
from device_bridge.server import OffloadServer
from envs.offload import Plan

from .conftest import TOKEN

REPO = Path(__file__).resolve().parents[2]


def _check_results(client: OffloadClient, result) -> None:
    """Every job's output equals the full model run locally on the same input."""
    for job in result.jobs:
        split = client.splits[job.model]
        expected = split.run_range(0, split.num_segments, job.input)
        torch.testing.assert_close(job.output, expected, rtol=1e-4, atol=1e-5,
                                   msg=f"{job.name} (cut {job.cut}, {job.where})")


def _all_server(instance) -> Plan:
    return Plan(tuple((j, 0) for j in range(instance.num_jobs)))


def test_parse_jobs_and_bad_specs():
    assert parse_jobs("alexnet:2,resnet18") == [
        ("alexnet-0", "alexnet"), ("alexnet-1", "alexnet"), ("resnet18-0", "resnet18")]
    with pytest.raises(ValueError, match="unknown model 'lenet'"):
        parse_jobs("lenet:3")
    with pytest.raises(ValueError, match="count for alexnet must be >= 1"):
        parse_jobs("alexnet:0")
    with pytest.raises(ValueError, match="neither a heuristic"):
        client_module.make_planner("fastest")


def test_cli_live_run_with_token_bucket(server, token_file, tmp_path):
    out = tmp_path / "run.json"
    with pytest.raises(SystemExit) as exit_info:
        client_module.main([
            "--server", f"127.0.0.1:{server.port}", "--jobs", "alexnet:2,mobilenet_v2:2",
            "--scheduler", "joint", "--bandwidth-mbps", "20", "--token-file", str(token_file),
            "--json", str(out), "--quiet"])
    assert exit_info.value.code == 0
    document = json.loads(out.read_text())
    assert document["makespan_s"] > 0 and document["predicted_makespan_s"] > 0
    assert sorted(job["name"] for job in document["jobs"]) == [
        "alexnet-0", "alexnet-1", "mobilenet_v2-0", "mobilenet_v2-1"]
    # the compute thread's CPU time never exceeds its wall time (a little clock granularity)
    assert all(0 <= job["device_cpu_s"] <= job["device_s"] + 0.005 for job in document["jobs"])
    summary = document["summary"]
    assert summary["jobs"] == 4 and summary["fallback"] == 0 and summary["fallback_reasons"] == {}
    assert summary["server"] + summary["local_planned"] == 4
    for job in document["jobs"]:
        assert job["fallback"] is False and job["reason"] is None
        assert job["where"] in ("server", "local")
        assert 0 < job["latency_s"] <= document["makespan_s"] + 1e-9
        assert 0 <= job["cut"] <= len(document["instance"]["jobs"][0]["layers"]) + 60


def test_token_bucket_paces_uploads_and_results_are_exact(server):
    rate_mbps = 8.0
    client = OffloadClient(("127.0.0.1", server.port), TOKEN, ["alexnet"], rate_mbps,
                           latency_s=0.01, calibrate=False)
    try:
        result = client.run(parse_jobs("alexnet:3"), _all_server)
    finally:
        client.close()
    _check_results(client, result)
    assert all(job.where == "server" and job.cut == 0 for job in result.jobs)
    wire_bytes = sum(job.bytes_sent for job in result.jobs)
    assert wire_bytes >= 3 * 602112
    # the uplink cannot beat its rate: three inputs take at least 3 x (10 ms + 0.6 s)
    assert result.makespan_s >= 3 * 0.01 + 8 * wire_bytes / (rate_mbps * 1e6)
    assert 0.5 * rate_mbps < client.measured_bandwidth_mbps < 1.5 * rate_mbps


def test_fp16_uploads_halve_the_bytes(server):
    client = OffloadClient(("127.0.0.1", server.port), TOKEN, ["resnet18"], 50.0,
                           latency_s=0.0, fp16=True, calibrate=False)
    try:
        result = client.run(parse_jobs("resnet18:2"),
                            lambda instance: Plan(((0, 4), (1, 9))))
    finally:
        client.close()
    split = client.splits["resnet18"]
    assert [job.bytes_sent for job in result.jobs] == [
        70 + split.boundary_bytes(cut) // 2 + protocol.TAG_BYTES for cut in (4, 9)]
    for job in result.jobs:
        torch.testing.assert_close(job.output, split.run_range(0, split.num_segments,
                                                                job.input),
                                   rtol=2e-2, atol=2e-2)


def test_drifting_bandwidth_triggers_a_replan(server):
    client = OffloadClient(("127.0.0.1", server.port), TOKEN, ["mobilenet_v2"], 10.0,
                           latency_s=0.0, calibrate=False)
    jobs = parse_jobs("mobilenet_v2:6")
    wrong = client.plan_instance(jobs).with_bandwidth(1000.0)  # the plan believes in 1 Gbit/s
    try:
        result = client.run(jobs, _all_server, instance=wrong)
    finally:
        client.close()
    assert result.replans >= 1
    _check_results(client, result)


def _start_server_process(token_file, port: int = 0) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "device_bridge.server", "--models", "alexnet,resnet18",
         "--port", str(port), "--token-file", str(token_file), "--threads", "1",
         "--log-level", "WARNING"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()  # blocks until the models are loaded
    assert line.startswith("listening on"), line
    return process, int(line.split()[2].rsplit(":", 1)[1])


def test_server_killed_mid_batch_then_client_falls_back_and_reconnects(token_file):
    process, port = _start_server_process(token_file)
    try:
        client = OffloadClient(("127.0.0.1", port), TOKEN, ["alexnet", "resnet18"], 30.0,
                               latency_s=0.0, calibrate=False, reconnect_interval_s=0.2)
        killed = []

        def kill_after_first_result(done: int) -> None:
            if done >= 1 and not killed:
                os.kill(process.pid, signal.SIGKILL)
                killed.append(time.perf_counter())

        jobs = parse_jobs("alexnet:4,resnet18:4")
        result = client.run(jobs, _all_server, progress=kill_after_first_result)
    finally:
        process.kill()
        process.wait()
    assert killed
    where = [job.where for job in result.jobs]
    assert "server" in where and "local" in where
    assert all(job.output is not None for job in result.jobs)
    for job in result.jobs:
        if job.where == "local":
            assert job.planned_cut == 0 and job.cut == client.splits[job.model].num_segments
            assert job.fallback and job.reason.startswith(
                ("server connection lost", "server unavailable"))
    summary = result.summary()
    assert summary["fallback"] == where.count("local") and summary["local_planned"] == 0
    assert any(reason.startswith("server connection lost")
               for reason in summary["fallback_reasons"])
    _check_results(client, result)

    # the server comes back on the same port: the next batch is offloaded again
    with OffloadServer(["alexnet", "resnet18"], TOKEN, port=port, device="cpu"):
        again = client.run(parse_jobs("alexnet:2"), _all_server)
    client.close()
    assert [job.where for job in again.jobs] == ["server", "server"]
    _check_results(client, again)


def test_no_server_at_all_runs_everything_locally():
    client = OffloadClient(("127.0.0.1", 9), TOKEN, ["alexnet"], 5.0, calibrate=False)
    result = client.run(parse_jobs("alexnet:2"), _all_server)
    assert [job.where for job in result.jobs] == ["local", "local"]
    assert all(job.fallback and job.reason.startswith("server unavailable")
               for job in result.jobs)
    _check_results(client, result)


def test_device_profiled_in_place_drives_the_plan_instance(server):
    from device_bridge.live_instance import profile_device

    client = OffloadClient(("127.0.0.1", server.port), TOKEN, ["alexnet"], 50.0, 0.001,
                           threads=1, profile_repetitions=2)
    try:
        profile = client.device_profiles["alexnet"]
        split = client.splits["alexnet"]
        assert torch.get_num_threads() == 1 and profile["provenance"]["threads"] == 1
        assert len(profile["layers"]) == split.num_segments
        assert [layer["output_bytes"] for layer in profile["layers"]] == [
            split.boundary_bytes(cut) for cut in range(1, split.num_segments + 1)]
        whole_s = profile["provenance"]["whole_model_median_s"]
        assert sum(layer["device_s"] for layer in profile["layers"]) == pytest.approx(whole_s)
        job = client.plan_instance([("alexnet-0", "alexnet")]).jobs[0]
        assert job.device_prefix_s[-1] == pytest.approx(whole_s)
        # the server's reported whole-model time sets the server side of the same instance
        server_whole_s = server.models["alexnet"].whole_model_s
        assert job.server_suffix_s[0] == pytest.approx(server_whole_s, rel=1e-6)
    finally:
        client.close()
    with pytest.raises(ValueError, match="repetitions >= 1"):
        profile_device({"alexnet": split}, repetitions=0)
