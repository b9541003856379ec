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
- ``running/<name>.json``: a *claim*, written by each live worker (a local sweep or one
  Slurm job) for the cells it is about to run and removed when it ends. It names the
  host, the process and how many cells the worker runs at once, and how many records the
  store held when it started, so a re-run cell (``--retry-failed``) counts as running
  until its new record arrives. A claim left by a killed worker is recognised as dead on
  its own host (its process is gone); claims from other hosts cannot be checked and are
  shown as such.
- ``profiles/``: ``python -m harness profile --from DIR`` writes there (never records).

Files are data only: JSON, never pickles. A damaged JSON file is read as empty with a
warning and set aside (``NAME.damaged``) before it is written anew.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from harness.errors import UsageError, os_errors_as_usage
from harness.store.records import READABLE_SCHEMAS, SCHEMA_VERSION, Cell, Record, RoundEntry

RECORDS = "records.jsonl"
ROUNDS = "rounds.jsonl"  # finished rounds of cells whose record is not final yet
ENV = "env.json"
ENVS = "envs"
PLAN = "plan.json"
RUNNING = "running"
CLAIMS = "claims"  # claims/<hash of cell_id>.json: the one runner measuring that cell
CLAIM_STALE_S = 600.0  # a claim from another host not refreshed for this long is stale
PROFILES = "profiles"


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
    """Write whole or not at all (a temporary file renamed over ``path``)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreWriteError(path, exc) from None


def _read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object file; {} when it is missing, and with a warning when it is unreadable
    or not an object."""
    try:
        data = json.loads(path.read_text())
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


class StoreWriteError(Exception):
    """A line could not be appended to a run directory's file (nothing of it was left
    behind). ``full`` when the disk or quota is full: freeing space and rerunning the same
    command resumes."""

    def __init__(self, path: Path, exc: OSError) -> None:
        self.path, self.errno = Path(path), exc.errno
        self.full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        super().__init__(f"cannot write {path}: {exc.strerror or exc}")


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


@dataclass
class CellClaim:
    """One cell in one runner's hands, from its first round to its record (see
    ``RunDir.claim_cell``). Its file's mtime is the owner's heartbeat (``touch``)."""

    cell_id: str
    host: str
    pid: int
    create_time: float
    path: str = ""

    @classmethod
    def mine(cls, cell_id: str, path: Path) -> CellClaim:
        pid = os.getpid()
        return cls(cell_id, socket.gethostname(), pid, psutil.Process(pid).create_time(),
                   str(path))

    def same_owner(self, other: CellClaim) -> bool:
        return (self.host, self.pid) == (other.host, other.pid) and abs(
            self.create_time - other.create_time) < 1.0

    def alive(self) -> bool:
        """Whether the owner still runs: its process on this host; on another host (not
        checkable from here) whether it refreshed the claim within ``CLAIM_STALE_S``."""
        if self.host != socket.gethostname():
            try:
                return time.time() - os.stat(self.path).st_mtime < CLAIM_STALE_S
            except OSError:
                return False
        return Claim(self.host, self.pid, self.create_time, 0, 0, []).alive() is True

    def touch(self) -> None:
        try:
            os.utime(self.path)
        except OSError:
            pass

    def release(self) -> None:
        """Give the cell up (its record is stored, or this runner stops)."""
        held = _read_cell_claim(Path(self.path))
        if held is not None and held.same_owner(self):
            Path(self.path).unlink(missing_ok=True)


