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
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

import psutil

from harness.errors import HarnessFault
from harness.run import forkserver
from harness.run.rounds import Pool, pooled_fields, visiting_order
from harness.run.settings import RunSettings
from harness.store.records import Cell, Record
from harness.store.rundir import CellClaim, RunDir

# How often the runner wakes while cells run, to enforce timeouts and the memory cap (a
# message or a death wakes it at once). Each wake reads the busy cell's memory (~1.4 ms of
# CPU: psutil scans /proc for children), CPU taken from the cell it watches: at 50 Hz that
# was 0.06 of a core, measured as contention; at 4 Hz it is under 0.01.
POLL_S = 0.25
FAILURES_THAT_SKIP = ("oom", "timeout")


def group_key(cell: Cell) -> tuple:
    """Cells that differ only in length: a failure at n skips the longer ones."""
    d = cell.key_dict()
    d.pop("seq_len")
    return tuple(sorted((k, repr(v)) for k, v in d.items()))


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


@dataclass
class CellRounds:
    """What a cell's finished rounds left: pooled samples and its setup's measurements."""

    cell: Cell
    pool: Pool = field(default_factory=Pool)
    static: dict[str, Any] | None = None
    k: int | None = None
    warmup_s: float | None = None
    stop_reason: str = ""
    threads: int | None = None
    started_at: str = ""
    wall_s: float = 0.0
    slot: str = ""

    def add(self, msg: dict[str, Any], position: int) -> None:
        self.pool.add(msg["round"], msg["samples"], msg.get("contention", ()), position)
        if msg.get("static") is not None:
            self.static = msg["static"]
            self.started_at = msg.get("started_at", "")
        if self.warmup_s is None:
            self.warmup_s = msg.get("warmup_s")
        self.k, self.stop_reason = msg["k"], msg.get("stop_reason", "")
        self.threads = msg.get("threads", self.threads)
        self.wall_s += float(msg.get("wall_s") or 0.0)

    def quiet(self) -> int:
        """Samples so far that count towards the cell's minimum: contended ones do not."""
        return self.pool.quiet(self.threads or 1)

    def record(self, settings: RunSettings) -> Record:
        fields_ = pooled_fields(
            self.static or {}, self.pool, noise_threshold=settings.noise_threshold,
            threads=self.threads or 1, warmup_s=self.warmup_s, stop_reason=self.stop_reason,
            calls_per_sample=self.k or 1,
        )
        if self.slot and self.slot != self.cell.device:
            fields_["message"] = f"[ran on {self.slot}] {fields_['message']}"
        return Record.for_cell(self.cell, "ok", started_at=self.started_at, wall_s=self.wall_s,
                               threads=self.threads, **fields_)

    @classmethod
    def resumed(cls, cell: Cell, entries: list[dict[str, Any]]) -> CellRounds:
        st = cls(cell)
        for e in entries:
            st.add(e, int(e.get("position", 0)))
        return st


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

    def put_back(self, cell: Cell) -> None:
        """A cell to run after all (another runner held it and died)."""
        self.pending.append(cell)
        group = self.groups.setdefault(group_key(cell), [])
        if cell not in group:
            group.append(cell)
            group.sort(key=lambda c: c.seq_len)


