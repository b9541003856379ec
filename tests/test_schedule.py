"""The run's decisions (``harness.run.schedule``) explored as a state machine, with no
process started: 1-3 runners sharing one directory (claims and a store modelled as
dicts), 1-3 slots (``cpu`` or ``cuda:K``), 1-5 rounds, every cell outcome, kills and
resumes, claims taken over from dead runners.

Invariants: a record is never written twice for a cell and every cell ends with one; the
runners never deadlock (draining the live ones always finishes); the skip rule holds
within a series; a cell's rounds come in order, and a resumed cell continues from its
next round; a slot runs one cell at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from harness.run.schedule import FAILURES_THAT_SKIP, Schedule, Skip, Stalled, Start, group_key
from harness.store.records import Cell

OUTCOMES = ["ok", "ok", "ok", "error", "oom", "timeout", "nonfinite"]


@dataclass
class Runner:
    sched: Schedule
    cells: list[Cell]
    alive: bool = True
    running: dict[str, tuple[Cell, int, str]] = field(default_factory=dict)  # -> round, slot


class SharedRun(RuleBasedStateMachine):
    @initialize(n_slots=st.integers(1, 3), gpu=st.booleans(), rounds=st.integers(1, 5),
                data=st.data())
    def setup(self, n_slots, gpu, rounds, data):
        device = "cuda" if gpu else "cpu"
        self.slots = [f"cuda:{i}" for i in range(n_slots)] if gpu else ["cpu"] * n_slots
        self.rounds = rounds
        self.cells = [Cell.make(arch=a, workload="forward", seq_len=n, batch=1, device=device)
                      for a in ("a", "b") for n in (8, 16, 32)]
        self.records: dict[str, list[str]] = {}  # cell id -> statuses written
        self.rounds_stored: dict[str, int] = {}
        self.claims: dict[str, int] = {}  # cell id -> runner index
        self.runners: list[Runner] = []
        for _ in range(data.draw(st.integers(1, 3), label="runners")):
            self._new_runner(data)

    # --- the model's store and claims ---------------------------------------------
    def _subset(self, data) -> list[Cell]:
        picked = data.draw(st.lists(st.sampled_from(self.cells), min_size=1, unique=True),
                           label="cells")
        return sorted(picked, key=lambda c: self.cells.index(c))

    def _new_runner(self, data) -> None:
        cells = self._subset(data)
        todo = [c for c in cells if c.cell_id not in self.records]
        known = {c.cell_id: (c, self.records[c.cell_id][-1]) for c in self.cells
                 if c.cell_id in self.records}
        resumed = {c.cell_id: self.rounds_stored[c.cell_id] for c in todo
                   if self.rounds_stored.get(c.cell_id)}
        sched = Schedule(todo, self.slots, self.rounds, seed=1, known=known, resumed=resumed)
        self.runners.append(Runner(sched, cells))

    def _claim(self, i: int, cell: Cell) -> bool:
        owner = self.claims.get(cell.cell_id)
        if cell.cell_id in self.records or (
                owner is not None and owner != i and self.runners[owner].alive):
            return False
        self.claims[cell.cell_id] = i
        return True

    def _write(self, i: int, cell: Cell, status: str) -> None:
        assert cell.cell_id not in self.records, f"{cell.cell_id} recorded twice"
        assert self.claims.get(cell.cell_id) == i, "recorded without holding its claim"
        self.records[cell.cell_id] = [status]
        del self.claims[cell.cell_id]

    def _shorter(self, cell: Cell) -> list[Cell]:
        return [c for c in self.cells
                if group_key(c) == group_key(cell) and c.seq_len < cell.seq_len]

    # --- runners' steps -----------------------------------------------------------
    def act(self, i: int) -> bool:
        """One pass of runner ``i``'s loop: what the store holds now, then its actions."""
        r = self.runners[i]
        progressed = False
        for c in self.cells:
            if c.cell_id in self.records:
                r.sched.stored(c, self.records[c.cell_id][-1])
        try:
            actions = r.sched.next()
        except Stalled as exc:
            raise AssertionError(f"runner {i} stalled: {exc}") from None
        for a in actions:
            if isinstance(a, Skip):
                failed = [c for c in self._shorter(a.cell)
                          if self.records.get(c.cell_id, [""])[-1] in FAILURES_THAT_SKIP]
                assert failed, f"{a.cell.cell_id} skipped without a failed shorter cell"
                if self._claim(i, a.cell):
                    self._write(i, a.cell, "skipped")
                else:
                    r.sched.held_elsewhere(a.cell)
                progressed = True
            elif isinstance(a, Start):
                progressed = True
                fresh = self.claims.get(a.cell.cell_id) != i
                if fresh and not self._claim(i, a.cell):
                    r.sched.held_elsewhere(a.cell)
                    continue
                stored = self.rounds_stored.get(a.cell.cell_id, 0)
                if fresh and not r.sched.claimed(a.cell, stored):
                    continue  # a dead runner had stored rounds of it: planned again
                assert a.round == self.rounds_stored.get(a.cell.cell_id, 0), "round order"
                if a.round == 0:
                    for c in self._shorter(a.cell):
                        status = self.records.get(c.cell_id, [""])[-1]
                        assert status not in FAILURES_THAT_SKIP, "skip rule broken"
                busy = [s for _, _, s in r.running.values()]
                assert busy.count(a.slot) < self.slots.count(a.slot), "slot double-booked"
                r.running[a.cell.cell_id] = (a.cell, a.round, a.slot)
                progressed = True
        return progressed

    def finish(self, i: int, cid: str, outcome: str) -> None:
        r = self.runners[i]
        cell, rnd, _ = r.running.pop(cid)
        if outcome == "ok":
            self.rounds_stored[cid] = rnd + 1
            if r.sched.round_done(cell, rnd):
                self._write(i, cell, "ok")
                r.sched.ended(cell, "ok")
        else:
            self._write(i, cell, outcome)
            r.sched.ended(cell, outcome)

    def poll(self, i: int) -> bool:
        r = self.runners[i]
        progressed = False
        for cid, state in r.sched.state.items():
            if not state.elsewhere:
                continue
            if cid in self.records:
                r.sched.stored(state.cell, self.records[cid][-1])
                progressed = True
            elif self._claim(i, state.cell):  # its owner died
                r.sched.claimed(state.cell, self.rounds_stored.get(cid, 0))
                progressed = True
        return progressed

    def _alive(self) -> list[int]:
        return [i for i, r in enumerate(self.runners) if r.alive]

    @rule(data=st.data())
    def step(self, data):
        alive = self._alive()
        if alive:
            self.act(data.draw(st.sampled_from(alive), label="runner"))

    @rule(data=st.data())
    def round_ends(self, data):
        busy = [(i, cid) for i in self._alive() for cid in self.runners[i].running]
        if busy:
            i, cid = data.draw(st.sampled_from(busy), label="cell")
            self.finish(i, cid, data.draw(st.sampled_from(OUTCOMES), label="outcome"))

    @rule(data=st.data())
    def look_around(self, data):
        alive = self._alive()
        if alive:
            self.poll(data.draw(st.sampled_from(alive), label="runner"))

    @rule(data=st.data())
    def kill(self, data):
        alive = self._alive()
        if alive:
            self.runners[data.draw(st.sampled_from(alive), label="victim")].alive = False

    @rule(data=st.data())
    def resume(self, data):
        if len(self.runners) < 6:
            self._new_runner(data)

    @invariant()
    def rounds_never_pass_the_plan(self):
        if hasattr(self, "rounds"):
            assert all(k <= self.rounds for k in self.rounds_stored.values())

    def teardown(self):
        """Drain: the live runners (or one fresh runner over every cell, when none is
        left) finish every cell, each recorded once, with no deadlock."""
        if not hasattr(self, "runners"):
            return
        if not self._alive():
            self.runners.append(Runner(Schedule(
                [c for c in self.cells if c.cell_id not in self.records], self.slots,
                self.rounds, seed=1, known={c.cell_id: (c, self.records[c.cell_id][-1])
                                            for c in self.cells if c.cell_id in self.records},
                resumed={c.cell_id: k for c in self.cells if c.cell_id not in self.records
                         for k in [self.rounds_stored.get(c.cell_id, 0)] if k}), self.cells))
        for _ in range(10_000):
            alive = [i for i in self._alive() if not self.runners[i].sched.done]
            if not alive:
                break
            moved = False
            for i in alive:
                moved |= self.act(i) | self.poll(i)
                for cid in list(self.runners[i].running):
                    self.finish(i, cid, "ok")
                    moved = True
            stuck = [self.runners[i].sched.left() for i in alive if not self.runners[i].sched.done]
            assert moved or not stuck, f"deadlock: {stuck}"
        else:
            raise AssertionError("did not finish")
        wanted = {c.cell_id for i in self._alive() for c in self.runners[i].cells}
        assert wanted <= set(self.records), wanted - set(self.records)


