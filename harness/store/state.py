"""What a sweep directory says about itself beyond its records, for ``harness status``.

- ``DIR/plan.json``: every cell asked of the directory (the union over runs that resumed
  it), so ``status`` can count cells that have no record yet.
- ``DIR/running/<name>.json``: a *claim*, written by each live worker (a local sweep or
  one Slurm job) for the cells it is about to run and removed when it ends. It names the
  host, the process and how many cells the worker runs at once, and how many records the
  store held when it started, so a re-run cell (``--retry-failed``) counts as running
  until its new record arrives. A claim left by a killed worker is recognised as dead on
  its own host (its process is gone); claims from other hosts cannot be checked and are
  shown as such.
- ``DIR/envs/<host>.json``: the environment of each machine that measured cells (records
  carry ``host``), so runs from several machines merge with each record's own environment.
"""

from __future__ import annotations

import fcntl
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

from harness.store.records import Cell
from harness.store.rundir import ResultStore

PLAN = "plan.json"
RUNNING = "running"
ENVS = "envs"


@contextmanager
def _locked(root: Path, name: str) -> Iterator[None]:
    """An exclusive lock on ``root/name`` for read-modify-write of shared JSON files."""
    fd = os.open(root / name, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)


def write_plan(root: Path, cells: Sequence[Cell], meta: dict[str, Any]) -> None:
    """Add ``cells`` to the directory's plan (earlier cells stay: a resume may ask fewer)."""
    with _locked(root, ".plan.lock"):
        old = read_plan(root)
        if not old and (root / PLAN).exists():
            ResultStore(root).set_aside(root / PLAN)
        by_id = {d["cell_id"]: d for d in old.get("cells", [])}
        for c in cells:
            by_id.setdefault(c.cell_id, {"cell_id": c.cell_id, **c.key_dict()})
        _write_json(root / PLAN, {**old, **meta, "cells": list(by_id.values())})


def read_plan(root: Path) -> dict[str, Any]:
    """The plan, or {} (with a warning) when plan.json is missing or damaged; cell entries
    that are not ``{"cell_id": str, ...}`` objects are dropped."""
    path = Path(root) / PLAN
    try:
        plan = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as exc:
        warnings.warn(f"{path}: unreadable or not JSON ({type(exc).__name__}); ignoring it",
                      stacklevel=2)
        return {}
    if not isinstance(plan, dict):
        warnings.warn(f"{path}: not a JSON object; ignoring it", stacklevel=2)
        return {}
    cells = plan.get("cells", [])
    good = [d for d in cells if isinstance(d, dict) and isinstance(d.get("cell_id"), str)
            ] if isinstance(cells, list) else []
    if not isinstance(cells, list) or len(good) != len(cells):
        warnings.warn(f"{path}: skipping malformed cell entries", stacklevel=2)
    plan["cells"] = good
    return plan


def note_env(store: ResultStore, env: dict[str, Any]) -> None:
    """Keep the first environment as ``env.json`` (later ones under ``resumed``), and each
    host's latest as ``envs/<host>.json``. Safe when several jobs start at once."""
    root = store.root
    (root / ENVS).mkdir(exist_ok=True)
    _write_json(root / ENVS / f"{env.get('hostname', 'unknown')}.json", env)
    with _locked(root, ".env.lock"):
        previous = store.env()
        if not previous and store.env_path.exists():
            store.set_aside(store.env_path)
        if previous:
            previous.setdefault("resumed", []).append(env)
            env = previous
        store.write_env(env)


@dataclass
class Claim:
    """A live worker's cells (see the module docstring)."""

    host: str
    pid: int
    create_time: float
    slots: int
    records_before: int
    cells: list[str]
    job_id: str = ""
    started: float = 0.0

    def alive(self) -> bool | None:
        """True/False on this host; None (unknown) for a claim from another host."""
        if self.host != socket.gethostname():
            return None
        try:
            proc = psutil.Process(self.pid)
            return (abs(proc.create_time() - self.create_time) < 1.0
                    and proc.status() != psutil.STATUS_ZOMBIE)  # killed, not yet reaped
        except psutil.Error:
            return False


@contextmanager
def claim(store: ResultStore, cell_ids: Sequence[str], slots: int,
          job_id: str = "") -> Iterator[Claim]:
    """Mark ``cell_ids`` as in this process's hands for the duration of the block."""
    pid = os.getpid()
    c = Claim(host=socket.gethostname(), pid=pid,
              create_time=psutil.Process(pid).create_time(), slots=slots,
              records_before=len(store.read_dicts()), cells=list(cell_ids), job_id=job_id,
              started=time.time())
    folder = store.root / RUNNING
    folder.mkdir(exist_ok=True)
    name = f"job-{job_id}" if job_id else f"{c.host}-{pid}"
    path = folder / f"{name}.json"
    _write_json(path, asdict(c))
    try:
        yield c
    finally:
        path.unlink(missing_ok=True)


def read_claims(root: Path) -> list[Claim]:
    folder = Path(root) / RUNNING
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append(Claim(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue  # being replaced right now, or not ours
    return out
