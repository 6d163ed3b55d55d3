"""Every shipped model has a training record next to it that says how it was made, and the
record's config and model are the ones that load."""

import json
from pathlib import Path

import gymnasium as gym

from agents import load_scheduler
from agents.config import load_config
from envs import problem_for

MODELS = Path(__file__).resolve().parents[1] / "models"
LOADERS = {"hetero_pipeline_agent.ranker.json": "agents.hetero_pipeline.agent",
           "param_server_agent.ranker.json": "agents.param_server.agent"}


def test_every_shipped_agent_has_a_training_record_whose_config_and_model_load():
    zips = sorted(MODELS.glob("*.zip"))
    assert zips
    for model in zips:
        record = json.loads(model.with_suffix(".json").read_text())
        for key in ("recipe", "command", "trained_on", "config"):
            assert record[key], f"{model.name}: empty {key}"
        # the recorded config parses and configures this env (a stale path or entry fails here)
        config = load_config(record["env_id"], MODELS.parent / record["config"])
        assert config.policy, model.name
        scheduler = load_scheduler(str(model))
        env = gym.make(record["env_id"], **record.get("env_kwargs", {}))
        assert scheduler.model.observation_space == env.observation_space, model.name
        assert scheduler.model.action_space == env.action_space, model.name
        env.close()


def test_every_ranker_agent_has_its_record_and_learning_curve():
    rankers = sorted(MODELS.glob("*.ranker.json"))
    assert [p.name for p in rankers] == ["hetero_pipeline_agent.ranker.json",
                                         "param_server_agent.ranker.json"]
    for path in rankers:
        record = json.loads(path.read_text())
        for key in ("env_id", "recipe", "command", "seeds", "steps", "wall_s",
                    "validation_curve", "trained_on", "config"):
            assert record[key], f"{path.name}: empty {key}"
        assert (MODELS / record["learning_curve_png"]).is_file(), path.name
        # the problem table's loader reads the file the table names
        problem = problem_for(record["env_id"])
        assert problem.agent == path.name
        agent = problem.load("agent_loader")(path)
        assert agent.weights.tolist() == record["weights"], path.name
        # what training must have bought: below its heuristic's plan on validation on average
        assert record["validation_curve"][-1]["validation_mean_ratio"] < 1.0, path.name
