"""The run's decisions (``harness.run.schedule``) explored as a state machine, with no
process started: 1-3 runners sharing one directory (claims and a store modelled as
dicts), 1-3 slots (``cpu`` or ``cuda:K``), 1-5 rounds, every cell outcome, kills and
resumes, claims taken over from dead runners.

Invariants: a record is never written twice for a cell and every cell ends with one; the
runners never deadlock (draining the live ones always finishes); the skip rule holds
within a series; a cell's rounds are added in order (to a ``rounds.Pool``, as the runner
adds them), and a resumed cell continues from its next round; a slot runs one cell at a
time.

The same machine drives the old runner's rules (``tests/old_rules.py``, commit a115e68)
and must find both bugs of issue 22 there: the ``--workers 2`` crash and the deadlock of
two runners on one directory. ``pytest -s`` prints how many cases and steps the machine
ran on the new plan, and the shrunk failing case of each old bug.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from harness.run.rounds import Pool
from harness.run.schedule import FAILURES_THAT_SKIP, Schedule, Skip, Stalled, Start, group_key
from harness.store.records import Cell
from tests.old_rules import OldRules

OUTCOMES = ["ok", "ok", "ok", "error", "oom", "timeout", "nonfinite"]
# "short": the round is fine but left the cell too few quiet samples; after its last
# round the runner asks for another (``Schedule.again``, at most EXTRA per cell)
EXTRA = 2


@dataclass
class Runner:
    sched: Schedule | OldRules
    cells: list[Cell]
    alive: bool = True
    running: list[tuple[Cell, int, str]] = field(default_factory=list)  # rounds sent: round, slot


class SharedRun(RuleBasedStateMachine):
    """Runners of ``PLAN`` on one directory. ``SLOTS``, ``RUNNERS``: fixed instead of
    drawn; ``SAME_CELLS``: every runner is given every cell (one sweep started twice);
    ``KILLS``: runners may be killed and new ones started (resumes, take-overs)."""

    PLAN: type = Schedule
    OUTCOMES = [*OUTCOMES, "short"]
    SLOTS: list[str] | None = None
    RUNNERS: int | None = None
    SAME_CELLS = False
    KILLS = True
    examples = 0  # counted over a test run (teardown), with the rule steps taken
    steps = 0

    @initialize(data=st.data())
    def setup(self, data):
        if self.SLOTS is None:
            n = data.draw(st.integers(1, 3), label="n_slots")
            gpu = data.draw(st.booleans(), label="gpu")
            self.slots = [f"cuda:{i}" for i in range(n)] if gpu else ["cpu"] * n
        else:
            self.slots = list(self.SLOTS)
        device = "cuda" if self.slots[0].startswith("cuda") else "cpu"
        self.rounds = data.draw(st.integers(1, 5), label="rounds")
        self.cells = [Cell.make(arch=a, workload="forward", seq_len=n, batch=1, device=device)
                      for a in ("a", "b") for n in (8, 16, 32)]
        self.records: dict[str, list[str]] = {}  # cell id -> statuses written
        self.pools: dict[str, Pool] = {}  # cell id -> its stored rounds (rounds.jsonl)
        self.extra: dict[str, int] = {}  # cell id -> rounds added after its planned ones
        self.claims: dict[str, int] = {}  # cell id -> runner index
        self.runners: list[Runner] = []
        for _ in range(self.RUNNERS or data.draw(st.integers(1, 3), label="runners")):
            self._new_runner(data)

    # --- the model's store and claims ---------------------------------------------
    def _stored(self, cid: str) -> int:
        return self.pools[cid].rounds_done if cid in self.pools else 0

    def _subset(self, data) -> list[Cell]:
        if self.SAME_CELLS:
            return list(self.cells)
        picked = data.draw(st.lists(st.sampled_from(self.cells), min_size=1, unique=True),
                           label="cells")
        return sorted(picked, key=lambda c: self.cells.index(c))

    def _plan(self, cells: list[Cell]) -> Schedule | OldRules:
        """A runner's plan over ``cells`` as run_cells makes it: the cells without a
        record, the store's records, the rounds stored of the others."""
        todo = [c for c in cells if c.cell_id not in self.records]
        known = {c.cell_id: (c, self.records[c.cell_id][-1]) for c in self.cells
                 if c.cell_id in self.records}
        resumed = {c.cell_id: self._stored(c.cell_id) for c in todo if self._stored(c.cell_id)}
        return self.PLAN(todo, self.slots, self.rounds, seed=1, known=known, resumed=resumed)

    def _new_runner(self, data) -> None:
        self._start_runner(self._subset(data))

    def _start_runner(self, cells: list[Cell]) -> None:
        """A runner over ``cells``; as run_cells does first, it records the cells whose
        every round (extra ones included) a killed runner stored, when it can claim them."""
        r = Runner(self._plan(cells), cells)
        i = len(self.runners)
        self.runners.append(r)
        for cell in cells:
            if cell.cell_id in r.sched.state and self._stored(cell.cell_id) >= self.rounds:
                if self._claim(i, cell):
                    self._write(i, cell, "ok")
                    r.sched.ended(cell, "ok")
                else:
                    r.sched.held_elsewhere(cell)

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
                if fresh and not self._take_over(i, a.cell):
                    continue  # a dead runner had stored rounds of it: planned again
                stored = self._stored(a.cell.cell_id)
                assert a.round == stored, "round order"
                if a.round == 0:
                    for c in self._shorter(a.cell):
                        status = self.records.get(c.cell_id, [""])[-1]
                        assert status not in FAILURES_THAT_SKIP, "skip rule broken"
                busy = [s for _, _, s in r.running]
                assert busy.count(a.slot) < self.slots.count(a.slot), "slot double-booked"
                r.running.append((a.cell, a.round, a.slot))
        return progressed

    def finish(self, i: int, k: int, outcome: str) -> None:
        """The ``k``-th round runner ``i`` sent ends with ``outcome``."""
        r = self.runners[i]
        cell, rnd, _ = r.running.pop(k)
        if outcome in ("ok", "short"):
            # the runner adds each finished round to the cell's pool (CellRounds.add),
            # which raises when rounds come out of order
            self.pools.setdefault(cell.cell_id, Pool()).add(rnd, [1.0])
            if not r.sched.round_done(cell, rnd):
                return
            if outcome == "short" and self.extra.get(cell.cell_id, 0) < EXTRA:
                self.extra[cell.cell_id] = self.extra.get(cell.cell_id, 0) + 1
                r.sched.again(cell)
            else:
                self._write(i, cell, "ok")
                r.sched.ended(cell, "ok")
        else:
            self._write(i, cell, outcome)
            r.sched.ended(cell, outcome)

    def poll(self, i: int) -> bool:
        r = self.runners[i]
        progressed = False
        for cid, state in list(r.sched.state.items()):
            if not state.elsewhere:
                continue
            if cid in self.records:
                r.sched.stored(state.cell, self.records[cid][-1])
                progressed = True
            elif self._claim(i, state.cell):  # its owner died
                self._take_over(i, state.cell)
                progressed = True
        return progressed

    def _take_over(self, i: int, cell: Cell) -> bool:
        """Runner ``i`` now holds ``cell``, as ``_Run.take_over`` does: recorded at once
        when a dead runner stored its every planned round, else planned from the rounds
        stored. True when the round the schedule meant can start."""
        sched = self.runners[i].sched
        if self._stored(cell.cell_id) >= self.rounds:
            self._write(i, cell, "ok")
            sched.ended(cell, "ok")
            return False
        return sched.claimed(cell, self._stored(cell.cell_id))

    def _alive(self) -> list[int]:
        return [i for i, r in enumerate(self.runners) if r.alive]

    def _count(self) -> None:
        type(self).steps += 1

    def _on_a_live_runner(self, data, action) -> None:
        self._count()
        alive = self._alive()
        if alive:
            action(data.draw(st.sampled_from(alive), label="runner"))

    @rule(data=st.data())
    def step(self, data):
        self._on_a_live_runner(data, self.act)

    @rule(data=st.data())
    def round_ends(self, data):
        self._count()
        busy = [(i, k) for i in self._alive() for k in range(len(self.runners[i].running))]
        if busy:
            i, k = data.draw(st.sampled_from(busy), label="round")
            self.finish(i, k, data.draw(st.sampled_from(self.OUTCOMES), label="outcome"))

    @rule(data=st.data())
    def look_around(self, data):
        self._on_a_live_runner(data, self.poll)

    @precondition(lambda self: self.KILLS)
    @rule(data=st.data())
    def kill(self, data):
        self._count()
        alive = self._alive()
        if alive:
            self.runners[data.draw(st.sampled_from(alive), label="victim")].alive = False

    @precondition(lambda self: self.KILLS)
    @rule(data=st.data())
    def resume(self, data):
        self._count()
        if len(self.runners) < 6:
            self._new_runner(data)

    @invariant()
    def rounds_never_pass_the_plan(self):
        if hasattr(self, "rounds"):
            assert all(p.rounds_done <= self.rounds + self.extra.get(cid, 0)
                       for cid, p in self.pools.items())

    def teardown(self):
        """Drain: the live runners (or one fresh runner over every cell, when none is
        left) finish every cell, each recorded once, with no deadlock."""
        if not hasattr(self, "runners"):
            return
        type(self).examples += 1
        if not self._alive():
            self._start_runner(self.cells)
        for _ in range(10_000):
            alive = [i for i in self._alive() if not self.runners[i].sched.done]
            if not alive:
                break
            moved = False
            for i in alive:
                moved |= self.act(i) | self.poll(i)
                while self.runners[i].running:
                    self.finish(i, 0, "ok")
                    moved = True
            stuck = [self.runners[i].sched.left() for i in alive if not self.runners[i].sched.done]
            assert moved or not stuck, f"deadlock: {stuck}"
        else:
            raise AssertionError("did not finish")
        wanted = {c.cell_id for i in self._alive() for c in self.runners[i].cells}
        assert wanted <= set(self.records), wanted - set(self.records)


