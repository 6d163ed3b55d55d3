"""The rollout expert of ``benchmarks.spark_live_room``: one step of policy improvement on sjf,
so on a deterministic live-mode stream it is never worse than sjf, and replaying its answers
reproduces its run."""

import numpy as np

from benchmarks.spark_live_room import TRACES, ReplayThenSjf, RolloutExpert, mean_jct_s
from envs.spark_dag import LiveSequenceGenerator, load_live_templates
from heuristics.spark_dag import make_heuristic


def test_expert_never_loses_to_sjf_and_replays_exactly():
    generator = LiveSequenceGenerator(load_live_templates(TRACES / "tpch_sf1_local_e1-2.json"),
                                      num_jobs=8, load=2.0, num_executors=2)
    gains = []
    for seed in (1, 2, 3):
        jobs = generator(np.random.default_rng(seed))
        expert = RolloutExpert(jobs)
        expert_s = mean_jct_s(jobs, expert)
        sjf_s = mean_jct_s(jobs, make_heuristic("sjf"))
        assert expert_s <= sjf_s + 1e-9
        assert mean_jct_s(jobs, ReplayThenSjf(expert.answers)) == expert_s
        gains.append(sjf_s - expert_s)
    assert max(gains) > 0  # it finds something sjf misses on at least one stream
