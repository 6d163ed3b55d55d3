"""Training configurations, zoo-style: YAML files keyed by Gymnasium id.

Every ``agents/configs/*.yaml`` is read and merged; ``--config FILE`` is deep-merged into the
shipped entry of the same env id (mappings merge key by key, any other value replaces), so a
file holding only ``ppo: {learning_rate: 1.0e-3}`` changes that one value. An entry looks
like::

    pipesched/DnnOffload-v0:
      policy: agents.policies:ScorePolicy
      env_kwargs: {n_max_jobs: 6}
      ppo: {n_steps: 256, batch_size: 64, learning_rate: 3.0e-4, gamma: 1.0, ent_coef: 0.01}
      policy_kwargs:
        features_extractor_class: agents.extractors.offload:JobCutSetExtractor
        features_extractor_kwargs: {embed_dim: 64}
        net_arch: [64, 64]
      demo_timesteps: 20000
      pretrain: {expert: "heuristics.offload:joint", instances: 300, epochs: 30}  # optional

``pretrain`` warm-starts the policy by behaviour cloning (see :mod:`agents.imitation`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class TrainConfig:
    env_id: str
    policy: str = "MultiInputPolicy"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    ppo: dict[str, Any] = field(default_factory=dict)
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    demo_timesteps: int = 20_000
    pretrain: dict[str, Any] | None = None

    def resolved_policy(self) -> str | type:
        """The SB3 policy: a registered name, or a ``module:Class`` string imported."""
        return import_object(self.policy) if ":" in self.policy else self.policy

    def resolved_policy_kwargs(self) -> dict[str, Any]:
        """``policy_kwargs`` with ``module:Class`` strings imported."""
        kwargs = dict(self.policy_kwargs)
        name = kwargs.get("features_extractor_class")
        if isinstance(name, str):
            kwargs["features_extractor_class"] = import_object(name)
        return kwargs


def import_object(spec: str) -> Any:
    """Import ``"package.module:Name"``."""
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"expected 'module:Name', got {spec!r}")
    return getattr(importlib.import_module(module_name), attr)


FIELDS = {"policy", "env_kwargs", "ppo", "policy_kwargs", "demo_timesteps", "pretrain"}


class ConfigError(ValueError):
    """A configuration file that cannot be used (message names the file and the field)."""


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path) as handle:
            data = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping keyed by env id")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any], prefix: str = ""
               ) -> tuple[dict[str, Any], list[str]]:
    """``override`` merged into a copy of ``base``; also the dotted keys it set."""
    merged, changed = dict(base), []
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key], inner = deep_merge(base[key], value, f"{prefix}{key}.")
            changed += inner
        else:
            merged[key] = value
            changed.append(f"{prefix}{key}")
    return merged, changed


def shipped_entries() -> dict[str, Any]:
    entries: dict[str, Any] = {}
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        entries.update(_read_yaml(path))
    return entries


def load_config_with_overrides(env_id: str, config_path: str | Path | None = None
                               ) -> tuple[TrainConfig, list[str]]:
    """The configuration for ``env_id`` and the dotted keys ``config_path`` overrode."""
    entry = shipped_entries().get(env_id, {})
    changed: list[str] = []
    if config_path is not None:
        user = _read_yaml(Path(config_path))
        if env_id not in user:
            raise ConfigError(f"{config_path}: no entry for {env_id} (entries: "
                              f"{sorted(user) or 'none'})")
        if not isinstance(user[env_id], dict):
            raise ConfigError(f"{config_path}: the entry for {env_id} must be a mapping")
        entry, changed = deep_merge(entry, user[env_id])
    unknown = set(entry) - FIELDS
    if unknown:
        source = config_path or CONFIG_DIR
        raise ConfigError(f"{source}: config for {env_id}: unknown field(s) {sorted(unknown)}; "
                          f"known: {sorted(FIELDS)}")
    return TrainConfig(env_id=env_id, **entry), changed


def load_config(env_id: str, config_path: str | Path | None = None) -> TrainConfig:
    """The configuration for ``env_id``: the shipped entry, ``config_path`` deep-merged in."""
    return load_config_with_overrides(env_id, config_path)[0]
