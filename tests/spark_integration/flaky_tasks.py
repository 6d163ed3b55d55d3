"""Task functions for the runner's failure tests (imported by the Spark executors)."""

from pyspark import TaskContext


def fail_first_attempt(payload: dict) -> list[dict]:
    """Raises on a task's first attempt, then returns its payload's value."""
    if TaskContext.get().attemptNumber() == 0 and payload["flaky"]:
        raise RuntimeError("injected failure on the first attempt")
    return [{"value": payload["value"]}]


def always_fail(payload: dict) -> list[dict]:
    raise ValueError(f"injected failure of task {payload['value']}")
