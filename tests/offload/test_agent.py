"""A short MaskablePPO run end to end: behaviour cloning, PPO, save, load, plan."""

import yaml

from agents import load_scheduler
from agents.planning import plan_with_model
from agents.train import train
from envs.offload import ProfileGenerator, simulate


def test_short_maskable_ppo_run_trains_saves_and_plans(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"pipesched/DnnOffload-v0": {
        "policy": "agents.policies:ScorePolicy",
        "env_kwargs": {"max_jobs": 4, "max_cuts": 80},
        "ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 2},
        "policy_kwargs": {
            "features_extractor_class": "agents.extractors.offload:JobCutSetExtractor",
            "features_extractor_kwargs": {"embed_dim": 16, "heads": 2},
            "net_arch": {"pi": [], "vf": [16]}},
        "pretrain": {"expert": "heuristics.offload:joint", "instances": 4, "epochs": 2,
                     "dagger_rounds": 1, "dagger_instances": 2, "dagger_epochs": 1},
    }}))
    result = train("pipesched/DnnOffload-v0", timesteps=128, seed=0, n_envs=1,
                   config_path=config, out_dir=tmp_path, progress_bar=False)
    assert result.model_path.exists()
    assert (result.model_path.parent / "model_pretrained.zip").exists()
    scheduler = load_scheduler(str(result.model_path))
    assert scheduler.model.num_timesteps >= 128

    import numpy as np

    instance = ProfileGenerator(min_jobs=4, max_jobs=4)(np.random.default_rng(1))
    plan = plan_with_model(str(result.model_path), instance)
    assert sorted(job for job, _ in plan) == [0, 1, 2, 3]
    assert simulate(instance, plan).makespan_s > 0
