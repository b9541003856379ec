"""Errors the command line turns into one clear line and exit code 2, and the one-line
description of any exception that a record or a log keeps."""

from __future__ import annotations

import os
import signal
import traceback
from collections.abc import Iterator
from contextlib import contextmanager


class UsageError(ValueError):
    """Bad input from the user: the message names the bad value and the valid choices."""


def choice(kind: str, value: object, valid: list[str] | tuple[str, ...]) -> UsageError:
    return UsageError(f"unknown {kind} {value!r}; valid choices: {', '.join(map(str, valid))}")


class HarnessFault(RuntimeError):
    """A fault of the harness or its machine (a helper process gone, a stop from outside),
    not of the cell it hit: nothing is recorded for the cells in flight, and the same
    command resumes them. The command line prints one line and exits 1."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C: the running cells are killed, nothing stored is lost."""


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (a scheduler's or ``kill``'s stop) raises Terminated, so
    it unwinds like Ctrl-C: cell processes are killed, not orphaned, and not blamed."""
    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave SIGTERM as it is
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def os_errors_as_usage(what: str) -> Iterator[None]:
    """An ``OSError`` in the block (a path that cannot be created, read or written) is the
    user's to fix: it becomes ``UsageError("cannot {what}: {reason}")``, one line, exit 2."""
    try:
        yield
    except OSError as exc:
        raise UsageError(f"cannot {what}: {exc.strerror or exc}") from None


def describe(exc: BaseException) -> str:
    """One line: exception type, message, and the innermost frame that raised it."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {msg}{where}"[:2000]
