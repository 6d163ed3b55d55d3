"""DagExecutor on the live local[2] session: every query end to end under a heuristic with
results equal to single-SQL execution, the shipped agent, retries, a failing query, Ctrl-C."""

from __future__ import annotations

import _thread
import signal
import threading
import time

import numpy as np
import pytest
from py4j.protocol import Py4JError

from agents.spark_dag.policy import SHIPPED, ShapeError, load_policy
from envs.spark_dag import ObservationLimits, load_workload, save_workload
from heuristics.spark_dag import make_heuristic
from spark_integration.calibration import NodeTimes, predict_live, simulate, workload_for
from spark_integration.executor import DagExecutor, structure_template
from spark_integration.jobs import JobSpec
from spark_integration.nodes import rows_match
from spark_integration.queries import QUERIES, QueryDag, QueryNode
from spark_integration.schedulers import agent_path, make_driver
from spark_integration.tracegen import default_trace_path, load_templates

LIMITS = ObservationLimits()


def test_every_query_dag_answers_like_its_single_sql(spark, all_queries_run) -> None:
    result, expected = all_queries_run
    assert [j.status for j in result.jobs] == ["done"] * len(QUERIES)
    for job in result.jobs:
        got = spark.read.parquet(job.output).collect()
        assert rows_match(got, expected[job.query]) is None, job.name


def test_heuristic_drives_a_job_stream_end_to_end(spark, tables, tmp_path) -> None:
    templates = load_templates(default_trace_path(0.1))
    specs = [JobSpec("q3#0", QUERIES["q3"], 0.0), JobSpec("q14#1", QUERIES["q14"], 0.5),
             JobSpec("q6#2", QUERIES["q6"], 1.0)]
    executor = DagExecutor(spark, make_heuristic("sjf"), tables=tables,
                           work_dir=tmp_path, limits=LIMITS, templates=templates,
                           keep_outputs=True, progress=False, shadow=make_heuristic("sjf"))
    result = executor.run(specs)
    assert [j.status for j in result.jobs] == ["done"] * 3
    assert result.invalid_actions == 0
    assert result.decisions >= sum(len(s.dag.nodes) for s in specs)
    # sjf asked the same states as sjf agrees with it at every decision
    assert result.shadow.shadow == "sjf"
    assert result.shadow.decisions == result.decisions == result.shadow.same_decision
    for job in result.jobs:
        assert job.start_s >= job.arrival_s and job.jct_s > 0
        ends = {n.name: n.end_s for n in job.nodes}
        for node in job.nodes:  # each node started after all its parents ended
            assert all(node.launch_s >= ends[p] for p in node.parents)
            assert node.pool.startswith("pipesched_k") and node.partitions == 2 * node.parallelism
    # sjf (least remaining traced work first) finishes q6 before the earlier, larger q3
    assert result.jobs[2].end_s < result.jobs[0].end_s
    # the run replays in the simulator, and the traced templates predict it
    replay = save_workload(result.to_workload(), tmp_path / "replay.json")
    assert [j.name for j in load_workload(replay)] == [s.name for s in specs]
    predicted = simulate(workload_for(specs, templates), make_heuristic("sjf"), 2,
                         LIMITS)
    assert set(predicted) == {s.name for s in specs} and all(v > 0 for v in predicted.values())
    # the executor model replays the admission rule: fed this run's own node durations (at the
    # parallelism each node got) it reproduces every job's JCT up to the loop's latencies
    timed: dict = {}
    for job in result.jobs:
        for node in job.nodes:
            timed.setdefault((job.query, 0), {}).setdefault(node.parallelism, {})[node.name] = \
                node.duration_s
    replayed = predict_live(specs, NodeTimes.from_timings(timed), templates,
                            make_heuristic("sjf"), LIMITS, 2)
    for job in result.jobs:
        assert replayed[job.name] == pytest.approx(job.jct_s, rel=0.15, abs=0.3), job.name


