"""Training configurations, zoo-style: YAML files keyed by Gymnasium id.

Every ``agents/configs/*.yaml`` is read and merged; ``--config FILE`` is deep-merged into the
shipped entry of the same env id (mappings merge key by key, any other value replaces), so a
file holding only ``ppo: {learning_rate: 1.0e-3}`` changes that one value; ``--set KEY=VALUE``
(a dotted key, a YAML value) is merged last. ``algo`` names the training algorithm
(:data:`agents.algos.ALGOS`). A ``maskable_ppo`` entry looks like::

    pipesched/DnnOffload-v0:
      algo: maskable_ppo
      policy: agents.algos.policies:ScorePolicy
      env_kwargs: {n_max_jobs: 6}
      ppo: {n_steps: 256, batch_size: 64, learning_rate: 3.0e-4, gamma: 1.0, ent_coef: 0.01}
      policy_kwargs:
        features_extractor_class: agents.offload.extractor:JobCutSetExtractor
        features_extractor_kwargs: {embed_dim: 64}
        net_arch: [64, 64]
      demo_timesteps: 20000
      pretrain: {expert: "heuristics.offload:joint", instances: 300, epochs: 30}  # optional
      maskable_ppo: {n_envs: 1, validation_episodes: 10}                         # optional

``pretrain`` warm-starts the policy by behaviour cloning (see :mod:`agents.algos.imitation`).
A ``listwise`` or ``cmaes`` entry holds its settings in a section of that name, whose keys are
the fields of the problem's ``Settings`` dataclass in ``agents/<problem>/train.py``.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agents.algos import ALGOS, BUDGET_KEYS, PROBLEM_SECTIONS, recipe_module

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
    algo: str = "maskable_ppo"
    maskable_ppo: dict[str, Any] = field(default_factory=dict)
    listwise: dict[str, Any] = field(default_factory=dict)
    cmaes: dict[str, Any] = field(default_factory=dict)
    #: the merged entry as read (what a training record stores)
    entry: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def problem(self) -> str:
        from envs import problem_for

        return problem_for(self.env_id).name

    def settings(self) -> Any:
        """The ``Settings`` of a ``listwise`` or ``cmaes`` entry: the problem's dataclass
        filled from the entry's section (YAML lists become tuples)."""
        cls = settings_class(self.algo, self.env_id, "the entry")
        section = getattr(self, self.algo)
        return cls(**{key: tuple(value) if isinstance(value, list) else value
                      for key, value in section.items()})

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


class ConfigError(ValueError):
    """A configuration file that cannot be used (message names the file and the field)."""


#: a YAML number (YAML 1.1 reads ``1e-3`` without a dot as text, which is refused here)
NUMBER = (int, float)
#: the keys each section may hold and the type of each value; a dict is a nested section.
#: ``ppo`` and ``policy_kwargs`` are the MaskablePPO and maskable policy arguments a YAML file
#: can give (tests compare them with sb3-contrib's signatures); ``env_kwargs`` is checked
#: against the env's constructor.
PPO_KEYS: dict[str, Any] = {
    "learning_rate": NUMBER, "n_steps": int, "batch_size": int, "n_epochs": int,
    "gamma": NUMBER, "gae_lambda": NUMBER, "clip_range": NUMBER,
    "clip_range_vf": (*NUMBER, type(None)), "normalize_advantage": bool, "ent_coef": NUMBER,
    "vf_coef": NUMBER, "max_grad_norm": NUMBER, "target_kl": (*NUMBER, type(None)),
    "stats_window_size": int,
}
POLICY_KWARGS_KEYS: dict[str, Any] = {
    "net_arch": (list, dict), "features_extractor_class": str,
    "features_extractor_kwargs": dict, "ortho_init": bool, "share_features_extractor": bool,
    "normalize_images": bool, "optimizer_kwargs": dict,
}
NET_ARCH_KEYS = {"pi": list, "vf": list}
PRETRAIN_KEYS: dict[str, Any] = {
    "expert": str, "instances": int, "epochs": int, "learning_rate": NUMBER,
    "dagger_rounds": int, "dagger_instances": int, "dagger_epochs": int,
    "recipe_timesteps": int,
}
#: the old ``train`` flags of MaskablePPO (``--n-envs``, ``--warmup-episodes``,
#: ``--validation-episodes``): SubprocVecEnv workers, cloned episodes (null: scaled to the
#: timesteps), held-out instances of the closing table (0: none)
MASKABLE_PPO_KEYS: dict[str, Any] = {
    "n_envs": int, "warmup_episodes": (int, type(None)), "validation_episodes": int,
}
SCHEMA: dict[str, Any] = {
    "algo": str, "policy": str, "env_kwargs": dict, "ppo": PPO_KEYS,
    "policy_kwargs": POLICY_KWARGS_KEYS, "demo_timesteps": int, "pretrain": PRETRAIN_KEYS,
    "maskable_ppo": MASKABLE_PPO_KEYS, **{name: dict for name in PROBLEM_SECTIONS},
}
FIELDS = set(SCHEMA)


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
               list: "a list", dict: "a mapping", type(None): "null"}
