"""One behaviour for the bridge's command lines: a user mistake ends in one line and exit
status 2, Ctrl-C in one line and 130 (after the work's own ``finally`` blocks stopped what it
started), ``--debug`` shows the traceback instead."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable


def _not_py4j_interrupt(record: logging.LogRecord) -> bool:
    # py4j logs a traceback on the root logger when Ctrl-C lands inside a JVM call; the
    # one-line ending below says it already
    return not record.getMessage().startswith("KeyboardInterrupt while sending command")


def guarded(parser: argparse.ArgumentParser, debug: bool, work: Callable[[], int | None]) -> int:
    """``work()``'s exit status (None counts as 0), or the one-line endings above."""
    interrupted: list[bool] = []

    py4j = logging.getLogger("py4j")
    py4j_level = py4j.level

    def on_interrupt(signum: int, frame: object) -> None:
        interrupted.append(True)
        # the interrupted gateway's own shutdown then logs broken pipes at ERROR
        py4j.setLevel(logging.CRITICAL + 1)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_interrupt)
    root = logging.getLogger()
    root.addFilter(_not_py4j_interrupt)
    try:
        return work() or 0
    except KeyboardInterrupt:
        pass
    except Exception as error:  # deliberate: a CLI's last resort; re-raised unless one line fits
        # Ctrl-C also reaches the JVM, so py4j may fail before KeyboardInterrupt surfaces
        if debug or not (interrupted or isinstance(error, OSError | ValueError)):
            raise
        if not interrupted:
            parser.exit(2, f"{parser.prog}: error: {error}\n")
    finally:
        signal.signal(signal.SIGINT, previous)
        root.removeFilter(_not_py4j_interrupt)
        if not interrupted:  # after Ctrl-C, the gateway's exit-time shutdown logs too
            py4j.setLevel(py4j_level)
    print(f"{parser.prog}: interrupted; nothing written", file=sys.stderr)
    return 130
