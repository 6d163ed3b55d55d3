"""Which exceptions are Spark's own failures (worth a retry, reported as a failed node or task)
and which are bugs in the calling code (propagated as they are)."""

from __future__ import annotations

from py4j.protocol import Py4JError
from pyspark.errors import PySparkException

#: raised by Spark or its gateway: a query the JVM rejected or a task that failed
#: (``pyspark.errors`` captured exceptions, ``Py4JJavaError``), a lost gateway (``Py4JError``)
SPARK_ERRORS: tuple[type[BaseException], ...] = (PySparkException, Py4JError)
# pyspark's PySparkTypeError, PySparkValueError, ... flag a call this code got wrong
_CODE_ERRORS = (TypeError, ValueError, AttributeError, LookupError, AssertionError,
                NotImplementedError, ImportError, NameError)


def is_spark_failure(error: BaseException) -> bool:
    """True for a failure of Spark itself, False for a bug in the code that called it."""
    return isinstance(error, SPARK_ERRORS) and not isinstance(error, _CODE_ERRORS)


def error_line(error: BaseException) -> str:
    """The first informative line of a (Py4J-wrapped) Spark error."""
    text = str(error).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("An error occurred while calling", "Traceback")):
            return line[:500]
    return text[:500] or type(error).__name__
