"""Who is measuring what in a run directory. Two kinds of file, two names:

- a **cell claim**, ``claims/<hash of cell_id>.json`` (:class:`CellClaim`): one cell in
  one runner's hands, from its first round to its record. Created with ``O_EXCL``, so
  two runners sharing a directory (two commands by mistake, Slurm jobs by design) never
  both measure a cell. Its mtime is the owner's heartbeat.
- a **worker lease**, ``running/<name>.json`` (:class:`WorkerLease`): one live worker (a
  local sweep or a Slurm job), the cells it was asked to run, how many it runs at once
  and how many records the store held when it started. Only ``status`` reads leases.

Both name their owner (:class:`Owner`: host, pid and the process's start time, so a
reused pid is not mistaken for it). An owner on this host is alive while its process
runs; one on another host cannot be checked from here.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from harness.store.files import StoreWriteError, folder, locked, not_a, write_json

CLAIMS = "claims"
RUNNING = "running"
CLAIM_STALE_S = 600.0  # a cell claim from another host not refreshed for this long is stale


@dataclass(frozen=True)
class Owner:
    """A process of some host (see the module docstring)."""

    host: str
    pid: int
    create_time: float

    @classmethod
    def me(cls) -> Owner:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, psutil.Process(pid).create_time())

    def same(self, other: Owner) -> bool:
        return ((self.host, self.pid) == (other.host, other.pid)
                and abs(self.create_time - other.create_time) < 1.0)

    def alive(self) -> bool | None:
        """True/False on this host; None (unknown) for another host."""
        if self.host != socket.gethostname():
            return None
        try:
            proc = psutil.Process(self.pid)
            return (abs(proc.create_time() - self.create_time) < 1.0
                    and proc.status() != psutil.STATUS_ZOMBIE)  # killed, not yet reaped
        except psutil.Error:
            return False


def _owner(d: dict[str, Any]) -> Owner | None:
    host, pid, t = d.get("host"), d.get("pid"), d.get("create_time")
    if (isinstance(host, str) and isinstance(pid, int) and not isinstance(pid, bool)
            and isinstance(t, (int, float)) and not isinstance(t, bool)):
        return Owner(host, pid, float(t))
    return None


def _read_object(path: Path) -> dict[str, Any] | None:
    try:
        d = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    return d if isinstance(d, dict) else None


# ---------------------------------------------------------------- cell claims


@dataclass(frozen=True)
class CellClaim:
    """One cell in one runner's hands (see the module docstring)."""

    cell_id: str
    owner: Owner
    path: Path

    def alive(self) -> bool:
        """Whether the owner still runs: its process on this host; on another host (not
        checkable from here) whether it refreshed the claim within ``CLAIM_STALE_S``."""
        here = self.owner.alive()
        if here is not None:
            return here
        try:
            return time.time() - os.stat(self.path).st_mtime < CLAIM_STALE_S
        except OSError:
            return False

    def touch(self) -> None:
        """The owner's heartbeat (for runners on other hosts)."""
        try:
            os.utime(self.path)
        except OSError:
            pass

    def release(self) -> None:
        """Give the cell up (its record is stored, or this runner stops)."""
        held = read_claim(self.path)
        if held is not None and held.owner.same(self.owner):
            self.path.unlink(missing_ok=True)


def claim_path(root: Path, cell_id: str) -> Path:
    return root / CLAIMS / f"{hashlib.sha1(cell_id.encode()).hexdigest()[:20]}.json"


def read_claim(path: Path) -> CellClaim | None:
    """The claim at ``path``; None when there is none, or it is being written or damaged."""
    d = _read_object(path)
    owner = _owner(d) if d else None
    if owner is None or not isinstance(d.get("cell_id"), str):
        return None
    return CellClaim(d["cell_id"], owner, path)


