"""Cell processes: started, fed, watched and stopped in one place.

Each cell runs in its own process forked from a server with torch preloaded
(``harness.run.forkserver``), in its own session so that its whole group can be killed.
:class:`Processes` starts a round of a cell (in its warm process when it has one),
waits for what the processes say, and turns their deaths, timeouts and memory overruns
into the cell's record:

- a Python exception or OOM inside the cell comes back as that cell's record;
- a process that dies (segfault, abort, ``os._exit``) is recorded as ``error`` with its
  signal or exit code;
- a cell past ``timeout_s`` has its process group killed and is recorded as ``timeout``;
- on CPU, a cell whose own memory (its unique set size: pages shared with the forkserver
  are not its own) passes the cap is killed and recorded as ``oom``;
- a death that says nothing about the cell (the forkserver gone, a stop from outside),
  or a message that is not one of ``harness.run.messages``'s, raises
  :class:`~harness.errors.HarnessFault` instead of blaming it.

Between rounds a cell's process stays warm while the idle processes' unique memory fits
``warm_mem_gb``; beyond that it is closed and prepared again for its next round.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection, wait

import psutil

from harness.errors import HarnessFault, describe
from harness.run import forkserver
from harness.run.messages import CellRecord, FromCell, RoundCommand, RoundDone, Stop
from harness.run.settings import RunSettings
from harness.store.records import Cell, Record

# How often the runner wakes while cells run, to enforce timeouts and the memory cap (a
# message or a death wakes it at once). Each wake reads the busy cell's memory (~1.4 ms of
# CPU: psutil scans /proc for children), CPU taken from the cell it watches: at 50 Hz that
# was 0.06 of a core, measured as contention; at 4 Hz it is under 0.01.
POLL_S = 0.25


@dataclass(frozen=True)
class RoundFinished:
    """A round of ``cell`` ended: the worker's round message (samples, contention...)."""

    cell: Cell
    slot: str
    msg: RoundDone


@dataclass(frozen=True)
class CellEnded:
    """``cell`` has its final record from its process (a failure, or a one-shot task)."""

    cell: Cell
    slot: str
    record: Record


@dataclass
class CellProc:
    """A cell's process: running a round (``busy``) or idle and warm between rounds."""

    cell: Cell
    process: mp.process.BaseProcess
    conn: Connection
    slot: str
    started: float  # when its current round (or its setup) began
    round: int = 0
    busy: bool = True
    uss: int = 0  # unique memory when it last went idle



class Processes:
    """The cell processes of one runner."""

    def __init__(self, settings: RunSettings, threads: int, workers: int) -> None:
        self.settings = settings
        self.threads = threads
        self.mem_cap = default_mem_cap(settings, workers)
        self.warm_cap = (int(settings.warm_mem_gb * 2**30) if settings.warm_mem_gb > 0
                         else int(0.5 * psutil.virtual_memory().available))
        self.procs: dict[str, CellProc] = {}  # by cell id: busy or warm
        self._ctx = forkserver.context()
        self._settings_dict = asdict(settings)

    def start(self, cell: Cell, slot: str, r: int, taken: int, k: int | None) -> None:
        """Round ``r`` of ``cell`` on ``slot``: in its warm process, else a fresh one."""
        warm = self.procs.get(cell.cell_id)
        if warm is not None:
            try:
                warm.conn.send(RoundCommand(r, taken))
                warm.busy, warm.round, warm.started, warm.slot = True, r, time.monotonic(), slot
                return
            except (OSError, ValueError):
                self.close(cell)
        d = {**cell.key_dict(), "device": slot}
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_process_entry, daemon=True,
            args=(d, self._settings_dict, self.threads, child, RoundCommand(r, taken, k)))
        proc.start()
        child.close()
        self.procs[cell.cell_id] = CellProc(cell, proc, parent, slot, time.monotonic(), r)

    def wait(self, timeout: float = POLL_S) -> list[RoundFinished | CellEnded]:
        """What the busy processes said within ``timeout`` (their deaths included)."""
        busy = [p for p in self.procs.values() if p.busy]
        if not busy:
            return []
        ready = wait([p.conn for p in busy] + [p.process.sentinel for p in busy],
                     timeout=timeout)
        now = time.monotonic()
        events: list[RoundFinished | CellEnded] = []
        for p in busy:
            out = _collect(p, ready, now, self.settings, self.mem_cap)
            if out is None:
                continue
            p.busy = False
            if isinstance(out, RoundDone):
                events.append(RoundFinished(p.cell, p.slot, out))
                continue
            self.procs.pop(p.cell.cell_id, None)
            rec = out.record
            if p.round > 0 and not rec.message.startswith("round "):
                rec.message = f"round {p.round}: {rec.message}"
            events.append(CellEnded(p.cell, p.slot, rec))
        return events

    def rest(self, cell: Cell) -> None:
        """Between rounds: keep the process warm if the idle ones fit the warm budget."""
        p = self.procs[cell.cell_id]
        p.uss = _unique(p.process.pid)
        idle = sum(q.uss for q in self.procs.values() if not q.busy and q is not p)
        if idle + p.uss > self.warm_cap:
            self.close(cell)

    def close(self, cell: Cell) -> None:
        p = self.procs.pop(cell.cell_id, None)
        if p is None:
            return
        try:
            p.conn.send(Stop())
        except (OSError, ValueError):
            pass
        end_process(p.process, grace_s=2)

    def kill_all(self) -> None:
        """Done or interrupted: leave no orphan process behind."""
        for p in list(self.procs.values()):
            _kill_group(p.process)
        self.procs.clear()


