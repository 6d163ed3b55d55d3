"""The stage DAG of a Spark SQL query estimated from its physical plan before it runs, the stage
DAG Spark actually ran (from its event log), and the difference between the two.

    estimate = plan_dag(df)                      # runs no Spark job
    spark.sparkContext.setJobGroup("g", "..."); df.collect()
    ran = stages_ran(event_log_dir, "g", timeout_s=60)
    dag_difference(estimate, ran)                # None, or one line saying how they differ

**Estimate** (:func:`plan_dag`). With AQE on (Spark's default) the executed plan is an
``AdaptiveSparkPlanExec``; its ``initialPlan`` has the exchanges inserted and nothing decided at
run time yet, and is the same whether or not the DataFrame already ran. Walking it (py4j), the
stages are, each of a kind:

- ``shuffle``: the map side of every ``ShuffleExchangeExec``; AQE submits each as a job of its
  own.
- ``broadcast``: the job that collects a ``BroadcastExchangeExec``'s input.
- ``subquery``: the final stage of a scalar subquery (``SubqueryExec``, its own adaptive plan),
  which runs before the stage that evaluates it (Q11, Q15, Q22).
- ``sample``: a range-partitioned shuffle (``ORDER BY`` over more than one partition) samples its
  input in a job of its own (``RangePartitioner``) before its map stage: a stage that computes
  the same input and that the map stage waits for.
- ``result``: the root's stage (``collect`` runs one job), last.

A stage's parents are the map stages of the shuffles it reads and the broadcasts, subqueries
and samples it waits for. Exchanges and subqueries whose canonical plans are equal run once
(AQE's stage and subquery caches: Q11's subquery reuses the main query's broadcasts);
``ReusedExchange`` adds no stage. ``partitions``: a file scan's splits (Spark's own
``FilePartition.maxSplitBytes``, files split and packed as ``getFilePartitions`` packs them),
a shuffle's planned partition count; a union adds its inputs', anything else takes its widest
streamed input. ``input_bytes``: the sizes of the files a stage scans (whole files: Parquet
reads only the projected columns) plus, per shuffle it reads, the optimizer's ``sizeInBytes``
of the exchange's input capped by the map stage's own input (without CBO a join's size is the
product of its inputs'). ``signature``: SHA-256 of the canonicalised initial physical plan
with Spark's plan-id counters removed. A plan, not normalised SQL, because a DataFrame need not
come from SQL text, and because the physical plan is what fixes the DAG (join strategies,
partition counts, the files read): equal signatures mean equal estimates; Spark's
canonicalisation already numbers expression ids by position, so the same statement gives the
same signature in another DataFrame, session or JVM, and other parameter values another one.
Not estimated (a one-line ValueError): bucketed scans, dynamic-partition-pruning subqueries,
leaves with no partition count. Not modelled: ``LIMIT`` without ``ORDER BY`` (``CollectLimit``
runs as many jobs as it needs rows for), actions other than one ``collect`` per estimate.

**What ran** (:func:`stages_ran`), from the event log (uncompressed; the parsing helpers of
:mod:`spark_integration.tracegen`): the stages of the group's jobs that were submitted. Under
AQE a later job lists the map stages it reads as new stages that never run (skipped); each is
the stage that ran with the same RDD ids. Shuffle dependencies are the stages' ``Parent IDs``;
Spark records no dependency on a broadcast, a subquery or a sample, so those come from the SQL
metrics: every metric of the plans AQE posted for the group's SQL execution (its start and
every adaptive update) belongs to a region (the root, one exchange's map side, one subquery;
an exchange's read metrics belong to its reader), each stage that ran updated the metrics of
one region, a broadcast or subquery stage precedes the stages of the regions that use it, a
sample precedes the map stage of its region. Kinds follow from task type and region.

**Spark 4.3, local[2], TPC-H SF 0.1 (22 statements), shuffle.partitions 4, AQE on**: every
statement ran the estimated stages and dependencies except where AQE changed the plan at run
time; what it changes, and how :func:`dag_difference` reports it as :data:`INHERENT`:

- a shuffled join whose input turned out small runs as a broadcast join (Q2: the sort-merge
  join of the parts with their minimum cost). Which input is broadcast and whether the other
  input's shuffle had started depends on which map stage finished first: the broadcast reads
  the small input's shuffle or replaces it; the other shuffle stays, or its work moves into the
  joining stage. The difference is inherent when the event log's plans lost a shuffled join
  and the estimate with that switch (in one of those ways) has exactly the stages that ran.
- a plan part that turns out empty is replaced by an empty relation and not run (never with
  the validation parameters; a join with an empty side in the tests); inherent when the final
  plan gained empty relations and what ran is an induced subgraph of the estimate.

AQE also coalesces shuffle partitions (4 planned, 1 or 2 tasks ran), so only stages that read
no shuffle run the estimated tasks (:func:`stage_matching` with ``scan_tasks``: they all do).
``input_bytes`` is a coarse upper bound: 10 to 92 MB per statement estimated where Spark
reported 0.2 to 1.7 MB read (its Parquet reader counts only the column chunks it reads, and
the shuffles hold aggregates of a few KB).
"""

