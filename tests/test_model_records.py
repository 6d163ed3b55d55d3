"""Every shipped model has a training record next to it that says how it was made."""

import json
from pathlib import Path

MODELS = Path(__file__).resolve().parents[1] / "models"


def test_every_shipped_agent_has_a_training_record():
    zips = sorted(MODELS.glob("*.zip"))
    assert zips
    for model in zips:
        record = json.loads(model.with_suffix(".json").read_text())
        assert record["env_id"].startswith("pipesched/"), model.name
        for key in ("recipe", "command", "trained_on", "config"):
            assert record[key], f"{model.name}: empty {key}"
        assert (MODELS.parent / record["config"]).exists(), model.name


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
        assert (MODELS.parent / record["config"]).exists(), path.name
        last = record["validation_curve"][-1]
        assert last["validation_worst_ratio"] <= 1.0, path.name  # holds by construction
        # what training must have bought: below its heuristic's plan on validation on average
        assert last["validation_mean_ratio"] < 1.0, path.name