class SharedDir:
    """This runner's cell claims in a directory other runners may share (two commands by
    mistake, Slurm jobs by design): each cell is measured by one runner only. A cell
    another live runner holds waits here until its record lands (then it is reported as
    stored) or its owner dies (then it is run here)."""

    POLL_S = 0.5  # how often claimed cells are looked at
    BEAT_S = 60.0  # how often this runner's claims are refreshed (other hosts' staleness)

    def __init__(self, store: RunDir) -> None:
        self.store = store
        self.held: dict[str, CellClaim] = {}
        self.elsewhere: dict[str, Cell] = {}
        self._size = -1
        self._latest: dict[str, Record] = {}
        self._counts: dict[str, int] = {}
        self._refresh()
        self.start_counts = dict(self._counts)
        self._polled = self._beat = time.monotonic()
        self._said = False

    def _refresh(self) -> None:
        try:
            size = self.store.records_path.stat().st_size
        except OSError:
            size = 0
        if size == self._size:
            return
        self._size = size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the run itself has said so once
            dicts = self.store.read_dicts()
        self._counts = {}
        for d in dicts:
            self._counts[d["cell_id"]] = self._counts.get(d["cell_id"], 0) + 1
        self._latest = {r.cell_id: r for r in map(Record.from_dict, dicts)}

    def _stored_meanwhile(self, cid: str) -> bool:
        self._refresh()
        return self._counts.get(cid, 0) > self.start_counts.get(cid, 0)

    def take(self, cell: Cell) -> bool:
        """Claim ``cell`` for this runner; False (it waits in ``elsewhere``) when another
        runner holds it or has stored its record since this run started."""
        claim = self.store.claim_cell(cell.cell_id)
        if claim is not None and not self._stored_meanwhile(cell.cell_id):
            self.held[cell.cell_id] = claim
            return True
        if claim is not None:
            claim.release()
        self.elsewhere[cell.cell_id] = cell
        if not self._said:
            self._said = True
            warnings.warn(f"another runner is measuring cells of {self.store.root}; "
                          "waiting for its records instead of measuring them twice",
                          stacklevel=3)
        return False

    def poll(self, known: dict[str, Record],
             on_record: Callable[[Record], None] | None) -> list[Cell]:
        """Records other runners stored (into ``known``), and cells whose owner died."""
        now = time.monotonic()
        if now - self._beat > self.BEAT_S:
            self._beat = now
            for claim in self.held.values():
                claim.touch()
        if not self.elsewhere or now - self._polled < self.POLL_S:
            return []
        self._polled = now
        orphans = []
        for cid, cell in list(self.elsewhere.items()):
            if self._stored_meanwhile(cid):
                del self.elsewhere[cid]
                known[cid] = self._latest[cid]
                if on_record:
                    on_record(self._latest[cid])
                continue
            claim = self.store.claim_cell(cid)
            if claim is not None:
                if self._stored_meanwhile(cid):
                    claim.release()
                    continue
                del self.elsewhere[cid]
                self.held[cid] = claim
                orphans.append(cell)
        return orphans

    def release_all(self) -> None:
        for claim in self.held.values():
            claim.release()
        self.held.clear()


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


def _unique(pid: int) -> int:
    """Memory only this process (and its children) holds: its unique set size. A cell
    process is forked from a server that imported torch, and shares those pages with every
    other cell; its RSS counts them again in each (about 220 MB of a 250 MB idle cell)."""
    try:
        p = psutil.Process(pid)
        return sum(q.memory_full_info().uss for q in [p, *p.children(recursive=True)])
    except psutil.Error:
        return _rss(pid)


def _death_message(proc: mp.process.BaseProcess) -> str:
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


def _not_the_cells_fault(p: CellProc) -> None:
    """Raise HarnessFault when a dead cell process says nothing about its cell: the
    forkserver that reports its exit status is gone (multiprocessing then reads 255), or
    it was stopped from outside (a Slurm job cancelled or requeued signals every process
    of the job). Recording either as the cell's error would blame the architecture."""
    code = p.process.exitcode
    if code == 255 and not forkserver.alive(grace_s=1.0):
        why = "the cell processes' forkserver died"
    elif code is not None and -code in STOP_SIGNALS:
        why = f"the cell process was stopped from outside ({signal.Signals(-code).name})"
    else:
        return
    raise HarnessFault(f"{why} while measuring {p.cell.cell_id}: nothing recorded for the "
                       "cells in flight; run the same command again to resume them")


def default_mem_cap(settings: RunSettings, workers: int) -> int:
    if settings.mem_cap_gb > 0:
        return int(settings.mem_cap_gb * 2**30)
    return int(0.75 * psutil.virtual_memory().total / max(1, workers))


