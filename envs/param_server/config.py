"""Settings of ``pipesched/ParamServer-v0`` (:class:`envs.param_server.env.ParamServerEnv`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from envs.env_config import (
    freeze_weights,
    require,
    require_choice,
    require_integer,
    require_number,
)
from envs.param_server.generator import (
    ClusteredToyGenerator,
    DatasetGenerator,
    MixtureGenerator,
    ZipfTopicGenerator,
)
from envs.param_server.instance import ParamServerInstance
from envs.shipped import DATA_DIR

SITEPACKAGES_PATH = DATA_DIR / "param_server" / "sitepackages.npz"
GENERATOR_NAMES = ("zipf", "toy", "sitepackages", "mixed")
REWARD_WEIGHTS = {"iteration_increase": 1.0, "invalid_action": 1.0}

GeneratorFn = Callable[[np.random.Generator], ParamServerInstance]


def named_generator(name: str, **kwargs: Any) -> GeneratorFn:
    """Generators that a YAML config can name: ``zipf``, ``toy``, ``sitepackages``, ``mixed``.

    ``mixed`` (agent training) draws Zipf instances with 4, 8 or 16 machines, 24-64 blocks and
    64-256 shards, and the site-packages data on 4 or 8 machines.
    """
    if name == "zipf":
        return ZipfTopicGenerator(**kwargs)
    if name == "toy":
        return ClusteredToyGenerator(**kwargs)
    if name == "sitepackages":
        return DatasetGenerator(kwargs.pop("dataset_path", SITEPACKAGES_PATH), **kwargs)
    if name == "mixed":
        if kwargs:
            raise ValueError(f"the 'mixed' generator takes no generator_kwargs, got "
                             f"{sorted(kwargs)}")
        zipf = [ZipfTopicGenerator(num_blocks=b, num_shards=s, num_machines=m)
                for m in (4, 8, 16) for b, s in ((24, 64), (48, 128), (64, 256))]
        real = [DatasetGenerator(SITEPACKAGES_PATH, m) for m in (4, 8)]
        return MixtureGenerator(tuple(zipf + real))
    raise ValueError(f"unknown generator {name!r}; expected one of {', '.join(GENERATOR_NAMES)}")


@dataclass(frozen=True)
class ParamServerConfig:
    """``generator_name`` names the default generator (:func:`named_generator`; YAML's
    ``generator: mixed`` is this field) built with ``generator_kwargs``; ``max_machines`` pads
    the machine axis; ``reward_weights`` weighs the ``iteration_increase`` and
    ``invalid_action`` terms (a partial mapping keeps the other default), an invalid action
    costs ``invalid_action_penalty``; the episode truncates after ``max_invalid_actions``."""

    generator_name: str = "zipf"
    generator_kwargs: Mapping[str, Any] = field(default_factory=dict)
    max_machines: int = 16
    reward_weights: Mapping[str, float] = field(default_factory=lambda: dict(REWARD_WEIGHTS))
    invalid_action_penalty: float = 0.1
    max_invalid_actions: int = 1000

    def __post_init__(self) -> None:
        require_choice(self, "generator_name", GENERATOR_NAMES)
        require(self, "generator_kwargs", isinstance(self.generator_kwargs, Mapping),
                "a mapping of the generator's arguments")
        object.__setattr__(self, "generator_kwargs", dict(self.generator_kwargs))
        require_integer(self, "max_machines")
        freeze_weights(self, "reward_weights", REWARD_WEIGHTS)
        require_number(self, "invalid_action_penalty", 0.0)
        require_integer(self, "max_invalid_actions")

    def default_generator(self) -> GeneratorFn:
        return named_generator(self.generator_name, **self.generator_kwargs)