def end_process(proc: mp.process.BaseProcess, grace_s: float) -> None:
    """Give ``proc`` (done, or told to stop) ``grace_s`` to exit by itself, then kill its
    process group: nothing a cell started outlives it."""
    forkserver.join(proc, grace_s)
    _kill_group(proc)


def _kill_group(proc: mp.process.BaseProcess) -> None:
    """Kill the cell process and anything it started (it runs in its own session, so its
    process group outlives it while anything it started lives)."""
    if proc.pid is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except (ProcessLookupError, ValueError):
            pass
    forkserver.join(proc, 5)  # a stopped forkserver is killed, not waited for


def _rss(pid: int) -> int:
    try:
        p = psutil.Process(pid)
        return p.memory_info().rss + sum(
            c.memory_info().rss for c in p.children(recursive=True)
        )
    except psutil.Error:
        return 0


def _unique(pid: int) -> int:
    """Memory only this process (and its children) holds: its unique set size. A cell
    process is forked from a server that imported torch, and shares those pages with every
    other cell; its RSS counts them again in each (about 220 MB of a 250 MB idle cell)."""
    try:
        p = psutil.Process(pid)
        return sum(q.memory_full_info().uss for q in [p, *p.children(recursive=True)])
    except psutil.Error:
        return _rss(pid)


def death_message(proc: mp.process.BaseProcess) -> str:
    """How a process forked from the server that sent no result ended, in one line."""
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"cell process died from {name} (crash: segfault, abort or kill)"
    return f"cell process exited with code {code} before reporting a result"


# signals the runner never sends a cell: a stop from outside (scancel, kill), not a crash
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


def not_the_cells_fault(proc: mp.process.BaseProcess) -> str | None:
    """Why the death of ``proc`` (a cell's process, ended) says nothing about its cell, or
    None when it does: the forkserver that reports its exit status is gone
    (multiprocessing then reads 255), or it was stopped from outside (a Slurm job
    cancelled or requeued signals every process of the job). Recording either as the
    cell's error would blame the architecture: the caller raises HarnessFault."""
    code = proc.exitcode
    if code == 255 and not forkserver.alive(grace_s=1.0):
        return "the cell processes' forkserver died (or stopped, and was killed)"
    if code is not None and -code in STOP_SIGNALS:
        return f"the cell process was stopped from outside ({signal.Signals(-code).name})"
    return None


def _fault(cell: Cell, why: str) -> HarnessFault:
    return HarnessFault(f"{why} while measuring {cell.cell_id}: nothing recorded for the "
                        "cells in flight; run the same command again to resume them")


def default_mem_cap(settings: RunSettings, workers: int) -> int:
    if settings.mem_cap_gb > 0:
        return int(settings.mem_cap_gb * 2**30)
    return int(0.75 * psutil.virtual_memory().total / max(1, workers))


def _collect(p: CellProc, ready: list, now: float, settings: RunSettings,
             mem_cap: int) -> FromCell | None:
    """A busy process's message (a round or a final record), or a record of its death,
    timeout or memory overrun; None while it is still fine."""
    if p.conn in ready or p.conn.poll():
        msg = _receive(p)
        if isinstance(msg, CellRecord):
            end_process(p.process, grace_s=10)
            rec = msg.record
            rec.device = p.cell.device  # the cell's identity, not the slot it ran on
            if p.slot != p.cell.device:
                rec.message = f"[ran on {p.slot}] {rec.message}"
        if msg is not None:
            return msg
        forkserver.join(p.process, 2 * forkserver.REPORT_S)  # its pipe closed: it ended
    failure: Record | None = None
    if not p.process.is_alive():
        p.process.join(timeout=1)
        _kill_group(p.process)  # what it started dies with it
        why = not_the_cells_fault(p.process)
        if why:
            raise _fault(p.cell, why)
        failure = Record.for_cell(p.cell, "error", death_message(p.process),
                                  wall_s=now - p.started)
    elif now - p.started > settings.timeout_s:
        _kill_group(p.process)
        failure = Record.for_cell(
            p.cell, "timeout", f"killed after the {settings.timeout_s:g} s cell timeout",
            wall_s=now - p.started,
        )
    elif not p.slot.startswith("cuda"):
        # its own pages (USS): torch's, shared with the forkserver, are not its. USS costs
        # ~5 ms of CPU to read (smaps), RSS 0.02 ms and USS <= RSS: read it only past the cap
        rss = _rss(p.process.pid)
        if rss > mem_cap:
            rss = _unique(p.process.pid)
        if rss > mem_cap:
            _kill_group(p.process)
            failure = Record.for_cell(
                p.cell, "oom",
                f"killed: its own memory {rss / 2**30:.2f} GiB passed the CPU cap "
                f"{mem_cap / 2**30:.2f} GiB",
                peak_mem_bytes=rss, wall_s=now - p.started,
            )
    return None if failure is None else CellRecord(failure)


def _receive(p: CellProc) -> FromCell | None:
    """The message ``p`` sent; None when its pipe is closed (it died: its death says why).
    Anything that does not unpickle to a message of ``harness.run.messages`` is a fault of
    the harness, not of the cell: the worker sends nothing else."""
    try:
        msg = p.conn.recv()
    except (EOFError, OSError):
        return None
    except Exception as exc:  # noqa: BLE001 - whatever unpickling it raised
        raise _fault(p.cell, f"the cell process sent an unreadable message ({describe(exc)})"
                     ) from None
    if not isinstance(msg, FromCell):
        raise _fault(p.cell, f"the cell process sent {type(msg).__name__} {msg!r:.60}, not a "
                             "message of harness.run.messages")
    return msg


def _process_entry(cell_dict, settings_dict, threads, conn, start):  # pragma: no cover - child
    from harness.run.worker import process_main

    process_main(cell_dict, settings_dict, threads, conn, start)
