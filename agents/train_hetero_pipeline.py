"""The old ``python -m agents.train_hetero_pipeline``: prints the ``train_agents.py train`` command that
replaced it and exits 2."""

import sys

from agents.algos.record import moved_command

if __name__ == "__main__":
    moved_command("python -m agents.train_hetero_pipeline", "hetero_pipeline", "listwise", sys.argv[1:])