def shared_run(plan: type, *, slots: list[str] | None = None, runners: int | None = None,
               same_cells: bool = False, kills: bool = True) -> type[SharedRun]:
    """The machine over ``plan`` (``Schedule`` or ``OldRules``), with fresh counters."""
    outcomes = [*OUTCOMES, "short"] if hasattr(plan, "again") else OUTCOMES
    return type(f"SharedRun{plan.__name__}", (SharedRun,), dict(
        PLAN=plan, OUTCOMES=outcomes, SLOTS=slots, RUNNERS=runners, SAME_CELLS=same_cells,
        KILLS=kills, examples=0, steps=0))


EXPLORE = settings(max_examples=300, stateful_step_count=40, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
def test_the_new_plan_passes_the_state_machine(record_property):
    machine = shared_run(Schedule)
    t0 = time.perf_counter()
    run_state_machine_as_test(machine, settings=EXPLORE)
    took = time.perf_counter() - t0
    print(f"\nstate machine on Schedule: {machine.examples} cases, {machine.steps} steps "
          f"(+ drains) in {took:.1f} s")
    record_property("schedule_cases", machine.examples)
    record_property("schedule_steps", machine.steps)
    assert machine.examples >= EXPLORE.max_examples


# The two bugs of issue 22, each in the setting that showed it: ``--workers 2`` (one runner,
# two slots named ``cpu``) and one sweep started twice on one directory. Kills and resumes
# are left out: neither bug needs them (both show in a drain with no step before it). A
# fixed search (derandomize, no database): the same cases on every run, in a few seconds.
BUGS = {
    "workers-2": (dict(slots=["cpu", "cpu"], runners=1, kills=False),
                  ValueError, r"round \d+ added after \d+ rounds"),
    "two-runners": (dict(runners=2, same_cells=True, kills=False),
                    AssertionError, "deadlock"),
}
SEARCH = settings(max_examples=200, stateful_step_count=10, deadline=None,
                  derandomize=True, database=None, report_multiple_bugs=False,
                  phases=[Phase.generate, Phase.shrink],
                  suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("bug", BUGS)
def test_the_state_machine_finds_the_old_runners_bugs(bug):
    setup, error, message = BUGS[bug]
    machine = shared_run(OldRules, **setup)
    with pytest.raises(error, match=message) as found:
        run_state_machine_as_test(machine, settings=SEARCH)
    print(f"\n{bug}: {found.value!r} (search and shrink: {machine.examples} cases)\n"
          + "\n".join(getattr(found.value, "__notes__", [])))


@pytest.mark.parametrize("bug", BUGS)
def test_the_new_plan_passes_where_the_old_rules_fail(bug):
    setup, _, _ = BUGS[bug]
    machine = shared_run(Schedule, **setup)
    run_state_machine_as_test(machine, settings=settings(SEARCH, max_examples=60))
    assert machine.examples >= 60


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


def test_a_cell_taken_over_with_every_round_stored_is_recorded_not_planned_again():
    """A dead runner that stored a cell's every planned round left nothing to run: the
    schedule refuses to plan it (it would wait forever), the runner records it."""
    cell = Cell.make(arch="a", workload="forward", seq_len=16, batch=1)
    s = Schedule([cell], ["cpu"], rounds=2)
    (start,) = s.next()
    assert s.claimed(cell, 1) is False and s.state[cell.cell_id].rounds_done == 1
    with pytest.raises(ValueError, match="all 2 rounds are stored"):
        s.claimed(cell, 2)
    s.ended(cell, "ok")
    assert s.done and s.next() == []


def test_an_extra_round_comes_after_the_planned_rounds_of_the_others():
    """A cell short of quiet samples after its last round asks ``again``: its extra round
    runs once the cells beside it have run their planned rounds (lowest round first)."""
    a, b = (Cell.make(arch=x, workload="forward", seq_len=8, batch=1) for x in "ab")
    s = Schedule([a, b], ["cpu"], rounds=2, seed=0)
    order = []
    while not s.done:
        (act,) = s.next()
        order.append((act.cell.arch, act.round))
        if s.round_done(act.cell, act.round):
            if act.cell is a and act.round == 1:
                s.again(a)
            else:
                s.ended(act.cell, "ok")
    assert order.index(("a", 2)) > order.index(("b", 1))
    assert sorted(order) == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)]
    with pytest.raises(ValueError, match="only after its last round"):
        Schedule([a], ["cpu"], rounds=2).again(a)


