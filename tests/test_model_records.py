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