from __future__ import annotations

import hashlib
import itertools
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from spark_integration.tracegen import _event_files, _metric, _read_events

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

KINDS = ("shuffle", "broadcast", "subquery", "sample", "result")
#: how :func:`dag_difference` starts a difference that AQE decided at run time
INHERENT = "inherent (AQE at run time)"

# node names (SparkPlan.nodeName) of the operators that bound or shape stages
_SHUFFLE = "Exchange"  # ShuffleExchangeExec
_BROADCAST = "BroadcastExchange"
_REUSED_EXCHANGE = "ReusedExchange"
_ADAPTIVE = "AdaptiveSparkPlan"
_SUBQUERY = "Subquery"
_REUSED_SUBQUERY = "ReusedSubquery"
_SHUFFLED_JOINS = frozenset({"SortMergeJoin", "ShuffledHashJoin"})
# operators that leave their single child's partitioning as it is: a join over them still reads
# the shuffle directly
_PASS_THROUGH = ("Sort",)
# plan-time ids that differ between two plans of the same query (SparkPlan.id counters)
_VOLATILE_IDS = re.compile(r"\[plan_id=\d+\]|\[id=#\d+\]")

_SQL_EVENT = "org.apache.spark.sql.execution.ui."
_EXECUTION_START = _SQL_EVENT + "SparkListenerSQLExecutionStart"
_EXECUTION_END = _SQL_EVENT + "SparkListenerSQLExecutionEnd"
_PLAN_UPDATE = _SQL_EVENT + "SparkListenerSQLAdaptiveExecutionUpdate"
# ShuffleExchangeExec metrics its map tasks update; its other task metrics are the reader's
_SHUFFLE_WRITE_METRICS = frozenset({"shuffle bytes written", "shuffle records written",
                                    "shuffle write time", "data size"})
_INPUT_METRICS = ("internal.metrics.input.bytesRead",
                  "internal.metrics.shuffle.read.localBytesRead",
                  "internal.metrics.shuffle.read.remoteBytesRead")
_PLAN_EMPTY = frozenset({"LocalTableScan", "EmptyRelation"})


@dataclass(frozen=True)
class PlanStage:
    """One Spark stage. ``id`` is its topological position: parents have smaller ids and the
    query's result stage is last."""

    id: int
    parents: tuple[int, ...]
    kind: str  # one of KINDS
    partitions: int  # tasks
    input_bytes: int  # bytes read from files and shuffles


@dataclass(frozen=True)
class ShuffledJoin:
    """A sort-merge or shuffled hash join whose two inputs are shuffles: AQE may run it as a
    broadcast join once one input has turned out small."""

    stage: int  # the stage that joins
    inputs: tuple[int, int]  # the map stages of its two shuffled inputs


@dataclass(frozen=True)
class PlanDag:
    """The estimated stage DAG of one query."""

    signature: str
    stages: tuple[PlanStage, ...]
    shuffled_joins: tuple[ShuffledJoin, ...] = ()


@dataclass(frozen=True)
class RanDag:
    """The stage DAG one job group ran, from the event log; ``stages[i]`` ran as Spark stage
    ``spark_stage_ids[i]`` with ``partitions`` = its tasks and ``input_bytes`` = its measured
    file and shuffle bytes read."""

    job_group: str
    stages: tuple[PlanStage, ...]
    spark_stage_ids: tuple[int, ...]
    runtime_broadcast_joins: int = 0  # shuffled joins of the initial plan gone from the final
    empty_relations: int = 0  # empty relations the final plan has and the initial had not
    unplaced: tuple[int, ...] = ()  # Spark stages no SQL metric places in the plan


# ---------------------------------------------------------------- estimate from the plan