def test_a_cell_short_of_quiet_samples_wants_a_bounded_number_of_extra_rounds():
    from harness.run.messages import RoundDone
    from harness.run.runner import CellRounds
    from harness.run.settings import RunSettings

    settings = RunSettings(rounds=2)
    cell = Cell.make(arch="a", workload="forward", seq_len=8, batch=1)
    st = CellRounds(cell, static={"tokens": 8})
    for r in range(2):  # every sample contended (5 cores of others)
        st.add(RoundDone(round=r, samples=[1.0] * 3, contention=[5.0] * 3, k=1), r)
    assert st.wants_another(settings)
    for r in (2, 3):
        st.add(RoundDone(round=r, samples=[1.0] * 3, contention=[5.0] * 3, k=1), 0)
    assert not st.wants_another(settings)  # its own budget again, then it stays flagged
    assert "2 extra round(s)" in st.record(settings).message
    quiet = CellRounds(cell)
    for r in range(2):
        quiet.add(RoundDone(round=r, samples=[1.0] * 3, contention=[0.0] * 3, k=1), r)
    assert not quiet.wants_another(settings)


def test_schedule_runs_short_lengths_first_and_longest_eligible_first():
    cells = [Cell.make(arch=a, workload="forward", seq_len=n, batch=1)
             for a in ("x", "y") for n in (64, 8, 16)]
    s = Schedule(cells, ["cpu", "cpu"], rounds=1)
    first = s.next()
    assert {(a.cell.arch, a.cell.seq_len) for a in first} == {("x", 8), ("y", 8)}
    assert all(isinstance(a, Start) and a.round == 0 for a in first)
    for a in first:
        assert s.round_done(a.cell, 0)
        s.ended(a.cell, "ok")
    nxt = s.next()
    assert [(a.cell.arch, a.cell.seq_len) for a in nxt] == [("x", 16), ("y", 16)]
