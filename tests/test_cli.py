"""The command lines answer user mistakes in one line before anything heavy starts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents.algos.imitation import scale_pretrain
from agents.config import load_config_with_overrides
from train_agents import main

ROOT = Path(__file__).resolve().parents[1]
OFFLOAD = "pipesched/DnnOffload-v0"


def _one_line_error(capsys: pytest.CaptureFixture, code: int | None, text: str) -> None:
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and text in err, err


def test_help_does_not_import_torch() -> None:
    probe = ("import sys; from train_agents import build_parser; build_parser(); "
             "print(any(m in sys.modules for m in ('torch', 'stable_baselines3')))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("argv, text", [
    (["evaluate", "--model", "runs/nope/model.zip"], "model not found: runs/nope/model.zip"),
    (["evaluate", "--model", str(ROOT / "models/spark_dag_policy.json")], "Spark graph policy"),
    (["evaluate", "--env", "pipesched/ParamServer-v0", "--model",
      str(ROOT / "models/offload_agent.zip")], "trained for another env"),
    (["compare", "--env", "pipesched/HeteroPipeline-v0", "--model", "x=models/nope.zip"],
     "model not found"),
    (["train", "--config", "no/such.yaml"], "config file not found: no/such.yaml"),
    (["train", "--set", "pretrain=null", "--set", "maskable_ppo.warmup_episodes=3"],
     "maskable_ppo.warmup_episodes needs a pretrain block"),
    (["train", "--master", "local[2]"], "--master is for --engine spark"),
    # a ValueError of the Spark settings (it was a traceback before train_agents used guarded)
    (["evaluate", "--engine", "spark", "--master", "spark://host:abc", "--model",
      str(ROOT / "models/offload_agent.zip")], "expected spark://HOST:PORT"),
])
def test_user_mistakes_are_one_line(argv: list[str], text: str,
                                    capsys: pytest.CaptureFixture) -> None:
    _one_line_error(capsys, main(argv), text)


def test_bad_numbers_are_refused_by_the_parser(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--timesteps", "0"])
    _one_line_error(capsys, exit_info.value.code, "expected a positive integer, got 0")


def test_config_merges_into_the_shipped_entry(tmp_path: Path) -> None:
    partial = tmp_path / "partial.yaml"
    partial.write_text(f"{OFFLOAD}:\n  ppo: {{learning_rate: 0.001}}\n")
    shipped, _ = load_config_with_overrides(OFFLOAD)
    merged, changed = load_config_with_overrides(OFFLOAD, partial)
    assert changed == ["ppo.learning_rate"]
    assert merged.ppo == {**shipped.ppo, "learning_rate": 0.001}
    assert (merged.policy, merged.policy_kwargs, merged.pretrain) == (
        shipped.policy, shipped.policy_kwargs, shipped.pretrain)


def test_warmup_scales_with_the_timesteps() -> None:
    recipe = load_config_with_overrides(OFFLOAD)[0].pretrain
    assert scale_pretrain(recipe, recipe["recipe_timesteps"]) == recipe
    short = scale_pretrain(recipe, 2048)
    assert short["instances"] < 50 and short["dagger_rounds"] == 0
    assert scale_pretrain(recipe, 2048, episodes=7)["instances"] == 7


@pytest.mark.parametrize("env_id", ["pipesched/ParamServer-v0", "pipesched/SparkDagShop-v0"])
def test_compare_runs_for_other_envs(env_id: str, tmp_path: Path) -> None:
    assert main(["compare", "--env", env_id, "--instances", "1", "--out", str(tmp_path)]) == 0
    payload = json.loads(next(tmp_path.glob("compare_*.json")).read_text())
    names = {row["scheduler"] for row in payload["rows"]}
    assert "agent_shipped" in names and len(names) >= 4
    heuristic_ratios = [row["mean_ratio"] for row in payload["rows"]
                        if row["scheduler"] != "agent_shipped"]
    assert min(heuristic_ratios) == pytest.approx(1.0)  # the agent may beat the best one
    assert list(tmp_path.glob("compare_*.png"))
    assert (tmp_path / payload["gantt"]["png"]).stat().st_size > 0
    assert all(chart["keys"] and chart["rows"] for chart in payload["gantt"]["charts"])


def test_ctrl_c_during_training_saves_the_model(tmp_path: Path) -> None:
    # a suite started as a background job inherits SIGINT ignored; the trainer under test
    # gets the default disposition, as when run from a terminal
    process = subprocess.Popen(
        [sys.executable, "train_agents.py", "train", "--set", "pretrain=null", "--budget",
         "1000000", "--out", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in process.stdout:
            if "training" in line:
                break
        time.sleep(2.0)  # let learn() start its loop: the Ctrl-C under test lands mid-training
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:  # never leave a trainer running behind a failed test
            process.kill()
            process.communicate()
    assert process.returncode == 130
    assert err.strip().startswith("interrupted after") and len(err.strip().splitlines()) == 1
    [model] = tmp_path.rglob("model.zip")
    record = json.loads(model.with_suffix(".json").read_text())
    assert record["interrupted"] is True and 0 < record["timesteps"] < 1000000


def test_bridges_refuse_to_overwrite_shipped_data(capsys: pytest.CaptureFixture) -> None:
    from spark_integration.tracegen import main as tracegen

    assert tracegen(["--out", str(ROOT / "data/spark_traces/tpch_sf0.1.json")]) == 2
    assert "shipped data" in capsys.readouterr().err
    from device_bridge.profiler import main as profiler

    with pytest.raises(SystemExit) as exit_info:
        profiler(["--model", "resnet18", "--out", str(ROOT / "data/profiles")])
    assert exit_info.value.code == 2 and "--force" in capsys.readouterr().err


def test_partial_trace_keeps_the_other_queries(tmp_path: Path) -> None:
    from spark_integration.tracegen import merge_trace

    previous = {"jobs": [{"name": "t/q1"}, {"name": "t/q3"}], "calibration": {"q1": 1, "q3": 1},
                "source": {"scale_factor": 0.1}}
    fresh = {"jobs": [{"name": "t/q3", "new": True}], "calibration": {"q3": 2},
             "source": {"scale_factor": 0.1}}
    merged = merge_trace(previous, fresh, tmp_path / "t.json")
    assert merged["jobs"] == [{"name": "t/q1"}, {"name": "t/q3", "new": True}]
    assert merged["calibration"] == {"q1": 1, "q3": 2}


@pytest.mark.parametrize("module, argv, text", [
    ("benchmarks.ps_real", ["--machines", "0"], "--machines must be >= 2"),
    ("benchmarks.pipeline_real", ["--iterations", "1"], "--iterations must be >= 2"),
    ("spark_integration.run", ["--master", "spark://127.0.0.1:9", "--executors", "2"],
     "cannot reach the Spark master"),
    ("spark_integration.run", ["--scheduler", str(ROOT / "models/offload_agent.zip")],
     "trained for another env"),
])
def test_bridge_mistakes_are_one_line(module: str, argv: list[str], text: str,
                                      capsys: pytest.CaptureFixture) -> None:
    import importlib

    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as exit_info:
            importlib.import_module(module).main(argv)
    finally:
        signal.signal(signal.SIGINT, handler)
    _one_line_error(capsys, exit_info.value.code, text)


def test_client_refuses_a_model_of_another_env() -> None:
    from device_bridge.client import make_planner

    with pytest.raises(ValueError, match="trained for another env"):
        make_planner(str(ROOT / "models/param_server_agent.zip"))


@pytest.mark.parametrize("argv, text", [
    (["--seeds", "0"], "must be at least 1, got 0"),   # was silently 16
    (["--engines", "local[*]"], "--engines: unknown"),  # was a ValueError traceback
])
def test_runner_benchmark_refuses_bad_input(argv: list[str], text: str,
                                            capsys: pytest.CaptureFixture) -> None:
    from benchmarks.runner import main as runner_main

    with pytest.raises(SystemExit) as exit_info:
        runner_main(argv)
    assert exit_info.value.code == 2 and text in capsys.readouterr().err
