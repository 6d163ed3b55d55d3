"""Run spark-sched-sim (a user's checkout, not shipped) on given TPC-H job sequences.

    python benchmarks/sss_driver.py SPARK_SCHED_SIM_DIR SEQUENCES.json OUT.json

Started by ``benchmarks.spark_reference`` in a subprocess whose working directory holds
``data/tpch`` (a link to Decima's traces, where spark-sched-sim reads them). Same
``SEQUENCES.json`` as ``decima_driver.py``. Its own ``TPCHDataSampler`` builds the jobs (only
the query, size and arrival come from the sequence) and its ``SparkSchedSimEnv`` simulates
them. A run's scheduler is ``fair`` or ``fifo`` (its ``RoundRobinScheduler`` with or without
dynamic partition), ``policy:PATH`` or ``heuristic:NAME`` (as in ``decima_driver.py``, played
through ``benchmarks/reference_adapter.py``: the env's state at each decision as a
``ClusterState``, the decision back as its action dict); every run's scheduler is checked
before spark-sched-sim is loaded and a bad one is refused in one line (exit 2). Writes per run
the scheduler as given, mean JCT over the finished jobs (``jobs_done`` of ``jobs_total``),
the episode's process CPU seconds and its number of decisions.
The ``schedulers`` package is entered without its ``__init__`` (which needs torch_geometric
for the Decima agent; the heuristics need only torch).
"""

from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path

# run as a script in a scratch folder: the spec checks and the adapter come from this repository
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.reference_adapter import DecisionError, SssAgent, graph_schedulers  # noqa: E402
from benchmarks.reference_spec import SpecError, load_spec, run_result  # noqa: E402

USAGE = "usage: python benchmarks/sss_driver.py SPARK_SCHED_SIM_DIR SEQUENCES.json OUT.json"


class _FixedQuery:
    """Stands in for the sampler's generator while it builds one job: its two draws (query,
    size) return the sequence's."""

    def __init__(self, query: int, size: str) -> None:
        self.query, self.size = query, size

    def integers(self, *args: object, **kwargs: object) -> int:
        return self.query - 1

    def choice(self, *args: object, **kwargs: object) -> str:
        return self.size


def main() -> None:
    if len(sys.argv) != 4:
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    root, sequences_path, out_path = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    try:
        spec = load_spec(sequences_path)
        graph = graph_schedulers(spec, sequences_path)
    except SpecError as error:
        print(f"sss_driver: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    sys.path.insert(0, str(root))
    package = types.ModuleType("schedulers")
    package.__path__ = [str(root / "schedulers")]
    sys.modules["schedulers"] = package
    import gymnasium as gym
    from schedulers.heuristics.round_robin import RoundRobinScheduler
    from spark_sched_sim import metrics
    from spark_sched_sim.data_samplers.tpch import TPCHDataSampler

    results = []
    for index, run in enumerate(spec["runs"]):
        def job_sequence(self, max_time, jobs=run["jobs"]):
            sequence = []
            for job_id, (size, query, arrival_ms) in enumerate(jobs):
                rng, self.np_random = self.np_random, _FixedQuery(query, size)
                try:
                    job = self._sample_job(job_id, float(arrival_ms))
                finally:
                    self.np_random = rng
                sequence.append((float(arrival_ms), job))
            return sequence

        TPCHDataSampler.job_sequence = job_sequence
        env_cfg = {"num_executors": spec["executors"], "job_arrival_cap": len(run["jobs"]),
                   "job_arrival_rate": 4.0e-5, "moving_delay": float(spec["moving_delay_ms"]),
                   "warmup_delay": float(spec["warmup_ms"]),
                   "data_sampler_cls": "TPCHDataSampler"}
        env = gym.make("spark_sched_sim:SparkSchedSimEnv-v0", env_cfg=env_cfg)
        if graph[index] is None:
            scheduler = RoundRobinScheduler(spec["executors"], dynamic_partition={
                "fair": True, "fifo": False}[run["scheduler"]])
        else:
            scheduler = SssAgent(graph[index], env)
        cpu = time.process_time()
        obs, _ = env.reset(seed=run["seed"], options=None)
        terminated = truncated = False
        decisions = 0
        try:
            while not (terminated or truncated):
                action, _ = scheduler.schedule(obs)
                obs, _, terminated, truncated, _ = env.step(action)
                decisions += 1
        except DecisionError as error:
            print(f"sss_driver: runs[{index}] seed {run['seed']}: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        cpu = time.process_time() - cpu
        done = len(env.unwrapped.completed_job_ids)
        mean_jct_s = float(metrics.avg_job_duration(env)) / 1000.0 if done else None
        results.append(run_result(run, mean_jct_s, done, cpu, decisions))
        env.close()
    with open(out_path, "w") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    main()
