"""Training configurations, zoo-style: YAML files keyed by Gymnasium id.

Every ``agents/configs/*.yaml`` is read and merged; ``--config FILE`` overrides entries. An
entry looks like::

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


def _read_yaml(path: Path) -> dict[str, Any]:
    with open(path) as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a mapping keyed by env id")
    return data


def load_config(env_id: str, config_path: str | Path | None = None) -> TrainConfig:
    """The merged configuration for ``env_id`` (shipped files, then ``config_path``)."""
    entries: dict[str, Any] = {}
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        entries.update(_read_yaml(path))
    if config_path is not None:
        entries.update(_read_yaml(Path(config_path)))
    entry = entries.get(env_id, {})
    unknown = set(entry) - {"policy", "env_kwargs", "ppo", "policy_kwargs", "demo_timesteps",
                            "pretrain"}
    if unknown:
        raise ValueError(f"config for {env_id}: unknown field(s) {sorted(unknown)}")
    return TrainConfig(env_id=env_id, **entry)