def _seq(scala_seq: Any) -> list[Any]:
    return [scala_seq.apply(i) for i in range(scala_seq.size())]


@dataclass
class _Region:
    """What one stage computes of a plan subtree: its tasks, the bytes it reads, the stages it
    waits for, and the shuffled joins inside it."""

    partitions: int | None  # None: the subtree is a broadcast (no partitions of its own)
    input_bytes: int
    parents: set[int] = field(default_factory=set)
    joins: list[tuple[int, int]] = field(default_factory=list)
    shuffle_read: int | None = None  # the map stage, when the subtree only reads one shuffle


class _Estimator:
    """Walks a physical plan (the AQE initial plan) and cuts it into stages."""

    def __init__(self, jsession: Any, jvm: Any, with_subqueries: bool) -> None:
        self.jsession = jsession
        conf = jsession.sessionState().conf()
        self.open_cost = conf.filesOpenCostInBytes()
        cap = conf.filesMaxPartitionNum()
        self.max_file_partitions = cap.get() if cap.isDefined() else None
        self.file_partition = getattr(jvm.org.apache.spark.sql.execution.datasources,
                                      "FilePartition$").__getattr__("MODULE$")
        self.with_subqueries = with_subqueries
        self.stages: list[PlanStage] = []
        self.joins: list[ShuffledJoin] = []
        self.exchanges: dict[int, list[tuple[Any, int]]] = defaultdict(list)
        self.subqueries: dict[int, list[tuple[Any, int]]] = defaultdict(list)

    def add(self, kind: str, region: _Region, extra_parents: Iterable[int] = ()) -> int:
        if region.partitions is None:
            raise ValueError(f"plan_dag: a {kind} stage reads nothing but broadcasts")
        stage_id = len(self.stages)
        parents = tuple(sorted(region.parents | set(extra_parents)))
        self.stages.append(PlanStage(stage_id, parents, kind, region.partitions,
                                     region.input_bytes))
        self.joins += [ShuffledJoin(stage_id, pair) for pair in region.joins]
        return stage_id

    def reused(self, cache: dict[int, list[tuple[Any, int]]], node: Any) -> tuple[Any, int | None]:
        """AQE reuses an exchange or subquery whose canonical plan equals an earlier one's."""
        canonical = node.canonicalized()
        for other, stage_id in cache[canonical.hashCode()]:
            if canonical.equals(other):
                return canonical, stage_id
        return canonical, None

    def region(self, node: Any) -> _Region:
        name = node.nodeName()
        if name == _SHUFFLE:
            return self.shuffle_read(node)
        if name == _BROADCAST:
            return _Region(None, 0, {self.broadcast_stage(node)})
        if name == _REUSED_EXCHANGE:
            return self.region(node.child())
        if name == _ADAPTIVE:
            return self.region(node.initialPlan())
        children = [self.region(child) for child in _seq(node.children())]
        region = _combine(name, children) if children else self.leaf(node, name)
        if self.with_subqueries:
            for subquery in _seq(node.subqueries()):
                region.parents.add(self.subquery_stage(subquery))
        return region

    def leaf(self, node: Any, name: str) -> _Region:
        if name.startswith("Scan ") and node.getClass().getSimpleName() == "FileSourceScanExec":
            return _Region(*self.scan_partitions(node))
        if name == "LocalTableScan":
            rows = node.rows().size()
            return _Region(min(rows, self.jsession.sparkContext().defaultParallelism()), 0)
        partitions = node.outputPartitioning().numPartitions()
        if partitions < 1:
            raise ValueError(f"plan_dag: no partition estimate for leaf {name}")
        return _Region(partitions, 0)

    def shuffle_read(self, exchange: Any) -> _Region:
        stage_id, partitions = self.shuffle_stage(exchange)
        written = min(_logical_bytes(exchange.child()), self.stages[stage_id].input_bytes)
        return _Region(partitions, written, {stage_id}, shuffle_read=stage_id)

    def shuffle_stage(self, exchange: Any) -> tuple[int, int]:
        """The map stage of ``exchange`` and the partitions it writes."""
        partitioning = exchange.outputPartitioning()
        partitions = partitioning.numPartitions()
        canonical, stage_id = self.reused(self.exchanges, exchange)
        if stage_id is not None:
            return stage_id, partitions
        region = self.region(exchange.child())
        sample = ()
        if partitions > 1 and partitioning.nodeName() == "RangePartitioning":
            # RangePartitioner samples its input in a job of its own to find the bounds
            sample = (self.add("sample", _Region(region.partitions, region.input_bytes,
                                                 set(region.parents))),)
        stage_id = self.add("shuffle", region, sample)
        self.exchanges[canonical.hashCode()].append((canonical, stage_id))
        return stage_id, partitions

    def broadcast_stage(self, exchange: Any) -> int:
        canonical, stage_id = self.reused(self.exchanges, exchange)
        if stage_id is None:
            stage_id = self.add("broadcast", self.region(exchange.child()))
            self.exchanges[canonical.hashCode()].append((canonical, stage_id))
        return stage_id

    def subquery_stage(self, node: Any) -> int:
        name = node.nodeName()
        if name == _REUSED_SUBQUERY:
            return self.subquery_stage(node.child())
        if name != _SUBQUERY:
            raise ValueError(f"plan_dag: subquery {name} is not estimated")
        canonical, stage_id = self.reused(self.subqueries, node)
        if stage_id is None:
            stage_id = self.add("subquery", self.region(node.child()))
            self.subqueries[canonical.hashCode()].append((canonical, stage_id))
        return stage_id

    def scan_partitions(self, scan: Any) -> tuple[int, int]:
        """Tasks and bytes of a file scan: files split at Spark's maxSplitBytes and packed as
        ``FilePartition.getFilePartitions`` packs them."""
        if scan.bucketedScan():
            raise ValueError(f"plan_dag: bucketed scan {scan.nodeName()} is not estimated")
        listing = scan.selectedPartitions()
        max_split = self.file_partition.maxSplitBytes(self.jsession, listing)
        files = list(_listing_files(listing))
        relation = scan.relation()
        splitable = bool(files) and relation.fileFormat().isSplitable(
            self.jsession, relation.options(), files[0].getPath())
        lengths = [file.getLen() for file in files]
        step = max_split if splitable else max(lengths, default=1)
        splits = sorted((min(step, length - offset) for length in lengths
                         for offset in range(0, length, step)), reverse=True)
        partitions = _packed_partitions(splits, max_split, self.open_cost)
        if self.max_file_partitions is not None and partitions > self.max_file_partitions:
            total = sum(length + self.open_cost for length in splits)
            partitions = _packed_partitions(splits, -(-total // self.max_file_partitions),
                                            self.open_cost)
        return partitions, sum(lengths)


def _listing_files(listing: Any) -> Iterator[Any]:
    partitions = listing.filePartitionIterator()
    while partitions.hasNext():
        files = partitions.next().files()
        while files.hasNext():
            yield files.next()


def _packed_partitions(splits: Sequence[int], max_split: int, open_cost: int) -> int:
    """How many partitions ``FilePartition.getFilePartitions`` packs ``splits`` (largest
    first) into."""
    partitions, size, open_files = 0, 0, 0
    for length in splits:
        if open_files and size + length > max_split:
            partitions, size, open_files = partitions + 1, 0, 0
        size += length + open_cost
        open_files += 1
    return partitions + (1 if open_files else 0)


def _combine(name: str, children: Sequence[_Region]) -> _Region:
    """The region of an inner operator from its children's: a union runs its children's
    partitions side by side, anything else as many as its widest streamed child."""
    streamed = [c.partitions for c in children if c.partitions is not None]
    if not streamed:
        partitions = None
    elif name == "Union":
        partitions = sum(streamed)
    else:
        partitions = max(streamed)
    region = _Region(partitions, sum(c.input_bytes for c in children),
                     set().union(*(c.parents for c in children)),
                     [pair for c in children for pair in c.joins])
    reads = [c.shuffle_read for c in children]
    if name in _SHUFFLED_JOINS and len(reads) == 2 and None not in reads:
        region.joins.append((reads[0], reads[1]))
    if name in _PASS_THROUGH and len(children) == 1:
        region.shuffle_read = children[0].shuffle_read
    return region


def _logical_bytes(node: Any) -> int:
    """``sizeInBytes`` of the logical plan behind ``node`` (or its first descendant that has
    one): the optimizer's estimate of what the subtree outputs."""
    while True:
        link = node.logicalLink()
        if link.isDefined():
            return int(link.get().stats().sizeInBytes())
        children = node.children()
        if children.size() == 0:
            return 0
        node = children.apply(0)


def _initial_plan(df: DataFrame) -> Any:
    """The physical plan before AQE changed anything (also for a DataFrame that already ran)."""
    plan = df._jdf.queryExecution().executedPlan()
    return plan.initialPlan() if plan.nodeName() == _ADAPTIVE else plan


def plan_signature(plan: Any) -> str:
    """SHA-256 of the canonicalised initial physical plan, without the ids Spark numbers plans
    with."""
    text = _VOLATILE_IDS.sub("", plan.canonicalized().treeString())
    return hashlib.sha256(text.encode()).hexdigest()


def plan_dag(df: DataFrame) -> PlanDag:
    """The stage DAG ``df`` will run as, from its physical plan; runs no Spark job."""
    plan = _initial_plan(df)
    session = df.sparkSession
    estimator = _Estimator(session._jsparkSession, session.sparkContext._jvm,
                           not plan.subqueriesAll().isEmpty())
    estimator.add("result", estimator.region(plan))
    return PlanDag(plan_signature(plan), tuple(estimator.stages), tuple(estimator.joins))


# ---------------------------------------------------------------- what ran, from the event log


@dataclass
class _SparkStage:
    """One Spark stage as the event log describes it."""

    parents: tuple[int, ...]
    rdds: frozenset[int]
    tasks: int
    submitted: bool = False
    completed: bool = False
    failure: str | None = None
    task_type: str | None = None
    accumulables: dict[int, tuple[str, Any]] = field(default_factory=dict)


@dataclass
class _GroupLog:
    """The events of one job group: its jobs and stages and the plans of its SQL executions."""

    jobs: dict[int, bool] = field(default_factory=dict)  # job id -> ended
    stages: dict[int, _SparkStage] = field(default_factory=dict)
    executions: dict[int, bool] = field(default_factory=dict)  # execution id -> ended
    plans: dict[int, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))


