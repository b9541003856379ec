"""A run directory and every file in it, owned by :class:`RunDir`.

- ``records.jsonl``: append-only, one Record per line. Each record is written with a
  single ``write`` of one line under an exclusive ``flock`` and fsynced, so concurrent
  workers never interleave lines and a crash loses at most the line being written.
  Readers tolerate a truncated last line (a writer killed mid-write) with a warning.
- ``env.json``: the first environment that ran cells here (later ones under ``resumed``);
  ``envs/<host>.json``: the latest environment of each machine that measured cells
  (records carry ``host``), so a run over several machines labels each record with its
  own machine's device (:meth:`RunDir.host_env`).
- ``plan.json``: every cell asked of the directory (the union over runs that resumed it),
  so ``status`` can count cells that have no record yet.
- ``rounds.jsonl``: append-only, each finished round of a cell (its samples), so a
  killed run resumes a cell from its next round (:class:`~harness.store.records.RoundEntry`).
- ``claims/``: one cell claim per cell being measured; ``running/``: one worker lease per
  live worker, for ``status`` (see :mod:`harness.store.claims`).
- ``profiles/``: ``python -m harness profile --from DIR`` writes there (never records).

Files are data only: JSON, never pickles. A damaged JSON file is read as empty with a
warning and set aside (``NAME.damaged``) before it is written anew.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.errors import UsageError, os_errors_as_usage
from harness.store import claims
from harness.store.claims import CellClaim, WorkerLease
from harness.store.files import StoreWriteError, locked, read_json_object, write_json
from harness.store.records import (
    READABLE_SCHEMAS,
    SCHEMA_VERSION,
    Cell,
    DamagedRecordWarning,
    Record,
    RoundEntry,
    cells_to_run,
)

__all__ = ["RunDir", "StoreWriteError", "read_records"]

RECORDS = "records.jsonl"
ROUNDS = "rounds.jsonl"
ENV = "env.json"
ENVS = "envs"
PLAN = "plan.json"
PROFILES = "profiles"


class RunDir:
    """One run directory and its files (see the module docstring). Safe for several
    processes (and hosts sharing the directory) at once."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def records_path(self) -> Path:
        return self.root / RECORDS

    @property
    def env_path(self) -> Path:
        return self.root / ENV

    def ensure(self) -> RunDir:
        """Create the directory, or check an existing one: it, and the folders and files
        of it the store writes, must be writable, so a bad ``--out`` is refused before
        anything runs. A directory that cannot be created leaves no parent behind."""
        where = str(self.root)
        created = [p for p in (self.root, *self.root.parents) if not p.exists()]
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            for p in created:  # deepest first; only the empty parents this call made
                try:
                    p.rmdir()
                except OSError:
                    pass
            raise UsageError(f"cannot create results directory {where!r}: "
                             f"{exc.strerror or exc}") from None
        if not self.root.is_dir():
            raise UsageError(f"results directory {where!r} is a file, not a directory")
        for name, folder in ((RECORDS, False), (ROUNDS, False), (PLAN, False),
                             (claims.CLAIMS, True), (claims.RUNNING, True), (ENVS, True)):
            path = self.root / name
            if path.exists() and path.is_dir() != folder:
                raise UsageError(f"{str(path)!r} is {'a file' if folder else 'a directory'}; "
                                 f"seqbench keeps its {'folder' if folder else 'file'} "
                                 "there: move it away and rerun")
        for path in (self.root, *(self.root / n for n in (claims.CLAIMS, claims.RUNNING)
                                  if (self.root / n).is_dir())):
            if not os.access(path, os.W_OK | os.X_OK):
                raise UsageError(f"results directory {str(path)!r} is not writable")
        return self

    def to_run(self, cells: Sequence[Cell], retry_failed: bool = False) -> list[Cell]:
        """The cells of ``cells`` that need running (``store.records.cells_to_run``)."""
        return cells_to_run(cells, self.latest_by_cell(), retry_failed)

    def record_counts(self) -> dict[str, int]:
        """How many records each cell has (a new record of a cell is a new count)."""
        counts: dict[str, int] = {}
        for d in self.read_dicts():
            counts[d["cell_id"]] = counts.get(d["cell_id"], 0) + 1
        return counts

    def append(self, record: Record) -> None:
        """Append one record atomically (one write under flock) and fsync it; this
        process's claim of the cell, if any, ends with it."""
        self._append_line(self.records_path, record.to_json())
        claims.release_if_mine(self.root, record.cell_id)

    # ------------------------------------------------------------ who measures what

    def claim_cell(self, cell_id: str) -> CellClaim | None:
        """Take ``cell_id`` for this process, or None while another live runner holds it
        (:func:`harness.store.claims.claim_cell`)."""
        return claims.claim_cell(self.root, cell_id)

    @contextmanager
    def lease(self, cell_ids: Sequence[str], slots: int, job_id: str = "") -> Iterator[WorkerLease]:
        """This process's worker lease on ``cell_ids`` for the duration of the block."""
        with claims.lease(self.root, cell_ids, slots, len(self.read_dicts()), job_id) as me:
            yield me

    def leases(self) -> list[WorkerLease]:
        return claims.leases(self.root)

    @property
    def rounds_path(self) -> Path:
        return self.root / ROUNDS

    def append_round(self, entry: dict[str, Any]) -> None:
        """Append one finished round of a cell (``cell_id``, ``round``, ``samples`` …), so
        a killed run resumes a cell from its next round instead of losing its samples."""
        self._append_line(self.rounds_path, json.dumps(entry, sort_keys=True, allow_nan=False))

    def read_rounds(self) -> dict[str, list[dict[str, Any]]]:
        """Each cell's finished rounds of its latest attempt (from its last round 0 on), in
        order 0, 1, … (the longest gap-free prefix; a round written twice counts once)."""
        by_cell: dict[str, dict[int, dict[str, Any]]] = {}
        damaged: list[str] = []
        for d in self._round_lines():
            why = RoundEntry.problem(d)
            if why:
                damaged.append(why)
                continue
            if d["round"] == 0:
                by_cell[d["cell_id"]] = {}
            by_cell.setdefault(d["cell_id"], {}).setdefault(d["round"], d)
        if damaged:
            warnings.warn(f"{self.rounds_path}: {len(damaged)} damaged line(s) set aside "
                          f"(first: {damaged[0]}); those rounds are measured again",
                          stacklevel=2)
        out = {}
        for cid, rounds in by_cell.items():
            seq = []
            while len(seq) in rounds:
                seq.append(rounds[len(seq)])
            out[cid] = seq
        return out

    def _round_lines(self) -> list[dict[str, Any]]:
        """The dicts of ``rounds.jsonl``; a line a killed writer left broken is skipped."""
        try:
            raw = self.rounds_path.read_bytes() if self.rounds_path.exists() else b""
        except OSError as exc:
            raise UsageError(f"cannot read {self.rounds_path}: {exc.strerror}") from None
        out = []
        for line in raw.split(b"\n"):
            try:
                d = json.loads(line) if line.strip() else None
            except (ValueError, RecursionError):
                continue
            if isinstance(d, dict):
                out.append(d)
        return out

    def _append_line(self, path: Path, text: str) -> None:
        """Append ``text`` as one whole line or not at all: a short write or an error
        (a full disk: ENOSPC, a quota: EDQUOT, an I/O error) truncates the file back to
        its size before, so no half line is ever left behind, and raises StoreWriteError."""
        line = (text + "\n").encode()
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreWriteError(path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            try:
                self._terminate_partial_line(fd)
                data = memoryview(line)
                while data:
                    n = os.write(fd, data)
                    if n <= 0:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    data = data[n:]
                os.fsync(fd)
            except OSError as exc:
                try:
                    os.ftruncate(fd, size)
                    os.fsync(fd)
                except OSError:
                    pass
                raise StoreWriteError(path, exc) from None
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _terminate_partial_line(self, fd: int) -> None:
        """If a killed writer left a line without newline, end it so ours stays whole."""
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")

    def read_dicts(self) -> list[dict[str, Any]]:
        """All well-formed record dicts; broken lines are skipped with a warning.

        A line is broken when it is not JSON (a writer killed mid-line, corruption) or not
        a record (a field missing or of the wrong type, see ``Record.problem``). Lines of
        another schema version are kept so that ``records`` can name the version."""
        if not self.records_path.exists():
            return []
        out = []
        with os_errors_as_usage(f"read {self.records_path}"):
            lines = self.records_path.read_bytes().split(b"\n")
        for i, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            where = "last line" if i >= len(lines) - 1 else f"line {i}"
            try:
                d = json.loads(raw)
            except (ValueError, RecursionError):  # not JSON, not UTF-8, absurdly nested
                warnings.warn(
                    f"{self.records_path}: skipping truncated or corrupt {where}", stacklevel=2
                )
                continue
            foreign = (isinstance(d, dict) and isinstance(d.get("schema"), int)
                       and d["schema"] not in READABLE_SCHEMAS)
            why = None if foreign else Record.problem(d)
            if why:
                warnings.warn(f"{self.records_path}: skipping {where}, not a record: {why}",
                              DamagedRecordWarning, stacklevel=2)
                continue
            out.append(d)
        return out

    def records(self) -> list[Record]:
        """Records of this schema version; raises UsageError on an incompatible store."""
        dicts = self.read_dicts()
        bad = {d.get("schema") for d in dicts} - set(READABLE_SCHEMAS)
        if bad:
            raise UsageError(
                f"{self.records_path} holds records of schema version(s) {sorted(map(str, bad))}; "
                f"this seqbench reads versions {list(READABLE_SCHEMAS)} (writes {SCHEMA_VERSION})"
            )
        return [Record.from_dict(d) for d in dicts]

    def latest_by_cell(self) -> dict[str, Record]:
        """The last record of each cell (a resumed cell's newer record wins)."""
        return {r.cell_id: r for r in self.records()}

    def write_env(self, env: dict[str, Any]) -> None:
        write_json(self.env_path, env)

    def env(self) -> dict[str, Any]:
        """The run's environment; {} with a warning when env.json is damaged."""
        return read_json_object(self.env_path)

    def set_aside(self, path: Path) -> Path:
        """Move a damaged file out of the way (kept for inspection) before rewriting it."""
        aside = path.with_name(f"{path.name}.damaged")
        os.replace(path, aside)
        warnings.warn(f"{path} was damaged; kept as {aside.name} and written anew", stacklevel=2)
        return aside

    # ------------------------------------------------------------ environments

    def note_env(self, env: dict[str, Any]) -> None:
        """Keep the first environment as ``env.json`` (later ones under ``resumed``), and each
        host's latest as ``envs/<host>.json``. Safe when several jobs start at once."""
        (self.root / ENVS).mkdir(exist_ok=True)
        write_json(self.root / ENVS / f"{env.get('hostname', 'unknown')}.json", env)
        with locked(self.root, ".env.lock"):
            previous = self.env()
            if not previous and self.env_path.exists():
                self.set_aside(self.env_path)
            if previous:
                previous.setdefault("resumed", []).append(env)
                env = previous
            self.write_env(env)

    def host_env(self, host: str) -> dict[str, Any]:
        """The environment of the machine ``host`` (a record's ``host``): its
        ``envs/<host>.json``, else ``env.json`` (a run of one machine, or one written
        before per-host environments); {} with a warning when the file is damaged."""
        path = self.root / ENVS / f"{host}.json"
        if host and path.is_file():
            env = read_json_object(path)
            if env:
                return env
        return self.env()

    # ------------------------------------------------------------ the plan

    @property
    def plan_path(self) -> Path:
        return self.root / PLAN

    def write_plan(self, cells: Sequence[Cell], meta: dict[str, Any]) -> None:
        """Add ``cells`` to the directory's plan (earlier cells stay: a resume may ask fewer)."""
        with locked(self.root, ".plan.lock"):
            old = self.plan()
            if not old and self.plan_path.exists():
                self.set_aside(self.plan_path)
            by_id = {d["cell_id"]: d for d in old.get("cells", [])}
            for c in cells:
                by_id.setdefault(c.cell_id, {"cell_id": c.cell_id, **c.key_dict()})
            write_json(self.plan_path, {**old, **meta, "cells": list(by_id.values())})

    def plan(self) -> dict[str, Any]:
        """The plan, or {} (with a warning) when plan.json is missing or damaged; cell entries
        that are not ``{"cell_id": str, ...}`` objects are dropped."""
        path = self.plan_path
        plan = read_json_object(path)
        if not plan:
            return {}
        cells = plan.get("cells", [])
        good = [d for d in cells if isinstance(d, dict) and isinstance(d.get("cell_id"), str)
                ] if isinstance(cells, list) else []
        if not isinstance(cells, list) or len(good) != len(cells):
            warnings.warn(f"{path}: skipping malformed cell entries", stacklevel=2)
        plan["cells"] = good
        return plan

    # ------------------------------------------------------------ profiles

    @property
    def profiles_path(self) -> Path:
        return self.root / PROFILES



def read_records(dirs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Record]:
    """Records of one or several run directories; UsageError if a directory holds none."""
    if isinstance(dirs, (str, os.PathLike)):
        dirs = [dirs]
    out: list[Record] = []
    for d in dirs:
        store = RunDir(d)
        if not store.root.is_dir():
            raise UsageError(f"run directory {str(d)!r} does not exist")
        recs = store.records()
        if not recs:
            raise UsageError(
                f"run directory {str(d)!r} has no records ({RECORDS} missing or empty)"
            )
        out.extend(recs)
    return out