def claim_cell(root: Path, cell_id: str) -> CellClaim | None:
    """Take ``cell_id`` for this process, or None while another live runner holds it.

    A runner claims a cell before its first round; the claim ends with the cell's record
    or ``CellClaim.release``. A claim whose owner is dead (its process gone on this host;
    not refreshed for ``CLAIM_STALE_S`` from another host) is taken over by one runner."""
    path = claim_path(root, cell_id)
    folder(root, CLAIMS)
    me = CellClaim(cell_id, Owner.me(), path)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if not path.is_file():
                raise not_a("claim file", path) from None
            held = read_claim(path)
            if held is not None and held.owner.same(me.owner):
                return held
            if held is None:  # being written right now, or damaged
                try:
                    if time.time() - path.stat().st_mtime < 5.0:
                        return None
                except OSError:
                    continue
            elif held.alive():
                return None
            _take_over(path, held)
            continue
        except OSError as exc:
            raise StoreWriteError(path, exc) from None
        _write_new(fd, path, {"cell_id": cell_id, **asdict(me.owner)})
        return me
    return None


def _take_over(path: Path, held: CellClaim | None) -> None:
    """Remove a dead owner's claim, under a lock so that one runner takes it over."""
    with locked(path.parent, ".lock"):
        if read_claim(path) == held:
            path.unlink(missing_ok=True)


def _write_new(fd: int, path: Path, data: dict[str, Any]) -> None:
    """Fill a file just created with O_EXCL; on any error (a full disk) remove it, so no
    empty claim is left to block the cell."""
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data))
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise StoreWriteError(path, exc) from None


def release_if_mine(root: Path, cell_id: str) -> None:
    path = claim_path(root, cell_id)
    if path.is_file():
        CellClaim(cell_id, Owner.me(), path).release()


# ---------------------------------------------------------------- worker leases


@dataclass(frozen=True)
class WorkerLease:
    """A live worker's cells (see the module docstring)."""

    owner: Owner
    slots: int
    records_before: int
    cells: tuple[str, ...]
    job_id: str = ""
    started: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self.owner), "slots": self.slots,
                "records_before": self.records_before, "cells": list(self.cells),
                "job_id": self.job_id, "started": self.started}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkerLease | None:
        """None when ``d`` is not a lease (a field missing or of the wrong type)."""
        owner = _owner(d)
        counts = [d.get("slots"), d.get("records_before")]
        cells, job_id, started = d.get("cells"), d.get("job_id", ""), d.get("started", 0.0)
        if (owner is None
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                           for n in counts)
                or not isinstance(cells, list) or not all(isinstance(c, str) for c in cells)
                or not isinstance(job_id, str)
                or not isinstance(started, (int, float)) or isinstance(started, bool)):
            return None
        return cls(owner, counts[0], counts[1], tuple(cells), job_id, float(started))


@contextmanager
def lease(root: Path, cell_ids: Sequence[str], slots: int, records_before: int,
          job_id: str = "") -> Iterator[WorkerLease]:
    """Mark ``cell_ids`` as in this process's hands for the duration of the block."""
    me = WorkerLease(Owner.me(), slots, records_before, tuple(cell_ids), job_id, time.time())
    name = f"job-{job_id}" if job_id else f"{me.owner.host}-{me.owner.pid}"
    path = folder(root, RUNNING) / f"{name}.json"
    write_json(path, me.to_dict())
    try:
        yield me
    finally:
        path.unlink(missing_ok=True)


def leases(root: Path) -> list[WorkerLease]:
    """The leases in ``root/running``; a file that is not one is skipped with a warning
    (one being replaced right now is skipped silently)."""
    where = root / RUNNING
    out = []
    for path in sorted(where.glob("*.json")) if where.is_dir() else []:
        d = _read_object(path)
        got = WorkerLease.from_dict(d) if d is not None else None
        if got is not None:
            out.append(got)
        elif d is not None:
            warnings.warn(f"{path}: not a worker lease (a field missing or mistyped); "
                          "ignoring it", stacklevel=2)
    return out
