"""The training algorithms that ``train_agents.py train`` dispatches to by the ``algo:`` of an
entry of ``agents/configs/*.yaml``.

Each is ``function(run: agents.algos.record.TrainRun) -> agents.algos.record.TrainResult``. An
algorithm with problem-specific parts (``listwise``, ``cmaes``) finds them in
``agents/<problem>/train.py``: its ``Settings`` dataclass holds the keys of the entry's
``<algo>:`` section, and its ``<algo>_recipe(run, settings)`` supplies the data and scoring.
"""

from __future__ import annotations

#: algo name -> "module:function"
ALGOS: dict[str, str] = {
    "maskable_ppo": "agents.algos.maskable_ppo:train",
    "listwise": "agents.algos.listwise:train_run",
    "cmaes": "agents.algos.cmaes:train_run",
}
#: the entry key that ``train --budget N`` sets, per algo
BUDGET_KEYS: dict[str, str] = {
    "maskable_ppo": "demo_timesteps",
    "listwise": "listwise.steps",
    "cmaes": "cmaes.generations",
}
#: the algos whose settings section is a problem's ``Settings`` dataclass
PROBLEM_SECTIONS = ("listwise", "cmaes")


def recipe_module(problem: str) -> str:
    """The module holding a problem's part of a ``listwise`` or ``cmaes`` run."""
    return f"agents.{problem}.train"