def _read_group(event_log: Path, job_group: str) -> _GroupLog:
    """One pass over the log; a field Spark always writes but an event lacks is a ValueError
    naming the log, the event and the field."""
    log = _GroupLog()
    plans: dict[int, list[dict[str, Any]]] = defaultdict(list)
    ended_executions: set[int] = set()
    for event in _read_events(_event_files(event_log)):
        kind = event.get("Event")
        where = f"{event_log}: {kind}"
        if kind == "SparkListenerJobStart":
            _note_job(log, event, job_group, where)
        elif kind == "SparkListenerJobEnd" and event.get("Job ID") in log.jobs:
            log.jobs[event["Job ID"]] = True
        elif kind in ("SparkListenerStageSubmitted", "SparkListenerStageCompleted"):
            _note_stage(log.stages, kind, _metric(event, "Stage Info", where), where)
        elif kind == "SparkListenerTaskEnd" and event.get("Stage ID") in log.stages:
            log.stages[event["Stage ID"]].task_type = _metric(event, "Task Type", where)
        elif kind in (_EXECUTION_START, _PLAN_UPDATE):
            plans[_metric(event, "executionId", where)].append(
                _metric(event, "sparkPlanInfo", where))
        elif kind == _EXECUTION_END:
            ended_executions.add(_metric(event, "executionId", where))
    log.plans = {xid: plans[xid] for xid in log.executions}
    log.executions = {xid: xid in ended_executions for xid in log.executions}
    return log


