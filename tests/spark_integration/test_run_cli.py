"""``python -m spark_integration.run``: the mistakes a user makes end in one line before any
JVM starts; Ctrl-C in the middle of a run leaves no JVM behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from spark_integration.run import main
from spark_integration.tpch_sql import STATEMENTS
from spark_integration.tracegen import default_trace_path

ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("argv, text", [
    (["--master", "spark://127.0.0.1:{port}", "--executors", "2"],
     "cannot reach the Spark master spark://127.0.0.1:{port}"),
    (["--data", "/no/such/tpch"], "--data: /no/such/tpch does not exist"),
    (["--conf", "spark.executor.memory"], "--conf: expected KEY=VALUE"),
    (["--queries", "q6,q99"], "--queries: unknown ['q99']"),
    (["--master", "yarn", "--executors", "2"], "needs HADOOP_CONF_DIR or YARN_CONF_DIR"),
    (["--log-level", "loud"], "--log-level: unknown Spark log level 'loud'"),
    (["--sql-file", "/no/such.sql"], "/no/such.sql: cannot read SQL file"),
    (["--traces", "/no/such/trace.json"], "--traces: /no/such/trace.json does not exist"),
    (["--traces", "{q6_only}", "--queries", "q6,q14,q3"],
     "--traces: {q6_only} has no template for ['q14', 'q3']; record them with python -m "
     "spark_integration.tracegen --scale 0.1 --queries q14,q3 --out FILE"),
])
def test_mistakes_are_one_line(argv: list[str], text: str, capsys: pytest.CaptureFixture,
                               monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    port = _closed_port()
    q6_only = tmp_path / "q6_only.json"
    trace = json.loads((ROOT / "data/spark_traces/tpch_sf0.1.json").read_text())
    trace["jobs"] = [job for job in trace["jobs"] if job["name"].endswith("/q6")]
    q6_only.write_text(json.dumps(trace))
    fill = {"port": port, "q6_only": q6_only}
    monkeypatch.delenv("HADOOP_CONF_DIR", raising=False)
    monkeypatch.delenv("YARN_CONF_DIR", raising=False)
    handler = signal.getsignal(signal.SIGINT)
    started = time.monotonic()
    try:
        with pytest.raises(SystemExit) as exit_info:
            main([a.format(**fill) for a in argv])
    finally:
        signal.signal(signal.SIGINT, handler)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and text.format(**fill) in err, err
    assert time.monotonic() - started < 30


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_text():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.mark.parametrize("mode", ["dag", "sql-file"])
def test_ctrl_c_mid_run_leaves_no_jvm(tmp_path: Path, mode: str) -> None:
    """The DAG executor and the PolicyScheduler (the user's own SQL) alike."""
    marker = f"spark.pipesched.test={uuid.uuid4().hex}"
    queries = ["q6", "q14", "q3", "q12"]
    jobs = ["--queries", ",".join(queries)]
    if mode == "sql-file":
        sql_file = tmp_path / "mine.sql"
        sql_file.write_text("".join(f"-- name: {q}\n{STATEMENTS[q]};\n" for q in queries))
        jobs = ["--sql-file", str(sql_file)]
    run = subprocess.Popen(
        [sys.executable, "-m", "spark_integration.run", "--master", "local[1]", "--scheduler",
         "sjf", *jobs, "--lean-jvm", "--conf", marker, "--json", str(tmp_path / "run.json")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = run.stdout.readline()
        assert " done, JCT " in first, first + run.stderr.read()[-2000:]
        assert _processes_with(marker), "the driver JVM should be running"
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130
    *before, last = stderr.splitlines()
    assert last == "python -m spark_integration.run: interrupted; nothing written"
    # the one visible warning of a first run: no history yet for the work estimates
    assert all(line.startswith("no run recorded yet") for line in before), stderr
    assert not (tmp_path / "run.json").exists()
    deadline = time.monotonic() + 5
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(marker) == []


def test_a_master_that_never_answers_ends_in_one_line(tmp_path: Path) -> None:
    """TCP accepts, nothing speaks Spark: the start is given up after --start-timeout."""
    marker = f"spark.pipesched.test={uuid.uuid4().hex}"
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"spark://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "spark_integration.run", "--master", url, "--executors",
             "2", "--queries", "q6", "--start-timeout", "4", "--lean-jvm", "--conf", marker],
            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr == (f"python -m spark_integration.run: error: the Spark master {url} did "
                          f"not accept this application within 4 s (is it a Spark master?)\n")
    assert time.monotonic() - started < 30
    assert _processes_with(marker) == []


def test_a_scale_without_a_trace_is_calibrated_in_the_session(tmp_path: Path) -> None:
    """Scale 0.01 ships no trace: the session times the queries alone first and sjf observes
    those templates, not made-up work."""
    (tmp_path / "tpch").mkdir()  # tables are generated under it
    run = subprocess.run(
        [sys.executable, "-m", "spark_integration.run", "--master", "local[2]", "--scheduler",
         "sjf", "--queries", "q6,q14", "--scale", "0.01", "--data", str(tmp_path / "tpch"),
         "--lean-jvm", "--json", str(tmp_path / "run.json")],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert not default_trace_path(0.01).exists()
    assert (f"no trace at {default_trace_path(0.01)} covers ['q14', 'q6']: timing each query "
            f"alone on 2 executors in this session first") in run.stderr
    assert "note:" not in run.stderr
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["spark"]["templates"] == "calibrated in this session"
    assert (record["jobs_finished"], record["jobs_failed"]) == (2, 0)
    assert "sjf: 2/2 jobs finished, 0 failed, mean JCT of the finished" in run.stdout
