"""Issue 24, case 9: every key of a training config is checked by name and type, nested
sections included; a misspelt key is an error naming the file and its dotted path."""

from __future__ import annotations

import inspect
from pathlib import Path

import gymnasium as gym
import pytest

import agents.config as config_module
from agents.config import (
    POLICY_KWARGS_KEYS,
    PPO_KEYS,
    ConfigError,
    load_config,
    load_config_with_overrides,
    shipped_entries,
)
from train_agents import main

OFFLOAD = "pipesched/DnnOffload-v0"


def user_file(tmp_path: Path, body: str, env_id: str = OFFLOAD) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(f"{env_id}:\n{body}")
    return path


@pytest.mark.parametrize("body, message", [
    ("  pretrain: {dagger_roundz: 2}\n", "unknown key pretrain.dagger_roundz"),
    ("  policy_kwargs: {net_arch: {pii: [64]}}\n", "unknown key policy_kwargs.net_arch.pii"),
    ("  ppo: {learning_rat: 0.001}\n", "unknown key ppo.learning_rat"),
    ("  env_kwargs: {max_job: 4}\n", "unknown key env_kwargs.max_job"),
    ("  pretrainn: {epochs: 3}\n", "unknown key pretrainn"),
    # YAML 1.1 reads 1e-3 (no dot) as text
    ("  ppo: {learning_rate: 1e-3}\n", "ppo.learning_rate must be a number, got '1e-3'"),
    ("  pretrain: {instances: true}\n", "pretrain.instances must be an integer, got True"),
    ("  pretrain: {epochs: -1}\n", "pretrain.epochs must be >= 0, got -1"),
    ("  demo_timesteps: 2.5\n", "demo_timesteps must be an integer, got 2.5"),
    ("  pretrain: [1, 2]\n", "pretrain must be a mapping"),
])
def test_a_bad_nested_key_names_the_file_and_dotted_path(tmp_path: Path, body: str,
                                                         message: str) -> None:
    path = user_file(tmp_path, body)
    with pytest.raises(ConfigError) as error:
        load_config(OFFLOAD, path)
    assert str(error.value).startswith(f"{path}: {OFFLOAD}: ") and message in str(error.value)


def test_a_misspelt_key_in_a_shipped_file_names_that_file(tmp_path: Path, monkeypatch) -> None:
    shipped = tmp_path / "spark_dag.yaml"
    shipped.write_text("pipesched/SparkDagShop-v0:\n  pretrain: {expert: 'a:b', instances: 2, "
                       "epochs: 1, dagger_roundz: 2}\n")
    monkeypatch.setattr(config_module, "CONFIG_DIR", tmp_path)
    with pytest.raises(ConfigError, match=f"^{shipped}: pipesched/SparkDagShop-v0: unknown key "
                                          f"pretrain.dagger_roundz"):
        load_config("pipesched/SparkDagShop-v0")


def test_dagger_rounds_need_their_episodes(tmp_path: Path, monkeypatch) -> None:
    shipped = tmp_path / "offload.yaml"
    shipped.write_text(f"{OFFLOAD}:\n  algo: maskable_ppo\n  pretrain: {{expert: "
                       f"'heuristics.offload:joint', "
                       f"instances: 2, epochs: 1, dagger_rounds: 2}}\n")
    monkeypatch.setattr(config_module, "CONFIG_DIR", tmp_path)
    with pytest.raises(ConfigError, match="pretrain needs dagger_instances"):
        load_config(OFFLOAD)


def test_an_env_id_in_two_shipped_files_is_refused(tmp_path: Path, monkeypatch) -> None:
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(f"{OFFLOAD}:\n  demo_timesteps: 10\n")
    monkeypatch.setattr(config_module, "CONFIG_DIR", tmp_path)
    with pytest.raises(ConfigError, match="also configured in"):
        load_config(OFFLOAD)


def test_null_pretrain_turns_the_warm_up_off(tmp_path: Path) -> None:
    merged, changed = load_config_with_overrides(OFFLOAD, user_file(tmp_path, "  pretrain: null\n"))
    assert merged.pretrain is None and changed == ["pretrain"]


def test_every_shipped_entry_passes_and_builds_its_env() -> None:
    for env_id in shipped_entries():
        config = load_config(env_id)
        gym.make(env_id, **config.env_kwargs).close()


def test_the_known_keys_are_sb3_contribs_own() -> None:
    """The YAML-settable arguments are a subset of MaskablePPO's and its policy's signature,
    so a key refused here is one SB3 would not take either."""
    from sb3_contrib import MaskablePPO
    from sb3_contrib.common.maskable.policies import MaskableMultiInputActorCriticPolicy

    assert set(PPO_KEYS) <= set(inspect.signature(MaskablePPO.__init__).parameters)
    assert set(POLICY_KWARGS_KEYS) <= set(
        inspect.signature(MaskableMultiInputActorCriticPolicy.__init__).parameters)


def test_train_reports_the_bad_key_in_one_line(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    path = user_file(tmp_path, "  pretrain: {dagger_roundz: 2}\n")
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown key pretrain.dagger_roundz" in err, err


def test_a_shipped_entry_without_algo_is_refused(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "offload.yaml").write_text(f"{OFFLOAD}:\n  demo_timesteps: 10\n")
    monkeypatch.setattr(config_module, "CONFIG_DIR", tmp_path)
    with pytest.raises(ConfigError, match="offload.yaml: pipesched/DnnOffload-v0: no algo key "
                                          r"\(one of maskable_ppo, listwise, cmaes\)"):
        load_config(OFFLOAD)


def test_the_pipeline_env_refuses_an_unknown_config_key() -> None:
    with pytest.raises(ValueError, match="unknown config key.*max_step_factor"):
        gym.make("pipesched/HeteroPipeline-v0", max_step_factor=2)