def _note_job(log: _GroupLog, event: Mapping[str, Any], job_group: str, where: str) -> None:
    properties = event.get("Properties") or {}
    if properties.get("spark.jobGroup.id") != job_group:
        return
    log.jobs[_metric(event, "Job ID", where)] = False
    if "spark.sql.execution.id" in properties:
        log.executions[int(properties["spark.sql.execution.id"])] = False
    for info in _metric(event, "Stage Infos", where):
        stage_id = _metric(info, "Stage ID", f"{where} 'Stage Infos'")
        rdds = frozenset(r["RDD ID"] for r in _metric(info, "RDD Info", f"{where} stage {stage_id}"))
        log.stages.setdefault(stage_id, _SparkStage(
            tuple(_metric(info, "Parent IDs", f"{where} stage {stage_id}")), rdds,
            _metric(info, "Number of Tasks", f"{where} stage {stage_id}")))


def _note_stage(stages: dict[int, _SparkStage], kind: str, info: Mapping[str, Any],
                where: str) -> None:
    stage = stages.get(_metric(info, "Stage ID", where))
    if stage is None:
        return
    if kind == "SparkListenerStageSubmitted":
        stage.submitted = True
        return
    stage.completed = True
    stage.failure = info.get("Failure Reason")
    stage.accumulables = {a["ID"]: (a.get("Name", ""), a.get("Value"))
                          for a in info.get("Accumulables", [])}


