"""Reinforcement-learning glue: extractors, training, the Scheduler adapter, evaluation."""

from agents.evaluate import run_episode
from agents.scheduler import SB3Scheduler, Scheduler, load_scheduler

__all__ = ["Scheduler", "SB3Scheduler", "load_scheduler", "run_episode"]