#: the sections that may be null (``pretrain: null`` in a --config file turns the warm-up off)
NULLABLE = {"pretrain"}


def _check_value(value: Any, kind: Any, where: str) -> None:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python, but "true" is never a count or a rate
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = [_TYPE_NAMES[k] for k in kinds if not (k is int and float in kinds)]
        raise ConfigError(f"{where} must be {' or '.join(names)}, got {value!r}")
    if kind is int and value < 0:
        raise ConfigError(f"{where} must be >= 0, got {value}")


def check_section(section: Any, schema: dict[str, Any], source: str, path: str = "") -> None:
    """Refuse a key of ``section`` that ``schema`` does not name, or a value of the wrong type,
    as ``"<source>: unknown key pretrain.dagger_roundz (known in pretrain: ...)"``; nested
    sections are checked the same way (``path`` is the dotted key of ``section``)."""
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: {path or 'the entry'} must be a mapping, got {section!r}")
    prefix = f"{path}." if path else ""
    for key, value in section.items():
        if key not in schema:
            raise ConfigError(f"{source}: unknown key {prefix}{key} (known in "
                              f"{path or 'an entry'}: {', '.join(sorted(schema))})")
        kind = schema[key]
        if isinstance(kind, dict) and not (value is None and key in NULLABLE):
            check_section(value, kind, source, f"{prefix}{key}")
        elif not isinstance(kind, dict):
            _check_value(value, kind, f"{source}: {prefix}{key}")
    if isinstance(section.get("net_arch"), dict):
        check_section(section["net_arch"], NET_ARCH_KEYS, source, f"{prefix}net_arch")


def env_keyword_names(env_id: str) -> set[str]:
    """The keyword arguments the env of ``env_id`` accepts: its constructor's parameters, and
    the fields of its config dataclass (the problem table's ``config``) as ``**overrides``."""
    import inspect

    from envs import ENV_IDS, problem_for

    if env_id not in ENV_IDS:
        raise ConfigError(f"unknown env id {env_id!r} (known: {', '.join(sorted(ENV_IDS))})")
    env_class = import_object(ENV_IDS[env_id])
    parameters = inspect.signature(env_class.__init__).parameters.values()
    names = {p.name for p in parameters if p.kind is not p.VAR_KEYWORD} - {"self"}
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        names |= {field.name for field in dataclasses.fields(problem_for(env_id).load("config"))}
    return names


def settings_class(algo: str, env_id: str, where: str) -> type:
    """The ``Settings`` dataclass of ``env_id``'s problem for ``algo`` (a ``listwise`` or
    ``cmaes`` section); an algo with no recipe for that problem is a ConfigError."""
    from envs import problem_for

    module_name = recipe_module(problem_for(env_id).name)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        module = None
    cls = getattr(module, "Settings", None)
    if cls is None or not hasattr(module, f"{algo}_recipe"):
        raise ConfigError(f"{where}: algo {algo} has no recipe for {env_id} ({module_name} "
                          f"defines no Settings and {algo}_recipe)")
    return cls