def _wait_for_group(event_log: Path, job_group: str, timeout_s: float) -> _GroupLog:
    """The group's events once every job and SQL execution of it has ended in the log (the
    event log is written as Spark's listener bus delivers events)."""
    deadline = time.monotonic() + timeout_s
    while True:
        log = _read_group(event_log, job_group)
        running = [f"job {j}" for j, ended in log.jobs.items() if not ended]
        running += [f"SQL execution {x}" for x, ended in log.executions.items() if not ended]
        if log.jobs and not running:
            return log
        if time.monotonic() >= deadline:
            if not log.jobs:
                raise ValueError(f"{event_log}: no job of job group {job_group!r}")
            raise ValueError(f"{event_log}: job group {job_group!r} has not finished in the "
                             f"log within {timeout_s:g} s ({', '.join(running)} still open)")
        time.sleep(0.2)


@dataclass
class _PlanRegions:
    """Where each SQL metric of a query's plans belongs: the stage-sized region of the plan
    that updates it (the root, an exchange's map side, a subquery), and which regions wait
    for each exchange or subquery region."""

    of_metric: dict[int, tuple] = field(default_factory=dict)
    consumers: dict[tuple, set[tuple]] = field(default_factory=lambda: defaultdict(set))
    node_of: dict[tuple, str] = field(default_factory=dict)  # region -> its exchange/subquery

    def add_plan(self, node: Mapping[str, Any], region: tuple) -> None:
        name = node["nodeName"]
        metrics = node.get("metrics", [])
        inner = region
        if name in (_SHUFFLE, _BROADCAST, _SUBQUERY) and metrics:
            inner = (name, min(m["accumulatorId"] for m in metrics))
            self.node_of[inner] = name
            self.consumers[inner].add(region)
        for metric in metrics:
            reader = name == _SHUFFLE and metric["name"] not in _SHUFFLE_WRITE_METRICS
            self.of_metric[metric["accumulatorId"]] = region if reader else inner
        for child in node.get("children", []):
            self.add_plan(child, inner)


def _count_nodes(node: Mapping[str, Any], names: frozenset[str]) -> int:
    """Nodes named one of ``names``, not counting those below one (an empty relation keeps
    the plan it replaced as its children)."""
    if node["nodeName"] in names:
        return 1
    return sum(_count_nodes(child, names) for child in node.get("children", []))


def _ran_stages(log: _GroupLog, event_log: Path, job_group: str) -> dict[int, _SparkStage]:
    ran = {sid: s for sid, s in log.stages.items() if s.submitted}
    for sid, stage in ran.items():
        if not stage.completed or stage.failure:
            raise ValueError(f"{event_log}: stage {sid} of job group {job_group!r} "
                             f"{'failed: ' + stage.failure if stage.failure else 'has no end'}")
    return ran


def _resolve_skipped(log: _GroupLog, ran: Mapping[int, _SparkStage], event_log: Path
                     ) -> dict[int, int]:
    """Stage id -> the stage that ran its work. Under AQE a job lists the map stages it reads
    as new stages that never run; one with the same RDDs ran in an earlier job."""
    by_rdds = {stage.rdds: sid for sid, stage in ran.items()}
    resolved = {sid: sid for sid in ran}
    for sid, stage in log.stages.items():
        if sid not in ran:
            if stage.rdds not in by_rdds:
                raise ValueError(f"{event_log}: skipped stage {sid} matches no stage that ran "
                                 f"(RDDs {sorted(stage.rdds)})")
            resolved[sid] = by_rdds[stage.rdds]
    return resolved


def _stage_kind(stage: _SparkStage, feeds: bool, region: tuple | None,
                regions: _PlanRegions) -> str:
    """``feeds``: a stage of the group reads its shuffle (the only sign of a map stage that ran
    no task)."""
    if stage.task_type == "ShuffleMapTask" or feeds:
        return "shuffle"
    if region is None:
        return "unplaced"
    if region[0] == "root":
        return "result"
    return {_BROADCAST: "broadcast", _SUBQUERY: "subquery", _SHUFFLE: "sample"}[
        regions.node_of[region]]


def _input_bytes(stage: _SparkStage) -> int:
    names = {name: value for name, value in stage.accumulables.values()}
    return sum(int(names.get(name) or 0) for name in _INPUT_METRICS)


