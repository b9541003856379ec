"""A run's loop: events from cell processes, the store and other runners go into the
schedule (``harness.run.schedule``: every decision), its actions come out and are
carried out here. Processes are ``harness.run.processes``'s; claims ``SharedDir``'s.

Every record is appended to the store (flock + fsync) the moment its cell ends, and
every finished round to ``rounds.jsonl``, so a kill of the sweep loses only the rounds
that were running, and a resume continues each cell from its next round. Re-running with
the same directory skips cells that already have a record (``retry_failed`` re-runs
those whose status is not ``ok``).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.measure.headline import HEADLINE_MIN_SAMPLES
from harness.run.messages import RoundDone
from harness.run.processes import POLL_S, CellEnded, Processes, RoundFinished
from harness.run.rounds import Pool, pooled_fields
from harness.run.schedule import Schedule, Skip, Start, Wait
from harness.run.settings import RunSettings
from harness.store.claims import CellClaim
from harness.store.records import Cell, Record, cells_to_run
from harness.store.rundir import RunDir


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
    positions: dict[int, int] = field(default_factory=dict)  # round -> place in its order

    def add(self, done: RoundDone, position: int) -> None:
        self.pool.add(done.round, done.samples, done.contention, position)
        if done.static is not None:
            self.static = done.static
            self.started_at = done.started_at or ""
        if self.warmup_s is None:
            self.warmup_s = done.warmup_s
        self.k, self.stop_reason = done.k, done.stop_reason
        if done.threads is not None:
            self.threads = done.threads
        self.wall_s += float(done.wall_s or 0.0)

    def quiet(self) -> int:
        """Samples so far that count towards the cell's minimum: contended ones do not."""
        return self.pool.quiet(self.threads or 1)

    def wants_another(self, settings: RunSettings) -> bool:
        """After its planned rounds, whether the cell should get one more: a neighbour's
        burst left it fewer than ``HEADLINE_MIN_SAMPLES`` quiet samples. At most ``rounds`` extra
        rounds (its own budget again); a machine loaded throughout leaves it flagged."""
        extra = self.pool.rounds_done - settings.rounds
        return (bool(self.pool.contention) and self.quiet() < HEADLINE_MIN_SAMPLES
                and extra < settings.rounds)

    def record(self, settings: RunSettings, slot: str = "") -> Record:
        fields_ = pooled_fields(
            self.static or {}, self.pool, noise_threshold=settings.noise_threshold,
            threads=self.threads or 1, warmup_s=self.warmup_s, stop_reason=self.stop_reason,
            calls_per_sample=self.k or 1,
        )
        extra = self.pool.rounds_done - settings.rounds
        if extra > 0:
            fields_["message"] += f"; {extra} extra round(s): too few quiet samples"
        if slot and slot != self.cell.device:
            fields_["message"] = f"[ran on {slot}] {fields_['message']}"
        return Record.for_cell(self.cell, "ok", started_at=self.started_at, wall_s=self.wall_s,
                               threads=self.threads, **fields_)

    @classmethod
    def resumed(cls, cell: Cell, entries: list[dict[str, Any]]) -> CellRounds:
        """The rounds a store's ``rounds.jsonl`` holds of ``cell`` (a resume)."""
        st = cls(cell)
        for e in entries:
            st.add(RoundDone.from_entry(e), int(e.get("position", 0)))
        return st


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
        self._reported = dict(self._counts)
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

    def poll(self) -> tuple[list[Record], list[Cell]]:
        """Records other runners stored since the last poll (of any cell: they count for
        the skip rule), and cells waiting here whose owner died (claimed now)."""
        now = time.monotonic()
        if now - self._beat > self.BEAT_S:
            self._beat = now
            for claim in self.held.values():
                claim.touch()
        self._refresh()  # a stat() unless the store grew
        stored = [self._latest[cid] for cid, n in self._counts.items()
                  if n > self._reported.get(cid, 0) and cid not in self.held]
        self._reported = dict(self._counts)
        for rec in stored:
            self.elsewhere.pop(rec.cell_id, None)
        if not self.elsewhere or now - self._polled < self.POLL_S:
            return stored, []
        self._polled = now
        orphans = []
        for cid, cell in list(self.elsewhere.items()):
            claim = self.store.claim_cell(cid)
            if claim is None:
                continue
            if self._stored_meanwhile(cid):
                claim.release()
                continue
            del self.elsewhere[cid]
            self.held[cid] = claim
            orphans.append(cell)
        return stored, orphans

    def release_all(self) -> None:
        for claim in self.held.values():
            claim.release()
        self.held.clear()


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
    """Run ``cells`` (those without a record; with ``retry_failed`` also those whose
    latest is not ok) on ``slots`` (``["cpu", "cpu"]``: two CPU workers; ``["cuda:0",
    "cuda:1"]``: two GPUs), ``threads`` torch threads per cell process (0: torch's
    default). Returns the records of ``cells`` after the run, in their order.
    ``on_round(cell, round, rounds)`` is called as each round of a timed cell ends."""
    run = _Run.start(cells, settings, store.ensure(), list(slots or ["cpu"]), threads,
                     retry_failed, on_record, on_round, run_id)
    try:
        run.store_finished_rounds()
        while not run.sched.done:
            run.hear_other_runners()
            run.carry_out(run.sched.next())
            run.hear_cells()
    finally:
        if run.procs:
            run.procs.kill_all()
        run.shared.release_all()  # cells not finished here are free for another runner
    return [run.known[c.cell_id] for c in cells if c.cell_id in run.known]


