"""The quick part of scripts/newcomer_walk.py, one test per README step (the full walk,
training and the bridges included, is ``.venv/bin/python scripts/newcomer_walk.py``)."""

import dataclasses
import importlib.util
import subprocess
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


HEAVY = ("torch", "stable_baselines3", "sb3_contrib", "pandas", "ortools", "matplotlib")


@pytest.mark.parametrize("step", list(_params()))
def test_newcomer_step_runs_clean(step, tmp_path):
    # the walk's 2 s limit on --help is a timing, which a shared machine cannot promise (CI
    # failed it at 3 s under load); what makes --help fast is checked instead: no heavy import
    passed, seconds, reason = walk.run_step(dataclasses.replace(step, max_s=None), tmp_path)
    assert passed, f"{step.name}: {reason} ({seconds:.1f} s)"
    if step.max_s is not None:
        timing = subprocess.run([sys.executable, "-X", "importtime", *step.argv],
                                cwd=walk.ROOT, capture_output=True, text=True, timeout=60)
        imported = {line.split("|")[-1].strip() for line in timing.stderr.splitlines()
                    if line.startswith("import time:")}
        assert not imported & set(HEAVY), f"{step.name} imports {sorted(imported & set(HEAVY))}"