SharedRun.TestCase.settings = settings(max_examples=300, stateful_step_count=40,
                                       deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow])
test_shared_run = SharedRun.TestCase


def test_two_cpu_slots_share_later_rounds_without_running_a_cell_twice():
    """The ``--workers 2`` crash: both ``cpu`` slots drew from one round queue and sent a
    round to a cell already running it (``round 1 added after 2 rounds``)."""
    cells = [Cell.make(arch=a, workload="forward", seq_len=n, batch=2)
             for a in ("lmu", "lmu-fft", "lstm") for n in (64, 128, 256)]
    s = Schedule(cells, ["cpu", "cpu"], rounds=3)
    done: dict[str, int] = {}
    running: list[Start] = []
    while not s.done:
        running += [a for a in s.next() if isinstance(a, Start)]
        assert len(running) <= 2 and len({a.cell.cell_id for a in running}) == len(running)
        a = running.pop(0)
        assert a.round == done.get(a.cell.cell_id, 0)
        done[a.cell.cell_id] = a.round + 1
        if s.round_done(a.cell, a.round):
            s.ended(a.cell, "ok")
    assert done == {c.cell_id: 3 for c in cells}


def test_a_runner_waiting_for_another_runners_record_still_runs_its_later_rounds():
    """The two-runner deadlock: each held one architecture's shortest cell and, waiting
    for the other's record (skip rule), started no later round of its own."""
    cells = [Cell.make(arch=a, workload="forward", seq_len=n, batch=1)
             for a in ("lmu-fft", "lstm") for n in (16, 32)]
    s = Schedule(cells, ["cpu"], rounds=3)
    for expect in [("lmu-fft", 16), ("lmu-fft", 32)]:
        (a,) = s.next()
        assert (a.cell.arch, a.cell.seq_len, a.round) == (*expect, 0)
        s.round_done(a.cell, 0)
    (theirs,) = s.next()
    assert (theirs.cell.arch, theirs.cell.seq_len) == ("lstm", 16)
    s.held_elsewhere(theirs.cell)  # another runner measures it; lstm n=32 waits for it
    (a,) = s.next()
    assert a.cell.arch == "lmu-fft" and a.round == 1  # not a silent wait
    s.stored(theirs.cell, "ok")
    s.round_done(a.cell, 1)
    assert [(x.cell.arch, x.cell.seq_len, x.round) for x in s.next()] == [("lstm", 32, 0)]


def test_the_skip_rule_remembers_earlier_commands():
    cells = [Cell.make(arch="a", workload="forward", seq_len=n, batch=1) for n in (16, 32)]
    s = Schedule([cells[1]], ["cpu"], rounds=2, known={cells[0].cell_id: (cells[0], "timeout")})
    (skip,) = s.next()
    assert isinstance(skip, Skip) and (skip.status, skip.at_len) == ("timeout", 16)
    assert s.done and s.next() == []


def test_work_left_with_nothing_to_do_is_an_error_naming_the_cells():
    cells = [Cell.make(arch="a", workload="forward", seq_len=16, batch=1, device="cuda")]
    with pytest.raises(ValueError, match="no slot among"):
        Schedule(cells, ["cpu"], rounds=1)
    s = Schedule(cells, ["cuda:0"], rounds=1)
    (start,) = s.next()
    s.state[start.cell.cell_id].slot = None  # a lost event: the cell is neither run nor done
    s.state[start.cell.cell_id].rounds_done = 1
    with pytest.raises(Stalled, match="a/forward/n16"):
        s.next()