@dataclass
class _Run:
    """One call of ``run_cells``: the schedule, the cell processes, this runner's claims,
    and what each cell's rounds left; each method turns one kind of event into the
    schedule's terms or carries out its actions."""

    sched: Schedule
    procs: Processes | None
    shared: SharedDir
    store: RunDir
    settings: RunSettings
    known: dict[str, Record]  # the latest record of each cell
    rounds: dict[str, CellRounds]
    on_record: Callable[[Record], None] | None
    on_round: Callable[[Cell, int, int], None] | None
    run_id: str

    @classmethod
    def start(cls, cells: Sequence[Cell], settings: RunSettings, store: RunDir,
              slots: list[str], threads: int, retry_failed: bool,
              on_record: Callable[[Record], None] | None,
              on_round: Callable[[Cell, int, int], None] | None, run_id: str) -> _Run:
        known = store.latest_by_cell()
        todo = cells_to_run(cells, known, retry_failed)
        partial = store.read_rounds() if todo else {}
        rounds = {c.cell_id: CellRounds.resumed(c, partial[c.cell_id])
                  for c in todo if partial.get(c.cell_id)}
        sched = Schedule(todo, slots, settings.rounds, settings.seed,
                         known=_history(known, todo),
                         resumed={cid: st.pool.rounds_done for cid, st in rounds.items()})
        procs = Processes(settings, threads, len(slots)) if todo else None
        return cls(sched, procs, SharedDir(store), store, settings, known, rounds, on_record,
                   on_round, run_id)

    def finish(self, rec: Record, mine: bool = True) -> None:
        """A cell's record: stored (``mine``), or measured by another runner."""
        if mine:
            rec.run_id, rec.host = self.run_id, os.uname().nodename
            self.store.append(rec)
        self.known[rec.cell_id] = rec
        if self.on_record:
            self.on_record(rec)

    def store_finished_rounds(self) -> None:
        """Cells whose every round is stored but not their record (a kill in between)."""
        for st in self.rounds.values():
            if st.pool.rounds_done < self.settings.rounds:
                continue
            if self.shared.take(st.cell):
                self.sched.ended(st.cell, "ok")
                self.finish(st.record(self.settings))
            else:
                self.sched.held_elsewhere(st.cell)

    def hear_other_runners(self) -> None:
        """Records other runners stored (they count for the skip rule), and cells whose
        owner died, taken over here with the rounds it stored."""
        stored, orphans = self.shared.poll()
        for rec in stored:
            cid = rec.cell_id
            waiting = cid in self.sched.state and self.sched.status_of(cid) is None
            self.sched.stored(Cell.make(**_key(rec)), rec.status)
            if waiting and self.sched.status_of(cid) is not None:
                self.finish(rec, mine=False)
        for cell in orphans:
            self.take_over(cell)

    def carry_out(self, actions: Sequence[Start | Skip | Wait]) -> None:
        """Start rounds and store skips; a cell first claimed here may turn out to be held
        by another runner (then it waits for that runner's record)."""
        for action in actions:
            if isinstance(action, Wait):
                continue
            cell = action.cell
            fresh = cell.cell_id not in self.shared.held
            if fresh and not self.shared.take(cell):
                self.sched.held_elsewhere(cell)
            elif isinstance(action, Skip):
                self.finish(Record.for_cell(cell, "skipped", (
                    f"skipped: {cell.arch} hit {action.status} at n={action.at_len}")))
            elif not fresh or self.take_over(cell):
                st = self.rounds.setdefault(cell.cell_id, CellRounds(cell))
                st.positions[action.round] = action.position
                self.procs.start(cell, action.slot, action.round, st.quiet(), st.k)

    def take_over(self, cell: Cell) -> bool:
        """This runner now holds ``cell``: with the rounds the store has of it (a dead
        runner may have left some), or recorded at once when all are there (it died
        before the record). True when the round the schedule meant can start."""
        entries = self.store.read_rounds().get(cell.cell_id, [])
        if entries:
            self.rounds[cell.cell_id] = CellRounds.resumed(cell, entries)
        else:
            self.rounds.pop(cell.cell_id, None)
        if len(entries) < self.settings.rounds:
            return self.sched.claimed(cell, len(entries))
        self.sched.ended(cell, "ok")
        self.finish(self.rounds[cell.cell_id].record(self.settings))
        return False

    def hear_cells(self) -> None:
        """Finished rounds and ended cells (or, with none busy, a pause while other
        runners measure)."""
        procs = self.procs
        events = procs.wait(POLL_S) if procs and procs.procs else []
        if not events and not (procs and any(p.busy for p in procs.procs.values())):
            time.sleep(POLL_S)
        for ev in events:
            if isinstance(ev, CellEnded):
                self.sched.ended(ev.cell, ev.record.status)
                self.finish(ev.record)
                continue
            st = self.rounds[ev.cell.cell_id]
            _round_done(ev, st, self.store, self.on_round, self.settings.rounds)
            if not self.sched.round_done(ev.cell, ev.msg.round):
                procs.rest(ev.cell)
            elif st.wants_another(self.settings):
                self.sched.again(ev.cell)
                procs.rest(ev.cell)
            else:
                procs.close(ev.cell)
                self.sched.ended(ev.cell, "ok")
                self.finish(st.record(self.settings, ev.slot))


def _key(rec: Record) -> dict[str, Any]:
    """A record's cell key (``Cell.make(**_key(rec))`` is its cell)."""
    return {k: getattr(rec, k) for k in Cell.__dataclass_fields__}


def _history(known: dict[str, Record], todo: Sequence[Cell]) -> dict[str, tuple[Cell, str]]:
    """Stored records of cells not to run, as (cell, status) for the skip rule."""
    running = {c.cell_id for c in todo}
    cells = ((Cell.make(**_key(r)), r.status) for cid, r in known.items()
             if cid not in running)
    return {c.cell_id: (c, status) for c, status in cells}


def _round_done(ev: RoundFinished, st: CellRounds, store: RunDir,
                on_round: Callable[[Cell, int, int], None] | None, rounds: int) -> None:
    r = ev.msg.round
    position = st.positions.get(r, 0)
    st.add(ev.msg, position)
    store.append_round({"cell_id": ev.cell.cell_id, "position": position, **ev.msg.entry()})
    if on_round:
        on_round(ev.cell, r, rounds)
