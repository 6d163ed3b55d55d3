"""The quick part of scripts/newcomer_walk.py, one test per README step (the full walk,
training and the bridges included, is ``.venv/bin/python scripts/newcomer_walk.py``)."""

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "newcomer_walk.py"
_SPEC = importlib.util.spec_from_file_location("newcomer_walk", _PATH)
walk = importlib.util.module_from_spec(_SPEC)
sys.modules["newcomer_walk"] = walk  # dataclasses look their module up there
_SPEC.loader.exec_module(walk)


def _params():
    for step in walk.steps(Path("/nonexistent")):
        if step.quick:
            yield pytest.param(step, id=step.name)


@pytest.mark.parametrize("step", list(_params()))
def test_newcomer_step_runs_clean(step, tmp_path):
    passed, seconds, reason = walk.run_step(step, tmp_path)
    assert passed, f"{step.name}: {reason} ({seconds:.1f} s)"