def _hint_kinds(hint: Any) -> tuple[tuple[type, ...], type | None]:
    """The YAML types a field annotation accepts, and the item type of a tuple field."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        kinds, item = (), None
        for arg in typing.get_args(hint):
            more, more_item = _hint_kinds(arg)
            kinds, item = kinds + more, item or more_item
        return kinds, item
    if typing.get_origin(hint) is tuple:
        return (list,), typing.get_args(hint)[0]
    return ({float: NUMBER, type(None): (type(None),)}.get(hint, (hint,))), None


def check_settings(section: dict[str, Any], cls: type, source: str, path: str) -> None:
    """Keys of a ``listwise``/``cmaes`` section by the fields of ``cls``, values by their
    annotations."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key, value in section.items():
        if key not in names:
            raise ConfigError(f"{source}: unknown key {path}.{key} (known in {path}: "
                              f"{', '.join(sorted(names))})")
        kinds, item = _hint_kinds(hints[key])
        _check_value(value, kinds if len(kinds) > 1 else kinds[0], f"{source}: {path}.{key}")
        if item is not None and isinstance(value, list):
            for element in value:
                _check_value(element, item, f"{source}: {path}.{key} item")


def check_entry(entry: Any, env_id: str, source: str) -> None:
    """Keys and value types of one file's entry for ``env_id``, nested sections included."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{source}: the entry for {env_id} must be a mapping")
    check_section(entry, SCHEMA, f"{source}: {env_id}")
    known = env_keyword_names(env_id)
    for key in entry.get("env_kwargs", {}):
        if key not in known:
            raise ConfigError(f"{source}: {env_id}: unknown key env_kwargs.{key} (known in "
                              f"env_kwargs: {', '.join(sorted(known))})")
    if "algo" in entry and entry["algo"] not in ALGOS:
        raise ConfigError(f"{source}: {env_id}: algo {entry['algo']!r} is not one of "
                          f"{', '.join(ALGOS)}")
    for name in PROBLEM_SECTIONS:
        if name in entry:
            cls = settings_class(name, env_id, f"{source}: {env_id}: {name}")
            check_settings(entry[name], cls, f"{source}: {env_id}", name)


def check_merged(entry: dict[str, Any], env_id: str, source: str) -> None:
    """What only the merged entry shows: an algo, its settings complete, the warm-up's needs."""
    if "algo" not in entry:
        raise ConfigError(f"{source}: no algo key (one of {', '.join(ALGOS)})")
    algo = entry["algo"]
    if algo in PROBLEM_SECTIONS:
        cls = settings_class(algo, env_id, source)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in entry.get(algo, {})
                   and f.default is dataclasses.MISSING]
        if missing:
            raise ConfigError(f"{source}: {algo} needs {', '.join(f'{algo}.{m}' for m in missing)}")
    ppo = entry.get("maskable_ppo", {})
    if ppo.get("warmup_episodes") is not None and entry.get("pretrain") is None:
        raise ConfigError(f"{source}: maskable_ppo.warmup_episodes needs a pretrain block "
                          f"(pretrain is null: no warm-up)")
    check_pretrain(entry.get("pretrain"), source)


def parse_sets(sets: list[str], budget: int | None, algo: str | None) -> dict[str, Any]:
    """``--set a.b=VALUE`` (VALUE read as YAML) and ``--budget N`` as one nested override;
    the budget sets the key of ``algo`` in :data:`agents.algos.BUDGET_KEYS`."""
    override: dict[str, Any] = {}
    pairs = []
    for text in sets:
        key, equals, value = text.partition("=")
        if not equals or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {text}: expected KEY=VALUE with a dotted KEY, e.g. "
                              f"cmaes.population=8")
        try:
            pairs.append((key, yaml.safe_load(value)))
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {text}: value is not YAML "
                              f"({str(error).splitlines()[0]})") from None
    if budget is not None:
        pairs.append((BUDGET_KEYS[algo], budget))
    for key, value in pairs:
        *parents, last = key.split(".")
        section = override
        for part in parents:
            section = section.setdefault(part, {})
            if not isinstance(section, dict):
                raise ConfigError(f"--set {key}: {part} is set to a value, not a mapping")
        section[last] = value
    return override


