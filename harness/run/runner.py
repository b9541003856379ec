"""Run cells in isolated processes, record every outcome, resume where a sweep stopped.

Each cell runs in a fresh process (``harness.run.worker.process_main``) forked from a
forkserver that preloads torch. The parent only schedules, watches and stores:

- a Python exception or OOM inside the cell comes back as that cell's record;
- a process that dies (segfault, abort, ``os._exit``) is recorded as ``error`` with its
  signal or exit code;
- a cell past ``timeout_s`` has its process group killed and is recorded as ``timeout``;
- on CPU, a cell whose resident memory passes the cap is killed and recorded as ``oom``;
- once an architecture fails for memory or time at length n, its longer lengths (same
  workload, batch, dtype, ...) are recorded as ``skipped`` instead of run.

Every record is appended to the store (flock + fsync) the moment its cell ends, so a
crash or kill of the sweep itself loses only the cells that were running. Re-running
with the same directory skips cells that already have a record (``retry_failed``
re-runs those whose status is not ``ok``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection, wait

import psutil

from harness.run.settings import RunSettings
from harness.store.records import Cell, Record
from harness.store.rundir import ResultStore

PRELOAD = ["torch", "architectures", "workloads", "harness.run.worker"]
POLL_S = 0.02
FAILURES_THAT_SKIP = ("oom", "timeout")


def group_key(cell: Cell) -> tuple:
    """Cells that differ only in length: a failure at n skips the longer ones."""
    d = cell.key_dict()
    d.pop("seq_len")
    return tuple(sorted((k, repr(v)) for k, v in d.items()))


@dataclass
class Running:
    cell: Cell
    process: mp.process.BaseProcess
    conn: Connection
    slot: str
    started: float


@dataclass
class Scheduler:
    """Which pending cell runs next: among cells whose shorter siblings have finished,
    the one expected to take longest (so parallel workers end together)."""

    pending: list[Cell]

    def __post_init__(self) -> None:
        self.groups: dict[tuple, list[Cell]] = {}
        for c in self.pending:
            self.groups.setdefault(group_key(c), []).append(c)
        for cells in self.groups.values():
            cells.sort(key=lambda c: c.seq_len)

    def _shorter(self, cell: Cell) -> list[Cell]:
        return [c for c in self.groups[group_key(cell)] if c.seq_len < cell.seq_len]

    def failure_before(self, cell: Cell, known: dict[str, Record]) -> Record | None:
        for c in self._shorter(cell):
            rec = known.get(c.cell_id)
            if rec is not None and rec.status in FAILURES_THAT_SKIP:
                return rec
        return None

    def eligible(self, known: dict[str, Record]) -> list[Cell]:
        out = []
        for cell in self.pending:
            shorter = self._shorter(cell)
            if all(c.cell_id in known for c in shorter):
                out.append(cell)
        out.sort(key=lambda c: c.seq_len * c.batch, reverse=True)
        return out

    def take(self, cell: Cell) -> None:
        self.pending.remove(cell)


def _context() -> mp.context.BaseContext:
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _kill_group(proc: mp.process.BaseProcess) -> None:
    """Kill the cell process and anything it started (it runs in its own session)."""
    if proc.pid is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except (ProcessLookupError, ValueError):
            pass
    proc.join(timeout=5)


def _rss(pid: int) -> int:
    try:
        p = psutil.Process(pid)
        return p.memory_info().rss + sum(
            c.memory_info().rss for c in p.children(recursive=True)
        )
    except psutil.Error:
        return 0


def _death_message(proc: mp.process.BaseProcess) -> str:
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"cell process died from {name} (crash: segfault, abort or kill)"
    return f"cell process exited with code {code} before reporting a result"


def default_mem_cap(settings: RunSettings, workers: int) -> int:
    if settings.mem_cap_gb > 0:
        return int(settings.mem_cap_gb * 2**30)
    return int(0.75 * psutil.virtual_memory().total / max(1, workers))


def run_cells(
    cells: Sequence[Cell],
    settings: RunSettings,
    store: ResultStore,
    *,
    slots: Sequence[str] | None = None,
    threads: int = 0,
    retry_failed: bool = False,
    on_record: Callable[[Record], None] | None = None,
    run_id: str = "",
) -> list[Record]:
    """Run ``cells`` (skipping those already stored), append each record to ``store``.

    ``slots`` are the devices that run concurrently, one cell each: ``["cpu"]`` (default),
    ``["cpu", "cpu"]`` for two CPU workers, ``["cuda:0", "cuda:1"]`` for two GPUs. A cell
    whose device is ``cuda`` runs on whichever GPU slot is free. ``threads`` sets torch's
    thread count in each cell process (0: torch's default). Returns the records of
    ``cells`` after the run (stored earlier or new), in the order of ``cells``.
    """
    store.ensure()
    slots = list(slots or ["cpu"])
    known = store.latest_by_cell()
    todo = [
        c for c in cells
        if c.cell_id not in known or (retry_failed and known[c.cell_id].status != "ok")
    ]
    for c in todo:
        known.pop(c.cell_id, None)
    homeless = [c.cell_id for c in todo if _slot_for(c, slots) is None]
    if homeless:
        raise ValueError(f"no worker slot among {slots} can run cell(s) {homeless[:3]}")
    sched = Scheduler(list(todo))
    mem_cap = default_mem_cap(settings, len(slots))
    free = list(slots)
    running: list[Running] = []
    ctx = _context() if todo else None
    settings_dict = asdict(settings)
    host = os.uname().nodename

    def finish(rec: Record) -> None:
        rec.run_id, rec.host = run_id, host
        store.append(rec)
        known[rec.cell_id] = rec
        if on_record:
            on_record(rec)

    def launch(cell: Cell, slot: str) -> None:
        d = {**cell.key_dict(), "device": slot}
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_process_entry, args=(d, settings_dict, threads, child), daemon=True
        )
        proc.start()
        child.close()
        running.append(Running(cell, proc, parent, slot, time.monotonic()))

    try:
        while sched.pending or running:
            for cell in sched.eligible(known):
                failed = sched.failure_before(cell, known)
                if failed is not None:
                    sched.take(cell)
                    finish(Record.for_cell(
                        cell, "skipped",
                        f"skipped: {cell.arch} hit {failed.status} at n={failed.seq_len}",
                    ))
                    continue
                slot = _slot_for(cell, free)
                if slot is None:
                    continue
                sched.take(cell)
                free.remove(slot)
                launch(cell, slot)
            if not running:
                continue
            ready = wait([r.conn for r in running] + [r.process.sentinel for r in running],
                         timeout=POLL_S)
            now = time.monotonic()
            for r in list(running):
                rec = _collect(r, ready, now, settings, mem_cap)
                if rec is None:
                    continue
                running.remove(r)
                free.append(r.slot)
                finish(rec)
    finally:
        for r in running:  # interrupted: leave no orphan processes behind
            _kill_group(r.process)
    return [known[c.cell_id] for c in cells if c.cell_id in known]


def _slot_for(cell: Cell, free: list[str]) -> str | None:
    for slot in free:
        if cell.device == slot or (cell.device == "cuda" and slot.startswith("cuda")):
            return slot
    return None


def _collect(r: Running, ready: list, now: float, settings: RunSettings,
             mem_cap: int) -> Record | None:
    """The record of a finished, dead, timed-out or over-memory cell; None if still fine."""
    if r.conn in ready or r.conn.poll():
        try:
            d = r.conn.recv()
        except (EOFError, OSError):
            d = None
        if d is not None:
            r.process.join(timeout=10)
            if r.process.is_alive():
                _kill_group(r.process)
            d["device"] = r.cell.device  # the cell's identity, not the slot it ran on
            if r.slot != r.cell.device:
                d["message"] = f"[ran on {r.slot}] {d.get('message', '')}"
            return Record.from_dict(d)
    if not r.process.is_alive():
        r.process.join(timeout=1)
        return Record.for_cell(r.cell, "error", _death_message(r.process),
                               wall_s=now - r.started)
    if now - r.started > settings.timeout_s:
        _kill_group(r.process)
        return Record.for_cell(
            r.cell, "timeout", f"killed after the {settings.timeout_s:g} s cell timeout",
            wall_s=now - r.started,
        )
    if not r.slot.startswith("cuda"):
        rss = _rss(r.process.pid)
        if rss > mem_cap:
            _kill_group(r.process)
            return Record.for_cell(
                r.cell, "oom",
                f"killed: resident memory {rss / 2**30:.2f} GiB passed the CPU cap "
                f"{mem_cap / 2**30:.2f} GiB",
                peak_mem_bytes=rss, wall_s=now - r.started,
            )
    return None


def _process_entry(cell_dict, settings_dict, threads, conn):  # pragma: no cover - child
    from harness.run.worker import process_main

    process_main(cell_dict, settings_dict, threads, conn)
