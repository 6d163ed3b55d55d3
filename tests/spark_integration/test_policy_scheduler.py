"""The PolicyScheduler on the shared local[2] session: a user's own SQL and DataFrame callables,
submitted from several threads, give Spark's own answers; the policy starts them, a running
query moves to another FAIR pool when the policy changes its limit (seen in the event log),
a failing job leaves the others running, and finished runs teach the history."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from envs.spark_dag import Decision
from spark_integration.job_history import JobHistory, QueryRun, StageRun
from spark_integration.nodes import rows_match
from spark_integration.policy_scheduler import PolicyScheduler, UserJob
from spark_integration.queries import QUERIES

SQL = {name: QUERIES[name].reference_sql for name in ("q6", "q14", "q3")}


@pytest.fixture(scope="module")
def views(spark, tables) -> None:
    for table, path in tables.items():
        spark.read.parquet(path).createOrReplaceTempView(table)


def test_user_sql_and_callables_answer_like_spark(spark, views) -> None:
    expected = {name: spark.sql(text).collect() for name, text in SQL.items()}
    with PolicyScheduler(spark, "sjf") as sched:
        futures: dict[str, object] = {}

        def submit(name: str) -> None:
            futures[name] = sched.submit(SQL[name], name=name)

        threads = [threading.Thread(target=submit, args=(name,)) for name in SQL]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        counted = sched.submit(lambda s: s.table("orders").where("o_totalprice > 1e5").count(),
                               name="count")
        for name, future in futures.items():
            assert rows_match(future.result(timeout=120), expected[name]) is None, name
        assert counted.result(timeout=60) == spark.table("orders").where(
            "o_totalprice > 1e5").count()
        assert sched.decisions >= len(SQL) + 1
        assert all(sched.pools_of(name) for name in SQL)  # started by a decision, in a pool
        for name in SQL:
            (run,) = sched.history.runs(sched._jobs[[j.name for j in sched._jobs].index(
                name)].signature)
            assert run.executor_s > 0 and all(s.num_tasks >= 1 for s in run.stages)


class _Scripted:
    """A graph policy that answers the given limits in order, one per decision, then waits."""

    observation_mode = "graph"
    name = "scripted"

    def __init__(self, limits: list[int]) -> None:
        self.limits = limits
        self.asked = 0

    def reset(self) -> None:
        self.asked = 0

    def act(self, state, schedulable: np.ndarray) -> Decision | None:
        if self.asked >= len(self.limits):
            return None
        row = int(np.flatnonzero(schedulable)[0])
        job = int(state.stage_job[row])
        self.asked += 1
        return Decision(job, int(state.stage_id[row]), self.limits[self.asked - 1],
                        state.job_names[job])


def _job_pools(event_log_dir: Path, group_part: str) -> list[str]:
    pools = []
    for path in sorted(event_log_dir.rglob("*")):
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                if '"SparkListenerJobStart"' in line:
                    event = json.loads(line)
                    properties = event.get("Properties", {})
                    if group_part in properties.get("spark.jobGroup.id", ""):
                        pools.append(properties.get("spark.scheduler.pool"))
    return pools


def test_a_running_job_moves_to_the_pool_of_a_new_limit(spark, views, event_log_dir) -> None:
    """Limit 1, then 2 once the first action's stages ran: the second action's Spark jobs run
    in a level-2 pool, the first's in a level-1 pool."""
    history = JobHistory()
    history.add("callable:two", QueryRun(tuple(StageRun(1, 1.0) for _ in range(4)), 0))
    gate = threading.Event()

    def two_actions(session) -> int:
        first = session.range(0, 200_000, numPartitions=2).selectExpr("sum(id)").collect()
        gate.wait(timeout=60)
        second = session.range(0, 100_000, numPartitions=2).selectExpr("sum(id)").collect()
        return first[0][0] + second[0][0]

    with PolicyScheduler(spark, _Scripted([1, 2]), history=history, poll_s=0.05) as sched:
        future = sched.submit(two_actions, name="two#0")
        deadline = time.monotonic() + 60
        while len(sched.pools_of("two#0")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        gate.set()
        assert future.result(timeout=60) == sum(range(200_000)) + sum(range(100_000))
        first_pool, second_pool = sched.pools_of("two#0")
    assert first_pool.startswith("pipesched_k1_") and second_pool.startswith("pipesched_k2_")
    seen = []
    deadline = time.monotonic() + 10
    while (first_pool not in seen or second_pool not in seen) and time.monotonic() < deadline:
        seen = _job_pools(event_log_dir, "|two#0")
        time.sleep(0.2)
    assert seen[0] == first_pool and seen[-1] == second_pool, seen


def test_a_failing_job_fails_alone_and_bad_sql_is_refused_at_submit(spark, views) -> None:
    with PolicyScheduler(spark, "fair") as sched:
        with pytest.raises(Exception, match="TABLE_OR_VIEW_NOT_FOUND"):
            sched.submit("SELECT * FROM no_such_table", name="bad")
        result = sched.run([UserJob("boom", "SELECT assert_true(o_orderkey < 0) FROM orders"),
                            UserJob("fine", SQL["q6"], 0.1)])
    by_name = {j.name: j for j in result.jobs}
    assert by_name["boom"].status == "failed" and by_name["boom"].error
    assert by_name["fine"].status == "done" and by_name["fine"].jct_s > 0
    assert result.to_json()["jobs_failed"] == 1


def test_spark_fair_gives_every_job_its_own_pool_without_decisions(spark, views) -> None:
    with PolicyScheduler(spark, "spark-fair") as sched:
        result = sched.run([UserJob(f"q6#{i}", SQL["q6"], 0.0) for i in range(2)])
        assert [sched.pools_of(f"q6#{i}") for i in range(2)] == [["job_q6#0"], ["job_q6#1"]]
    assert result.decisions == 0 and len(result.finished) == 2
