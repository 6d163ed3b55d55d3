"""The one env contract: ``Env(config=None, *, generator=None, render_mode=None, **overrides)``.

Every env keeps its settings in a frozen config dataclass (``envs/<problem>/config.py``, named
by the ``config`` column of :mod:`envs.problems`). Keyword overrides replace fields by name
(``dataclasses.replace``), so the dataclass's ``__post_init__`` validates them; an unknown name
is refused in one line listing the known ones. The helpers below give every config the same
one-line ``ValueError`` naming the field and the value.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT")


def resolve_config(config_class: type[ConfigT], config: ConfigT | None,
                   overrides: Mapping[str, Any]) -> ConfigT:
    """``config`` (default ``config_class()``) with ``overrides`` applied by field name."""
    if config is None:
        config = config_class()
    elif not isinstance(config, config_class):
        raise TypeError(f"config must be a {config_class.__name__} or None, got "
                        f"{type(config).__name__}; pass its fields as keyword overrides")
    known = [field.name for field in dataclasses.fields(config_class)]
    unknown = [key for key in overrides if key not in known]
    if unknown:
        raise ValueError(f"{config_class.__name__}: unknown config key(s) "
                         f"{', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    return dataclasses.replace(config, **overrides) if overrides else config


def check_render_mode(owner: str, render_modes: Iterable[str], render_mode: str | None) -> None:
    """Gymnasium's rule: ``render_mode`` is None or one of ``metadata["render_modes"]``."""
    if render_mode is not None and render_mode not in render_modes:
        raise ValueError(f"{owner}: render_mode must be None or one of {list(render_modes)}, "
                         f"got {render_mode!r}")


def check_generator(owner: str, generator: Any) -> None:
    """An injected generator is a Jumanji-style callable ``generator(rng) -> instance``."""
    if generator is not None and not callable(generator):
        raise TypeError(f"{owner}: generator must be a callable rng -> instance, got "
                        f"{type(generator).__name__}")


def require(config: Any, field: str, ok: bool, rule: str) -> None:
    """Refuse ``config.<field>`` unless ``ok``, as ``"OffloadConfig.max_jobs must be <rule>, got 0"``."""
    if not ok:
        raise ValueError(f"{type(config).__name__}.{field} must be {rule}, got "
                         f"{getattr(config, field)!r}")


def is_integer(value: Any, minimum: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


def is_number(value: Any, minimum: float = -math.inf, strict: bool = False) -> bool:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        return False
    return value > minimum if strict else value >= minimum


def require_integer(config: Any, field: str, minimum: int = 1) -> None:
    require(config, field, is_integer(getattr(config, field), minimum),
            f"an integer >= {minimum}")


def require_number(config: Any, field: str, minimum: float = -math.inf,
                   strict: bool = False) -> None:
    rule = "a finite number" if minimum == -math.inf else \
        f"a finite number {'>' if strict else '>='} {minimum:g}"
    require(config, field, is_number(getattr(config, field), minimum, strict), rule)


def require_choice(config: Any, field: str, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    require(config, field, getattr(config, field) in choices, f"one of {list(choices)}")


def freeze_weights(config: Any, field: str, terms: Mapping[str, float], merge: bool = True
                   ) -> None:
    """Check the mapping in ``config.<field>`` (reward terms among ``terms``, refused by name;
    finite weights) and store a private copy, merged over ``terms`` when ``merge``, so the
    caller's dict never changes the config afterwards."""
    value = getattr(config, field)
    require(config, field, isinstance(value, Mapping), "a mapping of reward terms to weights")
    require(config, field, set(value) <= set(terms), f"a mapping with keys among {sorted(terms)}")
    require(config, field, all(is_number(weight) for weight in value.values()),
            "a mapping to finite numbers")
    object.__setattr__(config, field, {**terms, **value} if merge else dict(value))
