"""Pipesched's schedulers inside the real reference simulators (``benchmarks/reference_adapter.py``
through the drivers). They need the user's checkouts, which are not shipped: each test skips,
saying which variables to set, when they are absent.

The mapping is checked against each reference's own rules. Decision by decision: at every
decision of the reference's own ``fair`` episode, the state's schedulable rows are the
reference's, decima-sim's remaining work per node is its ``get_node_duration``, and the
reference's choice, said as a pipesched ``Decision`` (its stage, the job-level limit its rule
uses: the source job's executors back to it, else the fair cap), maps back to exactly the
reference's own action. Episode by episode: pipesched's ``fifo`` takes the same decisions as
spark-sched-sim's FIFO, so inside it ``heuristic:fifo`` must give exactly its ``fifo``
episode; decima-sim orders a job's frontier by when stages became runnable and pipesched by
stage id, so there ``fair`` and ``fifo`` only have to come close.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.spark_reference import run_reference, sequences

TPCH = os.environ.get("DECIMA_TPCH")
CHECKOUTS = {"decima-sim": os.environ.get("DECIMA_SIM"),
             "spark-sched-sim": os.environ.get("SPARK_SCHED_SIM")}
VARIABLES = {"decima-sim": "DECIMA_SIM", "spark-sched-sim": "SPARK_SCHED_SIM"}
SEED = 3
NUM_JOBS = 15
EXECUTORS = 20  # few enough that jobs contend and parallelism limits bind


REPO = Path(__file__).resolve().parents[2]
PROLOGUE = f"""
import json, math, sys
import numpy as np
sys.path.insert(0, {str(REPO)!r})
from benchmarks.reference_adapter import *
from envs.spark_dag.observation import Decision, decision_is_valid
TPCH, CHECKOUT, E = sys.argv[1], sys.argv[2], {EXECUTORS}
checked = 0
"""
# decima-sim's own jobs (its generator, 15 streamed), its DynamicPartitionAgent deciding
DECIMA_CHECK = PROLOGUE + """
sys.argv = [sys.argv[0], "--exec_cap", str(E), "--num_init_dags", "1", "--num_stream_dags",
            "15", "--job_folder", TPCH + "/"]
sys.path.insert(0, CHECKOUT)
from heuristic_agent import DynamicPartitionAgent
from spark_env.env import Environment
env, agent = Environment(), DynamicPartitionAgent()
env.seed(3)
np.random.seed(3)
env.reset(max_time=np.inf)
obs, done = env.observe(), False
while not done:
    node, limit = agent.get_action(obs)
    job_dags, source, num_source, frontier, _, commit, moving, _ = obs
    state, jobs = decima_state(obs, env.wall_time.curr_time, E, len(env.timeline) > 0)
    rows = {(int(state.stage_job[r]), int(state.stage_id[r]))
            for r in np.flatnonzero(state.stage_schedulable)}
    assert rows == {(jobs.index(n.job_dag), n.idx) for n in frontier}
    row = 0
    for job in jobs:
        for n in job.nodes:
            assert math.isclose(state.stage_remaining_compute_s[row] * 1000,
                                n.get_node_duration(), rel_tol=1e-9, abs_tol=1e-6)
            row += 1
    if node is not None:
        unsaturated = (node.num_tasks - node.next_task_idx - commit.node_commit[node]
                       - moving.count(node))
        unfinished = sum(any(n.next_task_idx + commit.node_commit[n] + moving.count(n)
                             < n.num_tasks for n in j.nodes) for j in job_dags)
        j = jobs.index(node.job_dag)
        cap = (int(state.job_executors[j] + state.job_free_executors[j])
               if node.job_dag is source else math.ceil(E / max(1, unfinished)))
        decision = Decision(j, node.idx, cap)
        assert decision_is_valid(decision, state), decision
        assert decima_action(decision, state, jobs, obs) == (node, min(limit, unsaturated))
        checked += 1
    obs, _, done = env.step(node, limit)
print(json.dumps({"checked": checked, "jobs_done": len(env.finished_job_dags)}))
"""
# spark-sched-sim's own sampler (15 jobs) and its RoundRobinScheduler (fair) deciding
SSS_CHECK = PROLOGUE + """
import types
sys.path.insert(0, CHECKOUT)
package = types.ModuleType("schedulers")
package.__path__ = [CHECKOUT + "/schedulers"]
sys.modules["schedulers"] = package
import gymnasium as gym
from schedulers.heuristics.round_robin import RoundRobinScheduler
env = gym.make("spark_sched_sim:SparkSchedSimEnv-v0", env_cfg={
    "num_executors": E, "job_arrival_cap": 15, "job_arrival_rate": 4.0e-5,
    "moving_delay": 2000.0, "warmup_delay": 1000.0, "data_sampler_cls": "TPCHDataSampler"})
