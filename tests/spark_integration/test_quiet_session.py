"""A Spark session starts quietly: the first line a user sees is the project's own, and the
JVM's log level is a setting (``PIPESCHED_SPARK_LOG_LEVEL``), not a blanket filter."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spark_integration.session import LOG_LEVEL_ENV, log4j_file, resolve_log_level

ROOT = Path(__file__).resolve().parents[2]
START = ("from spark_integration.session import build_session\n"
         "spark = build_session('local[1]', scheduler_mode='FIFO', lean_jvm=True)\n"
         "print('pipesched: session up', flush=True)\n"
         "assert spark.range(5).count() == 5\n"
         "spark.stop()\n")


def _start(level: str) -> list[str]:
    env = {**os.environ, LOG_LEVEL_ENV: level}
    done = subprocess.run([sys.executable, "-c", START], cwd=ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    assert done.returncode == 0, done.stdout
    return done.stdout.splitlines()


def test_default_start_prints_only_the_projects_line():
    assert _start("") == ["pipesched: session up"]


def test_a_chattier_level_lets_the_jvm_speak():
    lines = _start("info")
    assert any(" INFO SparkContext: " in line for line in lines)
    assert not any(line.startswith("WARNING: Using incubator modules") for line in lines)


def test_log_level_is_validated(monkeypatch):
    monkeypatch.setenv(LOG_LEVEL_ENV, "loud")
    with pytest.raises(ValueError, match=f"{LOG_LEVEL_ENV}: unknown Spark log level 'loud'"):
        resolve_log_level()
    assert resolve_log_level("warning") == "WARN"
    monkeypatch.delenv(LOG_LEVEL_ENV)
    assert resolve_log_level() == "WARN"


def test_log4j_file_sets_root_and_gateway_levels(tmp_path):
    text = log4j_file("DEBUG", tmp_path).read_text()
    assert "rootLogger.level = debug" in text and "logger.shell.level = debug" in text