def check_pretrain(pretrain: dict[str, Any] | None, source: str) -> None:
    """The keys :func:`agents.algos.imitation.pretrain` needs, on the merged block."""
    if pretrain is None:
        return
    needed = ["expert", "instances", "epochs"]
    if pretrain.get("dagger_rounds", 0) > 0:
        needed.append("dagger_instances")
    missing = [key for key in needed if key not in pretrain]
    if missing:
        raise ConfigError(f"{source}: pretrain needs {', '.join(missing)} "
                          f"(it has {', '.join(sorted(pretrain)) or 'nothing'})")
    if ":" not in pretrain["expert"]:
        raise ConfigError(f"{source}: pretrain.expert must be 'module:function', got "
                          f"{pretrain['expert']!r}")


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


def shipped_sources() -> dict[str, tuple[Path, Any]]:
    """env id -> (the ``agents/configs`` file that holds its entry, the entry); an env id in
    two files is refused (which one wins would depend on the file names)."""
    entries: dict[str, tuple[Path, Any]] = {}
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        for env_id, entry in _read_yaml(path).items():
            if env_id in entries:
                raise ConfigError(f"{path}: {env_id} is also configured in "
                                  f"{entries[env_id][0]}")
            entries[env_id] = (path, entry)
    return entries


def shipped_entries() -> dict[str, Any]:
    return {env_id: entry for env_id, (_, entry) in shipped_sources().items()}


def load_config_with_overrides(env_id: str, config_path: str | Path | None = None,
                               sets: list[str] | None = None, budget: int | None = None
                               ) -> tuple[TrainConfig, list[str]]:
    """The configuration for ``env_id`` and the dotted keys ``config_path``, ``sets`` and
    ``budget`` overrode (see :func:`parse_sets`). Every key is checked by name and type, nested
    sections included (a misspelt key is an error naming the file and its dotted path, never a
    feature silently left off)."""
    shipped = shipped_sources()
    if env_id not in shipped:
        raise ConfigError(f"{CONFIG_DIR}: no entry for {env_id} (entries: "
                          f"{', '.join(sorted(shipped))})")
    shipped_path, entry = shipped[env_id]
    check_entry(entry, env_id, str(shipped_path))
    source, changed = str(shipped_path), []
    if config_path is not None:
        user = _read_yaml(Path(config_path))
        if env_id not in user:
            raise ConfigError(f"{config_path}: no entry for {env_id} (entries: "
                              f"{sorted(user) or 'none'})")
        check_entry(user[env_id], env_id, str(config_path))
        entry, changed = deep_merge(entry, user[env_id])
        source = f"{shipped_path} with {config_path}"
    if sets or budget is not None:
        algo = parse_sets(sets or [], None, None).get("algo", entry.get("algo"))
        if budget is not None and algo not in BUDGET_KEYS:
            raise ConfigError(f"{source}: {env_id}: no algo key, so no budget to set")
        override = parse_sets(sets or [], budget, algo)
        check_entry(override, env_id, "--set")
        entry, more = deep_merge(entry, override)
        changed += more
        source = f"{source} with --set"
    check_merged(entry, env_id, f"{source}: {env_id}")
    return TrainConfig(env_id=env_id, **entry, entry=entry), changed


def load_config(env_id: str, config_path: str | Path | None = None) -> TrainConfig:
    """The configuration for ``env_id``: the shipped entry, ``config_path`` deep-merged in."""
    return load_config_with_overrides(env_id, config_path)[0]