def stages_ran(event_log: str | Path, job_group: str, timeout_s: float = 0.0) -> RanDag:
    """The stages Spark ran for all jobs of ``job_group``, with their dependencies: shuffle
    reads (a stage's parents, skipped stages resolved to the ones that ran) and the barriers
    SQL adds (a broadcast or subquery before the stages that use it, the sample of a range
    shuffle before its map stage), placed through the SQL metrics each stage updated.
    ``timeout_s`` waits for the group's events to reach the log."""
    event_log = Path(event_log)
    log = _wait_for_group(event_log, job_group, timeout_s)
    ran = _ran_stages(log, event_log, job_group)
    resolved = _resolve_skipped(log, ran, event_log)
    regions = _PlanRegions()
    for xid, plans in log.plans.items():
        for plan in plans:
            regions.add_plan(plan, ("root", xid))
    placed: dict[int, tuple | None] = {}
    for sid, stage in ran.items():
        found = {regions.of_metric[a] for a in stage.accumulables if a in regions.of_metric}
        placed[sid] = found.pop() if len(found) == 1 else None
    feeding = {resolved[p] for stage in log.stages.values() for p in stage.parents}
    graph = nx.DiGraph()
    for sid, stage in ran.items():
        graph.add_node(sid, kind=_stage_kind(stage, sid in feeding, placed[sid], regions))
        graph.add_edges_from((resolved[p], sid) for p in stage.parents)
    for sid, kind in graph.nodes(data="kind"):
        if kind in ("broadcast", "subquery"):
            waiting = regions.consumers[placed[sid]]
            graph.add_edges_from((sid, other) for other in ran if placed[other] in waiting)
        elif kind == "sample":
            graph.add_edges_from((sid, other) for other in ran if placed[other] == placed[sid]
                                 and graph.nodes[other]["kind"] == "shuffle")
    order = list(nx.lexicographical_topological_sort(graph))
    position = {sid: i for i, sid in enumerate(order)}
    stages = tuple(PlanStage(position[sid], tuple(sorted(position[p] for p in graph.pred[sid])),
                             graph.nodes[sid]["kind"], ran[sid].tasks, _input_bytes(ran[sid]))
                   for sid in order)
    first = [plans[0] for plans in log.plans.values() if plans]
    last = [plans[-1] for plans in log.plans.values() if plans]
    switched = (sum(_count_nodes(p, _SHUFFLED_JOINS) for p in first)
                - sum(_count_nodes(p, _SHUFFLED_JOINS) for p in last))
    emptied = (sum(_count_nodes(p, _PLAN_EMPTY) for p in last)
               - sum(_count_nodes(p, _PLAN_EMPTY) for p in first))
    return RanDag(job_group, stages, tuple(order), max(switched, 0), max(emptied, 0),
                  tuple(sid for sid in order if placed[sid] is None))


# ---------------------------------------------------------------- estimate vs run


def _graph(stages: Sequence[PlanStage]) -> nx.DiGraph:
    """The stages as a graph; ``scan_tasks`` is the task count of a stage that reads no
    shuffle (its tasks are file splits, which AQE does not change), else None."""
    kind = {stage.id: stage.kind for stage in stages}
    graph = nx.DiGraph()
    for stage in stages:
        reads_shuffle = any(kind[p] == "shuffle" for p in stage.parents)
        graph.add_node(stage.id, kind=stage.kind,
                       scan_tasks=None if reads_shuffle else stage.partitions)
        graph.add_edges_from((parent, stage.id) for parent in stage.parents)
    return graph