def test_results_match_detects_a_wrong_answer(spark, all_queries_run) -> None:
    result, expected = all_queries_run
    q3 = spark.read.parquet(result.jobs[list(QUERIES).index("q3")].output).collect()
    assert rows_match(q3, expected["q3"]) is None
    assert rows_match(q3[:-1], expected["q3"]) == "row count 9 != expected 10"
    changed = [tuple(r) for r in q3]
    changed[0] = (changed[0][0], float(changed[0][1]) * 1.001, *changed[0][2:])
    assert rows_match(changed, expected["q3"]) is not None
    assert rows_match(expected["q6"], expected["q14"]) is not None


def test_agent_is_the_policy_of_the_deployment() -> None:
    """``agent`` is the local[2] policy in local mode and on a cluster master (URL or benchmark
    label) the cluster policy validated for its executor count (2: the 2-worker cluster, 4: the
    multi-slot bed); a count no policy was validated for is refused."""
    assert agent_path() == agent_path("local") == agent_path("local[2]") == SHIPPED["real"]
    assert agent_path("spark://10.0.0.1:7077") == agent_path("standalone@10.213.0.1") == \
        agent_path("yarn") == agent_path("yarn", 2) == SHIPPED["real_cluster"]
    assert agent_path("spark://10.0.0.1:7077", 4) == SHIPPED["real_bed"]
    for executors, shipped in ((2, "real_cluster"), (4, "real_bed")):
        cluster = make_driver("agent", executors=executors,
                              master="spark://10.0.0.1:7077").scheduler
        assert cluster.limit_weights.tolist() == \
            load_policy(SHIPPED[shipped]).limit_weights.tolist()
    with pytest.raises(ShapeError):
        make_driver("agent", executors=3, master="spark://10.0.0.1:7077")


def test_shipped_agent_drives_live_spark(spark, tables, tmp_path) -> None:
    driver = make_driver("agent")
    executor = DagExecutor(spark, driver.scheduler, tables=tables, work_dir=tmp_path,
                           limits=driver.limits, progress=False,
                           templates=load_templates(default_trace_path(0.1)))
    specs = [JobSpec("q6#0", QUERIES["q6"], 0.0), JobSpec("q12#1", QUERIES["q12"], 0.5),
             JobSpec("q14#2", QUERIES["q14"], 1.0)]
    result = executor.run(specs)
    assert [j.status for j in result.jobs] == ["done"] * 3
    assert result.invalid_actions == 0
    # every node was launched on a decision of the agent (1 + 3 + 3 nodes)
    assert result.decisions >= sum(len(s.dag.nodes) for s in specs)
    assert result.mean_jct_s == pytest.approx(np.mean([j.end_s - j.arrival_s
                                                       for j in result.jobs]))


def test_a_scheduler_without_a_template_is_refused_before_anything_runs(spark, tables,
                                                                        tmp_path) -> None:
    templates = load_templates(default_trace_path(0.1))
    del templates["q6"]
    executor = DagExecutor(spark, make_heuristic("sjf"), tables=tables, work_dir=tmp_path,
                           limits=LIMITS, templates=templates, progress=False)
    with pytest.raises(ValueError, match=r"no calibrated template for query q6 \(known: "):
        executor.run([JobSpec("q14#0", QUERIES["q14"], 0.0), JobSpec("q6#1", QUERIES["q6"])])
    assert list(tmp_path.iterdir()) == []  # no node wrote an output: nothing ran


def _failing_dag() -> QueryDag:
    return QueryDag("broken", (
        QueryNode("scan", "select n_nationkey from {nation}"),
        QueryNode("boom", "select raise_error('forced node failure') as x from {scan}",
                  ("scan",))), "select 1")


