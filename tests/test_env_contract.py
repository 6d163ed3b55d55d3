"""Issue 25, item 3: every env is ``Env(config=None, *, generator=None, render_mode=None,
**overrides)`` over a frozen config dataclass named in the problem table."""

from __future__ import annotations

import dataclasses
import inspect
import math
import pickle
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.hetero_pipeline import ToyIdenticalGenerator
from envs.offload import ToyBalanceGenerator
from envs.param_server import ClusteredToyGenerator, ZipfTopicGenerator
from envs.scheduler import run_episode
from envs.spark_dag import ToyGenerator

NAMES = sorted(envs.PROBLEMS)

#: per problem: overrides that ``gym.make`` must apply (small, so the episodes stay short)
OVERRIDES: dict[str, dict[str, Any]] = {
    "offload": {"max_jobs": 3, "max_cuts": 40, "max_invalid_actions": 5},
    "param_server": {"max_machines": 8, "generator_kwargs": {"num_blocks": 8, "num_shards": 16},
                     "reward_weights": {"invalid_action": 2.0}},
    "spark_dag": {"num_jobs": 3, "num_executors": 8, "load": [0.5, 0.9], "max_jobs": 4},
    "hetero_pipeline": {"max_devices": 6, "max_steps_factor": 2},
}

#: per problem: one more override given next to a ``config`` object
ON_TOP: dict[str, tuple[str, Any]] = {
    "offload": ("max_invalid_actions", 7), "param_server": ("max_invalid_actions", 50),
    "spark_dag": ("max_steps", 5000), "hetero_pipeline": ("max_steps_factor", 3),
}

#: per problem: (field, bad value) pairs, each refused by name
BAD_VALUES: dict[str, list[tuple[str, Any]]] = {
    "offload": [("max_jobs", 0), ("max_cuts", 2.5), ("invalid_penalty", -1.0),
                ("reward_scale", math.nan), ("max_invalid_actions", True)],
    "param_server": [("generator_name", "zipff"), ("max_machines", 0),
                     ("generator_kwargs", [1, 2]), ("reward_weights", {"iteration": 1.0}),
                     ("invalid_action_penalty", -0.5)],
    "spark_dag": [("mode", "streaming"), ("observation_mode", "flat"), ("num_executors", 0),
                  ("load", (0.9, 0.5)), ("network_mix", 1.5), ("warmup_s", -1.0),
                  ("commit_when", "never"), ("cap_share_multiples", (0.0, 1.0)),
                  ("reward_weights", {"jct": -1.0}), ("record", "yes"), ("max_stages", 0)],
    "hetero_pipeline": [("max_devices", 0), ("max_layers", -3), ("max_steps_factor", 1.5),
                        ("reward_weights", {"invalid_action": "high"})],
}


class FirstValid:
    """A Scheduler taking the first valid action (the graph view's: wait, then a decision)."""

    def reset(self) -> None:
        pass

    def act(self, observation: Any, action_mask: np.ndarray) -> int:
        return int(np.flatnonzero(action_mask)[0])


class Recording:
    """Wraps a generator and keeps what it drew, to prove the env used it."""

    def __init__(self, inner: Callable[[np.random.Generator], Any]) -> None:
        self.inner, self.drawn = inner, []

    def __call__(self, rng: np.random.Generator) -> Any:
        self.drawn.append(self.inner(rng))
        return self.drawn[-1]


def toy(name: str) -> tuple[dict[str, Any], Any, Callable[[Any], float]]:
    """Overrides, a toy generator and its known optimum (given the env's config)."""
    if name == "offload":
        generator = ToyBalanceGenerator(num_jobs=4)
        return {"max_jobs": 4}, generator, lambda config: generator.optimal_makespan_s()
    if name == "param_server":
        generator = ClusteredToyGenerator()
        return {"max_machines": 4}, generator, lambda config: generator.optimum_s()
    if name == "spark_dag":
        generator = ToyGenerator(num_executors=4)
        return ({"num_executors": 4, "mode": "batch"}, generator,
                lambda config: generator.optimal_makespan_s(config.warmup_s,
                                                            config.moving_delay_s))
    generator = ToyIdenticalGenerator()
    return {}, generator, lambda config: generator.optimum_s()


def parts(name: str) -> tuple[envs.Problem, type, type]:
    problem = envs.PROBLEMS[name]
    return problem, problem.load("env_class"), problem.load("config")


@pytest.mark.parametrize("name", NAMES)
def test_the_table_names_the_config_and_the_env_builds_from_defaults(name: str) -> None:
    problem, env_class, config_class = parts(name)
    assert dataclasses.is_dataclass(config_class) and config_class.__dataclass_params__.frozen
    env = env_class(**{})
    assert type(env.config) is config_class and env.config == config_class()
    assert env.render_mode is None and env.generator is not None
    env.reset(seed=0)
    assert env.observation_space.contains(env.observation_space.sample())
    assert env.action_space.contains(env.action_space.sample())


@pytest.mark.parametrize("name", NAMES)
def test_one_signature(name: str) -> None:
    _, env_class, _ = parts(name)
    parameters = list(inspect.signature(env_class.__init__).parameters.values())[1:]
    shape = [(p.name, p.kind, p.default) for p in parameters]
    assert shape == [
        ("config", inspect.Parameter.POSITIONAL_OR_KEYWORD, None),
        ("generator", inspect.Parameter.KEYWORD_ONLY, None),
        ("render_mode", inspect.Parameter.KEYWORD_ONLY, None),
        ("overrides", inspect.Parameter.VAR_KEYWORD, inspect.Parameter.empty),
    ]


