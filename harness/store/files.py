"""Writing and reading a run directory's files safely: whole or not at all, under a
lock where several processes change one file, and one error for what cannot be written."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class StoreWriteError(Exception):
    """A file of a run directory could not be written (nothing of it was left behind).
    ``full`` when the disk or quota is full: freeing space and rerunning the same command
    resumes."""

    def __init__(self, path: Path, exc: OSError) -> None:
        self.path, self.errno = Path(path), exc.errno
        self.full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        super().__init__(f"cannot write {path}: {exc.strerror or exc}")


def not_a(kind: str, path: Path) -> StoreWriteError:
    """Something else stands where the store puts ``kind`` (a file for a folder, a folder
    for a file): the user moves it away; the store never deletes what it did not write."""
    return StoreWriteError(path, OSError(errno.EEXIST, f"not a {kind} (something else is "
                                                       "in its place; move it away and rerun)"))


def folder(root: Path, name: str) -> Path:
    """``root/name`` as a folder, created when missing."""
    path = root / name
    try:
        path.mkdir(exist_ok=True)
    except FileExistsError:
        raise not_a("folder", path) from None
    except OSError as exc:
        raise StoreWriteError(path, exc) from None
    return path


@contextmanager
def locked(root: Path, name: str) -> Iterator[None]:
    """An exclusive lock on ``root/name`` for read-modify-write of shared files."""
    fd = os.open(root / name, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def write_json(path: Path, data: Any) -> None:
    """Write whole or not at all (a temporary file of this process renamed over ``path``)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreWriteError(path, exc) from None


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object file; {} when it is missing, and with a warning when it is unreadable
    or not an object (the records stand on their own: a damaged side file hides none)."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as exc:
        warnings.warn(f"{path}: unreadable or not JSON ({type(exc).__name__}); ignoring it",
                      stacklevel=3)
        return {}
    if not isinstance(data, dict):
        warnings.warn(f"{path}: not a JSON object; ignoring it", stacklevel=3)
        return {}
    return data
