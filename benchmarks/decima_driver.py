"""Run decima-sim (a user's checkout, not shipped) on given TPC-H job sequences.

    python benchmarks/decima_driver.py DECIMA_SIM_DIR SEQUENCES.json OUT.json

Started by ``benchmarks.spark_reference`` in a subprocess whose working directory is the
decima-sim checkout (its ``param.py`` parses ``sys.argv`` at import). ``SEQUENCES.json``:
``{"executors": 50, "moving_delay_ms": 2000, "warmup_ms": 1000, "tpch_dir": ...,
"runs": [{"scheduler": ..., "seed": 0, "jobs": [[size, query, arrival_ms], ...]}]}``.
A run's scheduler is ``fair`` (decima-sim's ``DynamicPartitionAgent``), ``fifo`` (the same
agent with one job's share, every executor to the earliest job that can use it: Spark's
FIFO), ``policy:PATH`` (a pipesched policy file; a relative path is read from the folder
holding the shipped ``models/``) or ``heuristic:NAME`` (``heuristics.spark_dag.HEURISTICS``);
the last two play through ``benchmarks/reference_adapter.py`` (decima-sim's state at each
decision as a ``ClusterState``, the decision back as its ``(node, limit)``). Every run's
scheduler is checked (names, policy files and their executor counts) before decima-sim is
loaded; a bad one is refused in one line (exit 2).
Decima's own objects load the jobs (``load_job``) and its ``Environment`` simulates them.
Writes per run the scheduler as given, the mean JCT (s) over the finished jobs, ``jobs_done``
of ``jobs_total``, the process CPU seconds of the episode and the number of decisions.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

# run as a script from a decima-sim checkout: the spec checks and the adapter come from this
# repository
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.reference_adapter import DecimaAgent, DecisionError, graph_schedulers  # noqa: E402
from benchmarks.reference_spec import SpecError, load_spec, run_result  # noqa: E402

USAGE = "usage: python benchmarks/decima_driver.py DECIMA_SIM_DIR SEQUENCES.json OUT.json"


def main() -> None:
    if len(sys.argv) != 4:
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    decima_dir, sequences_path, out_path = sys.argv[1:4]
    try:
        spec = load_spec(sequences_path)
        graph = graph_schedulers(spec, sequences_path)
    except SpecError as error:
        print(f"decima_driver: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    sys.argv = [sys.argv[0], "--exec_cap", str(spec["executors"]), "--num_init_dags", "1",
                "--moving_delay", str(spec["moving_delay_ms"]),
                "--warmup_delay", str(spec["warmup_ms"]),
                "--job_folder", spec["tpch_dir"].rstrip("/") + "/"]
    sys.path.insert(0, decima_dir)
    import numpy as np
    from heuristic_agent import DynamicPartitionAgent
    from param import args
    from spark_env import env as decima_env
    from spark_env.job_generator import load_job
    from utils import OrderedSet

    class FifoAgent(DynamicPartitionAgent):
        def get_action(self, obs):  # every executor to the earliest job that can use it
            saved = args.exec_cap
            job_dags = obs[0]
            args.exec_cap = saved * max(1, len(job_dags))
            try:
                return super().get_action(obs)
            finally:
                args.exec_cap = saved

    results = []
    for index, run in enumerate(spec["runs"]):
        def generate(np_random, timeline, wall_time, jobs=run["jobs"]):
            dags = OrderedSet()
            for size, query, arrival_ms in jobs:
                dag = load_job(args.job_folder, size, str(query), wall_time, np_random)
                dag.start_time = arrival_ms
                if arrival_ms == 0:
                    dag.arrived = True
                    dags.add(dag)
                else:
                    timeline.push(arrival_ms, dag)
            return dags

        decima_env.generate_jobs = generate
        environment = decima_env.Environment()
        environment.seed(run["seed"])
        np.random.seed(run["seed"])
        if graph[index] is None:
            agent = {"fifo": FifoAgent, "fair": DynamicPartitionAgent}[run["scheduler"]]()
        else:
            agent = DecimaAgent(graph[index], environment, int(spec["executors"]))
        cpu = time.process_time()
        environment.reset(max_time=np.inf)
        obs = environment.observe()
        done, decisions = False, 0
        try:
            while not done:
                node, limit = agent.get_action(obs)
                obs, _, done = environment.step(node, limit)
                decisions += 1
        except DecisionError as error:
            print(f"decima_driver: runs[{index}] seed {run['seed']}: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        cpu = time.process_time() - cpu
        finished = environment.finished_job_dags
        jct = [(dag.completion_time - dag.start_time) / 1000.0 for dag in finished]
        mean_jct_s = float(np.mean(jct)) if jct else None
        results.append(run_result(run, mean_jct_s, len(jct), cpu, decisions))
    with open(out_path, "w") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    main()
