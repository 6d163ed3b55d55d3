"""The offloading env and the same agent code on mixed chain/DAG batches."""

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env
from sb3_contrib import MaskablePPO

import envs  # noqa: F401
from agents.evaluate import run_episode
from envs.offload import simulate
from envs.offload.dag import DagJob
from envs.offload.env import DnnOffloadEnv
from envs.offload.generator import DagProfileGenerator

GENERATOR = DagProfileGenerator(min_jobs=2, max_jobs=3, models=("resnet18", "googlenet",
                                "alexnet"), bandwidth="4G", device_scale=8.0)


def test_env_accepts_dag_jobs_and_passes_check_env():
    env = DnnOffloadEnv(max_jobs=3, max_cuts=40, generator=GENERATOR)
    check_env(env, skip_render_check=True)
    instance = GENERATOR(np.random.default_rng(4))
    assert any(isinstance(job, DagJob) for job in instance.jobs)
    _, info = env.reset(seed=0, options={"instance": instance})
    rng = np.random.default_rng(0)
    done = False
    while not done:
        action = int(rng.choice(np.flatnonzero(info["action_mask"])))
        _, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    assert info["invalid_actions"] == 0
    assert info["makespan_s"] == simulate(instance, info["plan"]).makespan_s


def test_same_agent_code_trains_on_mixed_batches(tmp_path):
    from agents.config import load_config

    config = load_config("pipesched/DnnOffload-v0")
    env = gym.make("pipesched/DnnOffload-v0", max_jobs=3, max_cuts=40, generator=GENERATOR)
    policy_kwargs = {**config.resolved_policy_kwargs(),
                     "features_extractor_kwargs": {"embed_dim": 16, "heads": 2},
                     "net_arch": {"pi": [], "vf": [16]}}
    model = MaskablePPO(config.resolved_policy(), env, n_steps=32, batch_size=16, n_epochs=1,
                        policy_kwargs=policy_kwargs, seed=0, device="cpu")
    model.learn(64)
    model.save(tmp_path / "mixed.zip")
    from agents.scheduler import load_scheduler

    scheduler = load_scheduler(str(tmp_path / "mixed.zip"))
    instance = GENERATOR(np.random.default_rng(9))
    info = run_episode(env.unwrapped, scheduler, options={"instance": instance})
    assert sorted(job for job, _ in info["plan"]) == list(range(instance.num_jobs))
    assert all(0 <= cut < instance.jobs[job].num_cuts for job, cut in info["plan"])
    assert info["makespan_s"] == simulate(instance, info["plan"]).makespan_s