def _same_kind(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return a["kind"] == b["kind"]


def _same_kind_and_scan(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return a["kind"] == b["kind"] and a["scan_tasks"] == b["scan_tasks"]


def _matcher(estimated: nx.DiGraph, ran: nx.DiGraph, node_match: Any = _same_kind
             ) -> nx.algorithms.isomorphism.DiGraphMatcher:
    return nx.algorithms.isomorphism.DiGraphMatcher(estimated, ran, node_match=node_match)


def stage_matching(estimated: PlanDag, actual: RanDag, scan_tasks: bool = False
                   ) -> dict[int, int] | None:
    """Estimated stage id -> the ran stage it is, when both DAGs have the same structure (and,
    with ``scan_tasks``, every stage that reads no shuffle ran the tasks estimated)."""
    matcher = _matcher(_graph(estimated.stages), _graph(actual.stages),
                       _same_kind_and_scan if scan_tasks else _same_kind)
    return dict(matcher.mapping) if matcher.is_isomorphic() else None


def _switched(graph: nx.DiGraph, join: ShuffledJoin, build: int, build_ran: bool,
              other_ran: bool) -> nx.DiGraph:
    """``graph`` with ``join`` run the way AQE runs a shuffled join it turns into a broadcast
    join once one input turned out small. The broadcast reads the ``build`` input's shuffle if
    that map stage had run (``build_ran``), else it replaces that map stage; the other input's
    map stage stays if it had run (``other_ran``), else its work moves into the joining
    stage."""
    switched = graph.copy()
    if build_ran:
        broadcast = ("runtime broadcast", join.stage, build)
        switched.add_node(broadcast, kind="broadcast")
        switched.remove_edge(build, join.stage)
        switched.add_edges_from([(build, broadcast), (broadcast, join.stage)])
    else:
        switched.nodes[build]["kind"] = "broadcast"
    other = join.inputs[1] if build == join.inputs[0] else join.inputs[0]
    if not other_ran and switched.out_degree(other) == 1:
        switched.add_edges_from((parent, join.stage) for parent in switched.pred[other])
        switched.remove_node(other)
    return switched


def _runtime_variants(estimated: PlanDag, switches: int) -> Iterator[nx.DiGraph]:
    """The estimate with ``switches`` of its shuffled joins run as broadcast joins, every way
    AQE can do that (which input, and which map stages had run when it decided)."""
    ways = list(itertools.product((0, 1), (False, True), (False, True)))
    for joins in itertools.combinations(estimated.shuffled_joins, switches):
        for choice in itertools.product(ways, repeat=switches):
            graph = _graph(estimated.stages)
            for join, (side, build_ran, other_ran) in zip(joins, choice, strict=True):
                graph = _switched(graph, join, join.inputs[side], build_ran, other_ran)
            yield graph


def _census(stages: Sequence[PlanStage]) -> str:
    counts = {kind: sum(s.kind == kind for s in stages) for kind in (*KINDS, "unplaced")}
    parts = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    return f"{len(stages)} stages ({parts})"


def _edge_census(stages: Sequence[PlanStage]) -> dict[tuple[str, str], int]:
    kind = {s.id: s.kind for s in stages}
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for stage in stages:
        for parent in stage.parents:
            counts[(kind[parent], stage.kind)] += 1
    return counts


def _edge_difference(estimated: Sequence[PlanStage], ran: Sequence[PlanStage]) -> str:
    planned, actual = _edge_census(estimated), _edge_census(ran)
    changes = [f"{a}->{b} {planned.get((a, b), 0)} vs {actual.get((a, b), 0)}"
               for a, b in sorted(set(planned) | set(actual))
               if planned.get((a, b), 0) != actual.get((a, b), 0)]
    return ("dependencies differ: " + "; ".join(changes) if changes
            else "same dependencies per kind, different shape")


def dag_difference(estimated: PlanDag, actual: RanDag) -> str | None:
    """``None`` when the estimate has the stages (count and kinds) and dependencies that ran,
    else one line saying how they differ. A difference AQE decided at run time starts with
    :data:`INHERENT`: shuffled joins the final plan runs as broadcast joins, when the
    estimate with those switches matches what ran; plan parts AQE replaced with empty
    relations, when what ran is part of the estimate (an induced subgraph)."""
    ran = _graph(actual.stages)
    if _matcher(_graph(estimated.stages), ran).is_isomorphic():
        return None
    summary = f"estimated {_census(estimated.stages)}, ran {_census(actual.stages)}"
    switches = actual.runtime_broadcast_joins
    if switches and any(_matcher(variant, ran).is_isomorphic()
                        for variant in _runtime_variants(estimated, switches)):
        return (f"{INHERENT}: {switches} shuffled join(s) ran as broadcast join(s), as the "
                f"estimate with that switch has it; {summary}")
    if actual.empty_relations and _matcher(_graph(estimated.stages), ran).subgraph_is_isomorphic():
        return (f"{INHERENT}: {actual.empty_relations} plan part(s) turned out empty, so AQE ran "
                f"only part of the estimate; {summary}")
    unplaced = (f"; Spark stages {list(actual.unplaced)} updated no SQL metric of the plan"
                if actual.unplaced else "")
    return f"{summary}; {_edge_difference(estimated.stages, actual.stages)}{unplaced}"