def run_cells(
    cells: Sequence[Cell],
    settings: RunSettings,
    store: RunDir,
    *,
    slots: Sequence[str] | None = None,
    threads: int = 0,
    retry_failed: bool = False,
    on_record: Callable[[Record], None] | None = None,
    run_id: str = "",
    on_round: Callable[[Cell, int, int], None] | None = None,
) -> list[Record]:
    """Run ``cells`` (skipping those already stored), append each record to ``store``.

    ``slots`` are the devices that run concurrently, one cell each: ``["cpu"]`` (default),
    ``["cpu", "cpu"]`` for two CPU workers, ``["cuda:0", "cuda:1"]`` for two GPUs. A cell
    whose device is ``cuda`` runs on whichever GPU slot is free. ``threads`` sets torch's
    thread count in each cell process (0: torch's default). Returns the records of
    ``cells`` after the run (stored earlier or new), in the order of ``cells``.
    ``on_round(cell, round, rounds)`` is called as each round of a timed cell ends.

    Timed cells are measured in ``settings.rounds`` interleaved rounds
    (``harness.run.rounds``): round 0 in length order, under the skip rule; then each
    slot visits its cells in a fresh seeded order per round. A finished round is appended
    to ``rounds.jsonl`` at once and the record (pooled samples) when the last round ends,
    so a kill loses only unfinished rounds, and a resume continues each cell from its
    next round. Cell processes stay warm between rounds while their unique memory (USS)
    fits ``settings.warm_mem_gb``; beyond that a cell is prepared again for its next round.
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
    rounds_total = settings.rounds
    # cells a killed run left part-way: they continue from their next round
    partial = store.read_rounds() if todo else {}
    states: dict[str, CellRounds] = {}
    passed0: dict[str, Record] = {}  # cells through round 0 (ok so far), for the skip rule
    shared = SharedDir(store)
    for c in todo:
        if partial.get(c.cell_id) and shared.take(c):
            states[c.cell_id] = CellRounds.resumed(c, partial[c.cell_id])
            states[c.cell_id].slot = _slot_for(c, slots) or slots[0]
            passed0[c.cell_id] = Record.for_cell(c, "ok")
    sched = Scheduler([c for c in todo
                       if c.cell_id not in states and c.cell_id not in shared.elsewhere])
    mem_cap = default_mem_cap(settings, len(slots))
    warm_cap = (int(settings.warm_mem_gb * 2**30) if settings.warm_mem_gb > 0
                else int(0.5 * psutil.virtual_memory().available))
    free = list(slots)
    procs: list[CellProc] = []
    ctx = forkserver.context() if todo else None
    settings_dict = asdict(settings)
    host = os.uname().nodename
    # later rounds: per slot, the round it is in and the cells still to visit in it
    slot_round = dict.fromkeys(slots, 0)
    queues: dict[str, list[Cell]] = {s: [] for s in slots}
    # each cell's position in the visiting order of (slot, round), kept in its record
    positions: dict[tuple[str, int], dict[str, int]] = {}

    def finish(rec: Record) -> None:
        rec.run_id, rec.host = run_id, host
        store.append(rec)
        known[rec.cell_id] = rec
        states.pop(rec.cell_id, None)
        if on_record:
            on_record(rec)

    def close(p: CellProc) -> None:
        try:
            p.conn.send({"cmd": "stop"})
        except (OSError, ValueError):
            pass
        p.process.join(timeout=2)
        if p.process.is_alive():
            _kill_group(p.process)
        procs.remove(p)

    def launch(cell: Cell, slot: str, start: dict[str, Any]) -> None:
        d = {**cell.key_dict(), "device": slot}
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(
            target=_process_entry, args=(d, settings_dict, threads, child, start), daemon=True
        )
        proc.start()
        child.close()
        procs.append(CellProc(cell, proc, parent, slot, time.monotonic(), start["round"]))
        if start["round"] == 0:
            order = positions.setdefault((slot, 0), {})
            order[cell.cell_id] = len(order)

    def dispatch(cell: Cell, slot: str, r: int) -> None:
        """Round ``r`` of a cell past round 0: its warm process, or a fresh one."""
        st = states[cell.cell_id]
        warm = next((p for p in procs if p.cell.cell_id == cell.cell_id), None)
        if warm is not None:
            try:
                warm.conn.send({"cmd": "round", "round": r, "taken": st.quiet()})
                warm.busy, warm.round, warm.started, warm.slot = True, r, time.monotonic(), slot
                return
            except (OSError, ValueError):
                close(warm)
        launch(cell, slot, {"round": r, "taken": st.quiet(), "k": st.k})

    def round_done(p: CellProc, msg: dict[str, Any]) -> None:
        st = states.setdefault(p.cell.cell_id, CellRounds(p.cell, slot=p.slot))
        r = msg["round"]
        position = positions.get((p.slot, r), {}).get(p.cell.cell_id, 0)
        st.add(msg, position)
        store.append_round({"cell_id": p.cell.cell_id, "position": position, **msg})
        if on_round:
            on_round(p.cell, r, rounds_total)
        p.busy = False
        if r == 0:
            passed0[p.cell.cell_id] = Record.for_cell(p.cell, "ok")
        if st.pool.rounds_done >= rounds_total:
            close(p)
            finish(st.record(settings))
            return
        p.uss = _unique(p.process.pid)
        idle = sum(q.uss for q in procs if not q.busy and q is not p)
        if idle + p.uss > warm_cap:
            close(p)  # prepared again for its next round

    def next_later_round(slot: str) -> tuple[Cell, int] | None:
        """The next (cell, round) of ``slot`` once round 0 is over everywhere."""
        while True:
            if queues[slot]:
                return queues[slot].pop(0), slot_round[slot]
            mine = [st for st in states.values() if st.slot == slot and
                    st.pool.rounds_done < rounds_total]
            if not mine:
                return None
            r = min(st.pool.rounds_done for st in mine)
            slot_round[slot] = r
            due = [st.cell for st in mine if st.pool.rounds_done == r]
            queues[slot] = visiting_order(due, r, seed=settings.seed, slot=slot)
            positions[(slot, r)] = {c.cell_id: i for i, c in enumerate(queues[slot])}

    try:
        for st in [st for st in states.values() if st.pool.rounds_done >= rounds_total]:
            finish(st.record(settings))  # all rounds stored, not the record (killed, disk full)
        while sched.pending or shared.elsewhere or any(p.busy for p in procs) or any(
            st.pool.rounds_done < rounds_total for st in states.values()
        ):
            for cell in shared.poll(known, on_record):
                sched.put_back(cell)
            seen = {**passed0, **known}
            for cell in sched.eligible(seen):
                failed = sched.failure_before(cell, known)
                if failed is not None:
                    sched.take(cell)
                    if cell.cell_id not in shared.held and not shared.take(cell):
                        continue  # another runner has it
                    finish(Record.for_cell(
                        cell, "skipped",
                        f"skipped: {cell.arch} hit {failed.status} at n={failed.seq_len}",
                    ))
                    continue
                slot = _slot_for(cell, free)
                if slot is None:
                    continue
                sched.take(cell)
                if cell.cell_id not in shared.held and not shared.take(cell):
                    continue  # another runner measures it
                free.remove(slot)
                launch(cell, slot, {"round": 0, "taken": 0, "k": None})
            round0_over = not sched.pending and not any(p.busy and p.round == 0 for p in procs)
            if round0_over:
                for slot in list(free):
                    nxt = next_later_round(slot)
                    if nxt is not None:
                        free.remove(slot)
                        dispatch(nxt[0], slot, nxt[1])
            busy = [p for p in procs if p.busy]
            if not busy:
                if sched.pending and not free:
                    raise RuntimeError("scheduler stalled: no free slot and nothing running")
                if shared.elsewhere:
                    time.sleep(POLL_S)  # only waiting for other runners' records
                continue
            ready = wait([p.conn for p in busy] + [p.process.sentinel for p in busy],
                         timeout=POLL_S)
            now = time.monotonic()
            for p in busy:
                out = _collect(p, ready, now, settings, mem_cap)
                if out is None:
                    continue
                free.append(p.slot)
                if out.get("kind") == "round":
                    round_done(p, out)
                    continue
                if p in procs:
                    procs.remove(p)
                rec = Record.from_dict(out["record"])
                if p.round > 0:
                    rec.message = f"round {p.round}: {rec.message}"
                finish(rec)
    finally:
        for p in list(procs):  # done or interrupted: leave no orphan processes behind
            _kill_group(p.process)
        shared.release_all()  # cells not finished here are free for another runner
    return [known[c.cell_id] for c in cells if c.cell_id in known]


def _slot_for(cell: Cell, free: list[str]) -> str | None:
    for slot in free:
        if cell.device == slot or (cell.device == "cuda" and slot.startswith("cuda")):
            return slot
    return None


def _collect(p: CellProc, ready: list, now: float, settings: RunSettings,
             mem_cap: int) -> dict[str, Any] | None:
    """A busy process's message (a round or a final record), or a record of its death,
    timeout or memory overrun as ``{"kind": "record"}``; None while it is still fine."""
    if p.conn in ready or p.conn.poll():
        try:
            msg = p.conn.recv()
        except (EOFError, OSError):
            msg = None
        if msg is not None:
            if msg.get("kind") == "record":
                p.process.join(timeout=10)
                if p.process.is_alive():
                    _kill_group(p.process)
                d = msg["record"]
                d["device"] = p.cell.device  # the cell's identity, not the slot it ran on
                if p.slot != p.cell.device:
                    d["message"] = f"[ran on {p.slot}] {d.get('message', '')}"
            return msg
    failure: Record | None = None
    if not p.process.is_alive():
        p.process.join(timeout=1)
        _not_the_cells_fault(p)
        failure = Record.for_cell(p.cell, "error", _death_message(p.process),
                                  wall_s=now - p.started)
    elif now - p.started > settings.timeout_s:
        _kill_group(p.process)
        failure = Record.for_cell(
            p.cell, "timeout", f"killed after the {settings.timeout_s:g} s cell timeout",
            wall_s=now - p.started,
        )
    elif not p.slot.startswith("cuda"):
        rss = _rss(p.process.pid)
        if rss > mem_cap:
            _kill_group(p.process)
            failure = Record.for_cell(
                p.cell, "oom",
                f"killed: resident memory {rss / 2**30:.2f} GiB passed the CPU cap "
                f"{mem_cap / 2**30:.2f} GiB",
                peak_mem_bytes=rss, wall_s=now - p.started,
            )
    return None if failure is None else {"kind": "record", "record": asdict(failure)}


def _process_entry(cell_dict, settings_dict, threads, conn, start):  # pragma: no cover - child
    from harness.run.worker import process_main

    process_main(cell_dict, settings_dict, threads, conn, start)
