"""The old ``python -m agents.train_spark_dag``: prints the ``train_agents.py train`` command that
replaced it and exits 2."""

import sys

from agents.algos.record import moved_command
from agents.spark_dag.train import OLD_DEFAULTS

if __name__ == "__main__":
    moved_command("python -m agents.train_spark_dag", "spark_dag", "cmaes", sys.argv[1:],
                  OLD_DEFAULTS)