def _read_cell_claim(path: Path) -> CellClaim | None:
    try:
        d = json.loads(path.read_text())
        return CellClaim(str(d["cell_id"]), str(d["host"]), int(d["pid"]),
                         float(d["create_time"]), str(path))
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


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
        with os_errors_as_usage(f"create results directory {str(self.root)!r}"):
            self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise UsageError(f"results directory {str(self.root)!r} is not writable")
        return self

    def append(self, record: Record) -> None:
        """Append one record atomically (one write under flock) and fsync it; this
        process's claim of the cell, if any, ends with it."""
        self._append_line(self.records_path, record.to_json())
        self._release_if_mine(record.cell_id)

    # ------------------------------------------------------------ cell claims

    def _claim_path(self, cell_id: str) -> Path:
        return self.root / CLAIMS / f"{hashlib.sha1(cell_id.encode()).hexdigest()[:20]}.json"

    def claim_cell(self, cell_id: str) -> CellClaim | None:
        """Take ``cell_id`` for this process, or None while another live runner holds it.

        Runners sharing a directory (two commands by mistake, Slurm jobs by design)
        measure each cell once: a runner claims a cell before its first round and the
        claim ends with the cell's record (``append``) or ``CellClaim.release``. A claim
        whose owner is dead (its process gone on this host; not refreshed for
        ``CLAIM_STALE_S`` from another host) is taken over. Created with O_EXCL, so two
        runners never both get a cell."""
        path = self._claim_path(cell_id)
        path.parent.mkdir(exist_ok=True)
        me = CellClaim.mine(cell_id, path)
        for _ in range(3):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                held = _read_cell_claim(path)
                if held is not None and held.same_owner(me):
                    return held
                if held is None:  # being written right now, or damaged
                    try:
                        young = time.time() - path.stat().st_mtime < 5.0
                    except OSError:
                        continue
                    if young:
                        return None
                elif held.alive():
                    return None
                with _locked(path.parent, ".lock"):  # one runner takes a stale claim over
                    again = _read_cell_claim(path)
                    if again is None or again == held:
                        path.unlink(missing_ok=True)
                continue
            except OSError as exc:
                raise StoreWriteError(path, exc) from None
            with os.fdopen(fd, "w") as f:
                json.dump({k: v for k, v in asdict(me).items() if k != "path"}, f)
            return me
        return None

    def _release_if_mine(self, cell_id: str) -> None:
        path = self._claim_path(cell_id)
        if path.exists():
            CellClaim.mine(cell_id, path).release()

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
                              stacklevel=2)
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
        tmp = self.env_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(env, indent=2, sort_keys=True, default=str))
        os.replace(tmp, self.env_path)

    def env(self) -> dict[str, Any]:
        """The run's environment; {} with a warning when env.json is damaged (the records
        stand on their own, so a damaged env.json must not hide them)."""
        try:
            text = self.env_path.read_text()
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            warnings.warn(f"{self.env_path}: unreadable ({exc}); ignoring it", stacklevel=2)
            return {}
        try:
            env = json.loads(text)
        except (ValueError, RecursionError):
            env = None
        if not isinstance(env, dict):
            warnings.warn(f"{self.env_path}: not a JSON object; ignoring it", stacklevel=2)
            return {}
        return env

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
        _write_json(self.root / ENVS / f"{env.get('hostname', 'unknown')}.json", env)
        with _locked(self.root, ".env.lock"):
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
            env = _read_json_object(path)
            if env:
                return env
        return self.env()

    # ------------------------------------------------------------ the plan

    @property
    def plan_path(self) -> Path:
        return self.root / PLAN

    def write_plan(self, cells: Sequence[Cell], meta: dict[str, Any]) -> None:
        """Add ``cells`` to the directory's plan (earlier cells stay: a resume may ask fewer)."""
        with _locked(self.root, ".plan.lock"):
            old = self.plan()
            if not old and self.plan_path.exists():
                self.set_aside(self.plan_path)
            by_id = {d["cell_id"]: d for d in old.get("cells", [])}
            for c in cells:
                by_id.setdefault(c.cell_id, {"cell_id": c.cell_id, **c.key_dict()})
            _write_json(self.plan_path, {**old, **meta, "cells": list(by_id.values())})

    def plan(self) -> dict[str, Any]:
        """The plan, or {} (with a warning) when plan.json is missing or damaged; cell entries
        that are not ``{"cell_id": str, ...}`` objects are dropped."""
        path = self.plan_path
        plan = _read_json_object(path)
        if not plan:
            return {}
        cells = plan.get("cells", [])
        good = [d for d in cells if isinstance(d, dict) and isinstance(d.get("cell_id"), str)
                ] if isinstance(cells, list) else []
        if not isinstance(cells, list) or len(good) != len(cells):
            warnings.warn(f"{path}: skipping malformed cell entries", stacklevel=2)
        plan["cells"] = good
        return plan

    # ------------------------------------------------------------ live workers

    @contextmanager
    def claim(self, cell_ids: Sequence[str], slots: int, job_id: str = "") -> Iterator[Claim]:
        """Mark ``cell_ids`` as in this process's hands for the duration of the block."""
        pid = os.getpid()
        c = Claim(host=socket.gethostname(), pid=pid,
                  create_time=psutil.Process(pid).create_time(), slots=slots,
                  records_before=len(self.read_dicts()), cells=list(cell_ids), job_id=job_id,
                  started=time.time())
        folder = self.root / RUNNING
        folder.mkdir(exist_ok=True)
        name = f"job-{job_id}" if job_id else f"{c.host}-{pid}"
        path = folder / f"{name}.json"
        _write_json(path, asdict(c))
        try:
            yield c
        finally:
            path.unlink(missing_ok=True)

    def claims(self) -> list[Claim]:
        folder = self.root / RUNNING
        out = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                out.append(Claim(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue  # being replaced right now, or not ours
        return out

    # ------------------------------------------------------------ profiles

    @property
    def profiles_path(self) -> Path:
        return self.root / PROFILES


# the old name, for code written before issue 13
ResultStore = RunDir


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