@pytest.mark.parametrize("name", NAMES)
def test_an_unknown_override_is_refused_by_name(name: str) -> None:
    problem, env_class, config_class = parts(name)
    with pytest.raises(ValueError) as error:
        gym.make(problem.env_id, max_jbos=3)
    message = str(error.value)
    assert "unknown config key(s) 'max_jbos'" in message and "\n" not in message
    assert all(field.name in message for field in dataclasses.fields(config_class))
    with pytest.raises(ValueError, match="'max_jbos'"):
        env_class(config_class(), max_jbos=3)


@pytest.mark.parametrize("name, field, value",
                         [(name, *bad) for name in NAMES for bad in BAD_VALUES[name]])
def test_a_bad_value_is_refused_naming_the_field(name: str, field: str, value: Any) -> None:
    _, env_class, config_class = parts(name)
    for build in (lambda: config_class(**{field: value}), lambda: env_class(**{field: value})):
        with pytest.raises(ValueError) as error:
            build()
        message = str(error.value)
        assert field in message and repr(value) in message and "\n" not in message


@pytest.mark.parametrize("name", NAMES)
def test_a_config_of_another_kind_is_refused(name: str) -> None:
    _, env_class, config_class = parts(name)
    with pytest.raises(TypeError, match=f"config must be a {config_class.__name__} or None"):
        env_class({"max_jobs": 3})
    with pytest.raises(ValueError, match="render_mode must be None or one of"):
        env_class(render_mode="human")
    with pytest.raises(TypeError, match="generator must be a callable"):
        env_class(generator=3)


@pytest.mark.parametrize("name", NAMES)
def test_the_config_is_frozen_and_picklable(name: str) -> None:
    _, env_class, config_class = parts(name)
    config = dataclasses.replace(config_class(), **OVERRIDES[name])
    first = dataclasses.fields(config_class)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, first, getattr(config, first))
    assert pickle.loads(pickle.dumps(config)) == config
    env = env_class(config)
    assert pickle.loads(pickle.dumps(env)).config == config


def test_a_caller_mapping_does_not_change_a_config_later() -> None:
    weights = {"invalid_action": 0.5}
    config = envs.PROBLEMS["hetero_pipeline"].load("config")(reward_weights=weights)
    weights["invalid_action"] = 9.0
    assert config.reward_weights == {"iteration_time": 1.0, "invalid_action": 0.5}


@pytest.mark.parametrize("name", NAMES)
def test_gym_make_applies_overrides_on_top_of_a_config(name: str) -> None:
    problem, _, config_class = parts(name)
    overrides = OVERRIDES[name]
    env = gym.make(problem.env_id, **overrides).unwrapped
    assert env.config == config_class(**overrides)
    for key, value in overrides.items():
        if not isinstance(value, dict | list):  # mappings merge, lists become tuples
            assert getattr(env.config, key) == value
    base = config_class(**overrides)
    field, value = ON_TOP[name]
    env = gym.make(problem.env_id, config=base, **{field: value}).unwrapped
    assert env.config == dataclasses.replace(base, **{field: value}) != base
    info = run_episode(env, FirstValid(), seed=0)
    assert info["invalid_actions"] == 0 and info["complete"] is True


@pytest.mark.parametrize("name", NAMES)
def test_an_injected_generator_is_used(name: str) -> None:
    problem, _, _ = parts(name)
    overrides, generator, optimum = toy(name)
    recording = Recording(generator)
    env = gym.make(problem.env_id, generator=recording, **overrides).unwrapped
    assert env.generator is recording
    info = run_episode(env, FirstValid(), seed=0)
    assert len(recording.drawn) == 1 and info["complete"] is True
    assert info[problem.objective] >= optimum(env.config) * (1 - 1e-9)
    drawn = recording.drawn[0]
    if name == "spark_dag":
        assert [job.name for job in env.sim.jobs] == [job.name for job in drawn]
    else:
        assert env.instance is drawn


def test_spark_toy_optimum_is_reached_through_the_injected_generator() -> None:
    """Every work-conserving scheduler granting all executors reaches the toy's optimum."""
    from heuristics.spark_dag import make_heuristic

    overrides, generator, optimum = toy("spark_dag")
    env = envs.PROBLEMS["spark_dag"].load("env_class")(generator=generator,
                                                       observation_mode="graph", **overrides)
    info = run_episode(env, make_heuristic("fifo"), seed=0)
    assert info["makespan_s"] == pytest.approx(optimum(env.config))


def test_param_server_keeps_the_yaml_generator_spelling() -> None:
    problem, env_class, config_class = parts("param_server")
    env = gym.make(problem.env_id, generator="toy", generator_kwargs={"num_machines": 2}).unwrapped
    assert env.config.generator_name == "toy" and isinstance(env.generator, ClusteredToyGenerator)
    assert env.generator.num_machines == 2
    with pytest.raises(ValueError, match="both name the generator"):
        env_class(generator="toy", generator_name="zipf")
    with pytest.raises(ValueError, match="generator_kwargs .* only apply to a named generator"):
        env_class(generator=ZipfTopicGenerator(), generator_kwargs={"num_blocks": 4})
    with pytest.raises(ValueError, match="'mixed' generator takes no generator_kwargs"):
        env_class(generator_name="mixed", generator_kwargs={"num_blocks": 4})
