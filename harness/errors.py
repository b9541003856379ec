"""Errors the command line turns into one clear line and exit code 2, and the one-line
description of any exception that a record or a log keeps."""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager


class UsageError(ValueError):
    """Bad input from the user: the message names the bad value and the valid choices."""


def choice(kind: str, value: object, valid: list[str] | tuple[str, ...]) -> UsageError:
    return UsageError(f"unknown {kind} {value!r}; valid choices: {', '.join(map(str, valid))}")


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
