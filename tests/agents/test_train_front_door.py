"""``train_agents.py train --env ID`` trains each problem with the ``algo:`` of its entry (tiny
budgets here), writes the model, its record (whose command is the one that made it) and a
learning-curve PNG, and the model loads as the problem table's shipped agent does; a bad algo
or key is one line; the old trainer commands print the new one."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from agents.algos.cmaes import CmaesProblem, search
from agents.config import load_config_with_overrides
from envs import PROBLEMS
from train_agents import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def train(env_id: str, options: list[str], out: Path) -> Path:
    """Runs the front door; returns the run's folder after checking the record's command."""
    argv = ["train", "--env", env_id, "--seed", "0", *options, "--out", str(out)]
    assert main(argv) == 0
    return out / env_id.replace("/", "_") / "seed0"


def check_record(record: dict, env_id: str, algo: str, options: list[str], out: Path) -> None:
    assert record["env_id"] == env_id and record["algo"] == algo
    assert record["interrupted"] is False
    assert shlex.split(record["command"]) == [
        "python", "train_agents.py", "train", "--env", env_id, "--seed", "0", *options,
        "--out", str(out)]


def check_png(path: Path) -> None:
    image = plt.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) >= 100


def test_offload_trains_maskable_ppo(tmp_path: Path) -> None:
    from agents import load_scheduler

    env_id = PROBLEMS["offload"].env_id
    # the warm-up is tested in tests/offload/test_agent.py
    options = ["--set", "ppo.n_steps=64", "--set", "ppo.batch_size=32", "--set", "ppo.n_epochs=2",
               "--set", "pretrain=null", "--set", "maskable_ppo.validation_episodes=0",
               "--budget", "192"]
    run_dir = train(env_id, options, tmp_path)
    record = json.loads((run_dir / "model.json").read_text())
    check_record(record, env_id, "maskable_ppo", options, tmp_path)
    assert record["timesteps"] == 192 and record["config_entry"]["ppo"]["n_steps"] == 64
    assert len(record["learning_curve"]) == 3  # one point per rollout of 64 steps
    check_png(run_dir / "model.png")
    scheduler = PROBLEMS["offload"].load("agent_loader")(str(run_dir / "model.zip"))
    assert scheduler.model.num_timesteps == 192
    assert load_scheduler(str(run_dir / "model.zip")).model.num_timesteps == 192


@pytest.mark.parametrize("problem, options", [
    ("hetero_pipeline", ["--set", "listwise.train=3", "--set", "listwise.validation=2",
                         "--set", "listwise.dagger=2", "--set", "listwise.eval_every=5",
                         "--budget", "10"]),
    # labelling refines every partition candidate: about 10 s per small instance
    ("param_server", ["--set", "listwise.train=1", "--set", "listwise.validation=1",
                      "--set", "listwise.eval_every=5", "--budget", "10"]),
])
def test_rankers_train_listwise(problem: str, options: list[str], tmp_path: Path) -> None:
    table = PROBLEMS[problem]
    if problem == "param_server":
        # the record writes --set keys before --budget, as given here
        options = [*options[:-2], "--set", f"listwise.labels={tmp_path / 'labels'}",
                   *options[-2:]]
    run_dir = train(table.env_id, options, tmp_path)
    path = run_dir / "model.ranker.json"
    record = json.loads(path.read_text())
    check_record(record, table.env_id, "listwise", options, tmp_path)
    dagger = 2 if problem == "hetero_pipeline" else 1
    assert record["steps"] == 10 * dagger and record["validation_curve"][-1]["step"] == 10 * dagger
    check_png(run_dir / record["learning_curve_png"])
    agent = table.load("agent_loader")(path)
    assert agent.weights.tolist() == record["weights"] and agent.top_k == record["top_k"]


SPARK_OPTIONS = ["--set", "cmaes.kinds=[live]",
                 "--set", "cmaes.real_traces=[tpch_sf1_local_e1-2.json]",
                 "--set", "cmaes.init=shortest_work_x2", "--set", "cmaes.population=4",
                 "--set", "cmaes.train_workloads=2", "--set", "cmaes.validation_workloads=2",
                 "--set", "cmaes.validate_every=1", "--set", "cmaes.workers=1",
                 "--set", "cmaes.trace_load_min=1.0", "--set", "cmaes.trace_load_max=1.5",
                 "--budget", "2"]


def test_spark_trains_cmaes(tmp_path: Path) -> None:
    table = PROBLEMS["spark_dag"]
    run_dir = train(table.env_id, SPARK_OPTIONS, tmp_path)
    record = json.loads((run_dir / "policy.json").read_text())["training"]
    check_record(record, table.env_id, "cmaes", SPARK_OPTIONS, tmp_path)
    assert [h["generation"] for h in record["history"]] == [0, 1, 2]
    assert record["kinds"] == ["live"] and record["episodes"] == 2 * 5 * 2
    check_png(run_dir / "policy.png")
    policy = table.load("agent_loader")(run_dir / "policy.json", executors=2)
    assert policy.shapes["executors"] == [2]


@pytest.mark.parametrize("argv, text", [
    (["--set", "algo=ppo"], "algo 'ppo' is not one of maskable_ppo, listwise, cmaes"),
    (["--set", "cmaes.populaton=4"], "--set: pipesched/SparkDagShop-v0: unknown key "
                                     "cmaes.populaton (known in cmaes: decima_tpch,"),
    (["--set", "cmaes.population=four"], "cmaes.population must be an integer, got 'four'"),
    (["--set", "cmaes.kinds=[decima]", "--budget", "1"],
     "kind 'decima' has no data; give cmaes.decima_tpch=DIR"),
    (["--set", "algo=listwise"], "algo listwise has no recipe for pipesched/SparkDagShop-v0"),
    (["--set", "population"], "--set population: expected KEY=VALUE"),
    (["--engine", "spark", "--master", "local[1]"], "--engine spark collects maskable_ppo's"),
])
def test_a_bad_algo_or_key_is_one_line(argv: list[str], text: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    code = main(["train", "--env", PROBLEMS["spark_dag"].env_id, *argv, "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and text in err, err
    assert not list(tmp_path.iterdir())


def test_a_bad_key_in_a_config_file_names_the_file_and_dotted_key(tmp_path: Path) -> None:
    env_id = PROBLEMS["param_server"].env_id
    path = tmp_path / "mine.yaml"
    path.write_text(f"{env_id}:\n  listwise: {{dagger: 2}}\n")
    with pytest.raises(ValueError, match=f"^{path}: {env_id}: unknown key listwise.dagger "):
        load_config_with_overrides(env_id, path)


@pytest.mark.parametrize("module, argv, expected", [
    ("agents.train_param_server", ["--train", "36", "--steps", "400", "--seed", "0"],
     "--env pipesched/ParamServer-v0 --set listwise.train=36 --set listwise.steps=400 "
     "--seed 0"),
    ("agents.hetero_pipeline.train", ["--top-k", "6", "--out", "x.json"],
     "--env pipesched/HeteroPipeline-v0 --set listwise.top_k=6"),
    ("agents.train_spark_dag", ["--kinds", "live", "--real-traces", "a.json,b.json"],
     "--env pipesched/SparkDagShop-v0 --set 'cmaes.kinds=[live]' "
     "--set 'cmaes.real_traces=[a.json,b.json]'"),
    # the old default trained on Decima's traces too; the entry leaves them out
    ("agents.spark_dag.train", ["--decima-tpch", "DIR"],
     "--set cmaes.decima_tpch=DIR --set 'cmaes.kinds=[synthetic,decima,real,batch]'"),
])
def test_an_old_trainer_command_prints_the_new_one(module: str, argv: list[str],
                                                   expected: str) -> None:
    done = subprocess.run([sys.executable, "-m", module, *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    line = done.stderr.strip()
    assert done.returncode == 2 and len(line.splitlines()) == 1, done.stderr
    assert line.startswith(f"python -m {module} is replaced by: python train_agents.py train ")
    assert expected in line
    # the printed command parses and its keys pass the entry's schema
    new = build_parser().parse_args(shlex.split(line.partition(": ")[2])[2:])
    if "decima" not in line:
        load_config_with_overrides(new.env, None, new.sets, new.budget)


def sphere(candidate: np.ndarray, shift: float) -> float:
    return float(np.sum((candidate - shift) ** 2))


def test_cmaes_is_generic_and_ctrl_c_keeps_the_best_validated_point() -> None:
    def training_round(generation: int) -> float:
        if generation == 4:
            raise KeyboardInterrupt
        return 1.0

    problem = CmaesProblem(start=np.zeros(3), stds=np.ones(3), score=sphere,
                           training_round=training_round,
                           validate=lambda params: sphere(params, 1.0),
                           save=lambda params, record: Path("unused"), name="loss",
                           ylabel="", title="")
    outcome = search(problem, generations=10, population=6, sigma=0.5, validate_every=1,
                     workers=1, seed=0, say=lambda text: None)
    assert outcome.interrupted and outcome.generations == 3
    assert [h["generation"] for h in outcome.history] == [0, 1, 2, 3]
    scores = [h["validation_loss"] for h in outcome.history]
    assert outcome.best_score == min(scores) < scores[0] == 3.0
    assert sphere(outcome.best, 1.0) == outcome.best_score