def test_failed_node_is_retried_then_reported_while_others_finish(spark, tables,
                                                                 tmp_path) -> None:
    flaky_attempts = []

    def hook(spec: JobSpec, node: str, attempt: int) -> None:
        if spec.name == "q12#flaky" and node == "count" and attempt == 1:
            flaky_attempts.append(attempt)
            raise Py4JError("transient failure injected")  # as a lost gateway call would

    # the failing DAG has no trace: it is observed as its bare structure, given explicitly
    templates = {**load_templates(default_trace_path(0.1)),
                 "broken": structure_template(JobSpec("broken", _failing_dag()), 2)}
    executor = DagExecutor(spark, make_heuristic("fair"), tables=tables, templates=templates,
                           work_dir=tmp_path, limits=LIMITS, max_retries=2, progress=False,
                           node_hook=hook)
    specs = [JobSpec("broken#0", _failing_dag(), 0.0), JobSpec("q6#1", QUERIES["q6"], 0.0),
             JobSpec("q12#flaky", QUERIES["q12"], 0.0)]
    result = executor.run(specs)
    broken, q6, q12 = result.jobs
    assert broken.status == "failed" and "forced node failure" in broken.error
    assert broken.nodes[1].attempts == 3 and broken.nodes[0].error == ""
    assert q6.status == "done" and q12.status == "done"
    assert flaky_attempts == [1] and q12.nodes[2].attempts == 2
    # the failed job has no JCT: it is counted, and the mean covers the finished two only
    assert result.failed == [broken] and broken.jct_s is None
    summary = result.to_json()
    assert (summary["jobs_finished"], summary["jobs_failed"]) == (2, 1)
    assert summary["failed_jobs"] == ["broken#0"]
    assert result.mean_jct_s == pytest.approx((q6.end_s + q12.end_s) / 2)


def test_a_bug_in_a_node_is_raised_not_recorded_as_a_spark_failure(spark, tables,
                                                                   tmp_path) -> None:
    attempts = []

    def hook(spec: JobSpec, node: str, attempt: int) -> None:
        if spec.name == "q14#bug":
            attempts.append(attempt)
            raise TypeError("a bug in the calling code")

    executor = DagExecutor(spark, make_heuristic("fair"), tables=tables, work_dir=tmp_path,
                           limits=LIMITS, max_retries=2, progress=False, node_hook=hook,
                           templates=load_templates(default_trace_path(0.1)))
    with pytest.raises(TypeError, match="a bug in the calling code"):
        executor.run([JobSpec("q14#bug", QUERIES["q14"], 0.0),
                      JobSpec("q9#0", QUERIES["q9"], 0.0)])
    assert attempts == [1]  # not retried as if Spark had failed
    assert [t.name for t in threading.enumerate() if t.name.startswith("pipesched-node")] == []


def test_ctrl_c_cancels_every_job_tag_and_leaves_no_node_thread(spark, tables,
                                                               tmp_path) -> None:
    executor = DagExecutor(spark, make_driver("spark-fair").scheduler, tables=tables,
                           work_dir=tmp_path, progress=False)
    specs = [JobSpec(f"q9#{i}", QUERIES["q9"], 0.0) for i in range(3)]
    # interrupt_main does nothing while SIGINT is ignored (a suite run as a background job)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(2.0, _thread.interrupt_main)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            executor.run(specs)
    finally:
        timer.cancel()  # a run that ended before the timer must not interrupt later tests
        timer.join()
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - started < 60
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("pipesched-node")]
    assert leftover == []
    deadline = time.monotonic() + 20
    while spark.sparkContext.statusTracker().getActiveJobsIds() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert spark.sparkContext.statusTracker().getActiveJobsIds() == []


def test_bad_input_gets_clear_errors(spark, tables, tmp_path) -> None:
    executor = DagExecutor(spark, make_heuristic("sjf"), tables=tables,
                           work_dir=tmp_path, limits=LIMITS)
    with pytest.raises(ValueError, match="duplicate job names"):
        executor.run([JobSpec("a", QUERIES["q6"]), JobSpec("a", QUERIES["q6"])])
    with pytest.raises(ValueError, match="arrival_s must be >= 0"):
        JobSpec("x", QUERIES["q6"], -1.0)
    with pytest.raises(ValueError, match="unknown scheduler 'nope'"):
        make_driver("nope")
    with pytest.raises(ValueError, match="max_retries"):
        DagExecutor(spark, None, tables=tables, work_dir=tmp_path, max_retries=-1)


def test_workload_for_uses_templates() -> None:
    templates = load_templates(default_trace_path(0.1))
    (job,) = workload_for([JobSpec("q3#0", QUERIES["q3"], 1.5)], templates)
    assert (job.name, job.arrival_s) == ("q3#0", 1.5)
    assert [s.work_s for s in job.stages] == [s.work_s for s in templates["q3"].stages]
