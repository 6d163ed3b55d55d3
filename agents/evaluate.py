"""Where ``run_episode`` used to live; it and the Scheduler protocol are in
:mod:`envs.scheduler` now (re-exported so old imports keep working)."""

from envs.scheduler import IncompleteEpisode, incomplete_reason, require_complete, run_episode

__all__ = ["IncompleteEpisode", "incomplete_reason", "require_complete", "run_episode"]