inner, own = env.unwrapped, RoundRobinScheduler(E)
watcher = SssAgent(make_heuristic("fair"), env)  # notes task finishes; never asked here
obs, _ = env.reset(seed=3)
terminated = False
while not terminated:
    action, _ = own.schedule(obs)
    state, jobs = sss_state(inner, watcher.finish_ms, watcher.task_ms)
    rows = {(int(state.stage_job[r]), int(state.stage_id[r]))
            for r in np.flatnonzero(state.stage_schedulable)}
    assert rows == {(inner.active_job_ids.index(s.job_id), s.id_)
                    for s in inner.schedulable_stages}
    if action["stage_idx"] >= 0:
        stage = inner.schedulable_stages[action["stage_idx"]]
        j = inner.active_job_ids.index(stage.job_id)
        cap = (int(state.job_executors[j] + state.job_free_executors[j])
               if j == obs["source_job_idx"] else math.ceil(E / len(jobs)))
        decision = Decision(j, stage.id_, cap)
        assert decision_is_valid(decision, state), decision
        assert sss_action(decision, state, jobs, inner) == action, (action, decision)
        checked += 1
    obs, _, terminated, _, _ = env.step(action)
print(json.dumps({"checked": checked, "jobs_done": len(inner.completed_job_ids)}))
"""


def checkout(reference: str) -> Path:
    """The reference's checkout; skips, saying what to set, without it or the traces."""
    if not (TPCH and CHECKOUTS[reference]):
        pytest.skip(f"set {VARIABLES[reference]} (a {reference} checkout) and DECIMA_TPCH "
                    f"(Decima's TPC-H traces, spark_env/tpch of a decima-sim checkout) to run")
    return Path(CHECKOUTS[reference]).resolve()


@pytest.mark.parametrize(("reference", "script"), [("decima-sim", DECIMA_CHECK),
                                                   ("spark-sched-sim", SSS_CHECK)])
def test_the_references_own_fair_decisions_map_back_to_its_actions(
        reference: str, script: str, tmp_path: Path) -> None:
    root = checkout(reference)
    workdir = root
    if reference == "spark-sched-sim":  # it reads data/tpch under its working directory
        workdir = tmp_path
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "tpch").symlink_to(Path(TPCH).resolve())
    (tmp_path / "check.py").write_text(script)
    done = subprocess.run([sys.executable, str(tmp_path / "check.py"), str(Path(TPCH).resolve()),
                           str(root)], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["jobs_done"] == 16 if reference == "decima-sim" else 15
    assert result["checked"] > 50


def run(reference: str, schedulers: list[str]) -> dict[str, dict]:
    """One row per scheduler, run inside ``reference`` on one sequence; skips without it."""
    root = checkout(reference)
    jobs = sequences(Path(TPCH), NUM_JOBS, [SEED])[SEED]
    rows = run_reference(reference, root, Path(TPCH), jobs, schedulers,
                         SEED, executors=EXECUTORS)
    return {r["scheduler"]: r for r in rows}


def test_heuristic_fifo_is_spark_sched_sims_own_fifo() -> None:
    rows = run("spark-sched-sim", ["fifo", "heuristic:fifo"])
    own, ours = rows["fifo"], rows["heuristic:fifo"]
    assert ours["jobs_done"] == own["jobs_done"] == NUM_JOBS
    assert ours["decisions"] == own["decisions"]
    assert ours["mean_jct_s"] == pytest.approx(own["mean_jct_s"], rel=1e-9)


def test_heuristic_fair_and_fifo_come_close_to_decima_sims_own() -> None:
    rows = run("decima-sim", ["fair", "heuristic:fair", "fifo", "heuristic:fifo"])
    for name in ("fair", "fifo"):
        own, ours = rows[name], rows[f"heuristic:{name}"]
        assert ours["jobs_done"] == own["jobs_done"] == NUM_JOBS
        assert ours["mean_jct_s"] == pytest.approx(own["mean_jct_s"], rel=0.03), name


@pytest.mark.parametrize("reference", list(CHECKOUTS))
def test_policy_and_heuristics_run_every_job_inside_the_reference(reference: str) -> None:
    names = ["policy:models/spark_dag_policy.json", "heuristic:sjf", "heuristic:fair"]
    rows = run(reference, names)
    assert list(rows) == names  # the scheduler as given, one row per run
    for row in rows.values():
        assert row["jobs_done"] == NUM_JOBS and row["decisions"] > 0 and row["cpu_s"] > 0
    # the schedulers act: different rules give different episodes on the same sequence
    assert len({round(r["mean_jct_s"], 6) for r in rows.values()}) == len(names)
    assert all(np.isfinite(r["mean_jct_s"]) for r in rows.values())
