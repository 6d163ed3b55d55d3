"""Issue 24: a name the code does not know is refused, never run as some default."""

from __future__ import annotations

import pytest

from agents.compare import _planner_contenders, contenders
from agents.config import ConfigError


def test_the_planner_comparison_refuses_an_env_it_has_no_planners_for() -> None:
    # it used to compare any env other than ParamServer as the pipeline
    with pytest.raises(ValueError, match="no comparison of whole plans for env "
                                         "'pipesched/SparkDagShop-v0'"):
        _planner_contenders("pipesched/SparkDagShop-v0", {}, {})
    with pytest.raises(ValueError, match="unknown env id 'pipesched/Nope-v0'"):
        _planner_contenders("pipesched/Nope-v0", {}, {})


def test_an_env_without_a_config_entry_is_refused() -> None:
    with pytest.raises(ConfigError, match="no entry for pipesched/Nope-v0"):
        contenders("pipesched/Nope-v0", {})
