"""The decisions of a run, with no processes, clocks or files: which cell runs next, on
which slot, in which round; when a cell is skipped; when a run would wait forever.

The runner's loop (``harness.run.runner``) feeds :class:`Schedule` events (a round
finished, a cell ended, another runner holds a cell or stored a record, a cell was
claimed, possibly from a dead runner with rounds already stored) and carries out what
:meth:`Schedule.next` returns. Being pure, the schedule is
tested by a state machine over slots, runners, rounds, outcomes and kills
(``tests/harness/run/test_schedule.py``) in seconds.

Rules:

- **Round 0** runs in length order under the skip rule: a cell starts only when every
  shorter cell of its series (same key but ``seq_len``) that this run knows of has a
  record or has passed round 0 here; an ``oom`` or ``timeout`` of a shorter cell makes
  it ``skipped``. Among eligible cells the largest (``seq_len * batch``) goes first, so
  parallel slots end together. Records of earlier commands count: a timeout stored
  before still skips the longer lengths.
- **Later rounds** go to a cell's home slot (where its round 0 ran; CPU slots share the
  name ``cpu``, so any CPU slot serves), lowest round first, in the seeded visiting
  order of that round (``rounds.visiting_order``). A cell runs one round at a time, so
  its rounds are added in order.
- **Extra rounds** (:meth:`Schedule.again`): a cell whose planned rounds left it short
  of quiet samples (a neighbour's burst) gets one more round, after the planned rounds
  of the cells beside it (lowest round first), so an intermittent load is sampled past.
- Round 0 takes precedence, but a cell waiting for another runner's record never holds
  back later rounds: a runner keeps working on what it has, and the runner it waits for
  never waits on it in turn, so two runners on one directory cannot deadlock.
- A cell another runner holds waits until that runner stores its record (then it is
  done here too) or dies (then it is pending again here).
- When work remains, nothing runs and nothing is awaited from another runner, the
  schedule raises :class:`Stalled` naming the cells: never a silent wait.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from harness.errors import HarnessFault
from harness.run.rounds import visiting_order
from harness.store.records import Cell

FAILURES_THAT_SKIP = ("oom", "timeout")


def group_key(cell: Cell) -> tuple:
    """Cells that differ only in length: a failure at n skips the longer ones."""
    d = cell.key_dict()
    d.pop("seq_len")
    return tuple(sorted((k, repr(v)) for k, v in d.items()))


class Stalled(HarnessFault):
    """Work is left but nothing can run and nothing is awaited: a bug, said out loud."""


@dataclass(frozen=True)
class Start:
    """Run round ``round`` of ``cell`` on ``slot``; ``position``: its place in the order
    this runner visits that round (kept in the record's ``round_order``)."""

    cell: Cell
    slot: str
    round: int
    position: int


@dataclass(frozen=True)
class Skip:
    """Record ``cell`` as skipped: a shorter cell of its series failed with ``status``."""

    cell: Cell
    status: str
    at_len: int


@dataclass(frozen=True)
class Wait:
    """Nothing to start now: cells are running here, or awaited from other runners."""


@dataclass
class _State:
    cell: Cell
    rounds_done: int = 0
    slot: str | None = None  # running a round there now
    home: str | None = None  # where its round 0 ran (its later rounds go there)
    elsewhere: bool = False  # another runner holds it
    final: str | None = None  # its record's status, once it has one
    extra: int = 0  # rounds added after its planned ones (``again``)


@dataclass
class Schedule:
    """The plan of one runner: ``cells`` to run on ``slots`` in ``rounds`` rounds.

    ``known`` holds the latest status of cells with a record (this or earlier commands,
    any runner): they count for the skip rule. ``resumed`` maps a cell to its rounds
    already stored by a killed run (it continues from the next one)."""

    cells: Sequence[Cell]
    slots: Sequence[str]
    rounds: int
    seed: int = 0
    known: dict[str, tuple[Cell, str]] = field(default_factory=dict)
    resumed: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        self.state = {c.cell_id: _State(c) for c in self.cells}
        for cid, done in self.resumed.items():
            st = self.state[cid]
            st.rounds_done, st.home = done, self._home(st.cell)
        self.series: dict[tuple, list[Cell]] = {}
        for c in [*self.cells, *(cell for cell, _ in self.known.values())]:
            group = self.series.setdefault(group_key(c), [])
            if all(x.cell_id != c.cell_id for x in group):
                group.append(c)
        self.free = list(self.slots)
        self.started: dict[tuple[str, int], int] = {}  # (home, round) -> cells started
        self.first_pos: dict[str, int] = {}  # cell -> its place in round 0 (all slots)
        self.orders: dict[tuple[str, int], list[Cell]] = {}  # (home, round) -> visit order
        homeless = [c.cell_id for c in self.cells if self._home(c) is None]
        if homeless:
            raise ValueError(f"no slot among {list(self.slots)} can run {homeless[:3]}")

    # --- what the run knows -------------------------------------------------------
    def _home(self, cell: Cell, among: Iterable[str] | None = None) -> str | None:
        for slot in self.slots if among is None else among:
            if cell.device == slot or (cell.device == "cuda" and slot.startswith("cuda")):
                return slot
        return None

    def status_of(self, cell_id: str) -> str | None:
        """A cell's record status as this run knows it (None: no record yet)."""
        st = self.state.get(cell_id)
        if st is not None:
            return st.final
        return self.known[cell_id][1] if cell_id in self.known else None

    @property
    def done(self) -> bool:
        return all(st.final is not None for st in self.state.values())

    def left(self) -> list[str]:
        return [cid for cid, st in self.state.items() if st.final is None]

    # --- events ---------------------------------------------------------------------
    def round_done(self, cell: Cell, r: int) -> bool:
        """Round ``r`` of ``cell`` finished; True when it was the last (record it)."""
        st = self._running(cell)
        if r != st.rounds_done:
            raise ValueError(f"{cell.cell_id}: round {r} finished after {st.rounds_done}")
        st.rounds_done += 1
        self._free(st)
        return st.rounds_done >= self.rounds + st.extra

    def again(self, cell: Cell) -> None:
        """``cell``'s last round is done but it wants one more (too few quiet samples):
        it runs after the cells still in lower rounds."""
        st = self.state[cell.cell_id]
        if st.final is not None or st.slot is not None or \
                st.rounds_done < self.rounds + st.extra:
            raise ValueError(f"{cell.cell_id}: again() only after its last round")
        st.extra += 1

    def ended(self, cell: Cell, status: str) -> None:
        """``cell`` has its record (``ok`` after its last round, or a failure)."""
        st = self.state[cell.cell_id]
        if st.final is not None:
            raise ValueError(f"{cell.cell_id} ended twice ({st.final}, then {status})")
        if st.slot is not None:
            self._free(st)
        st.final, st.elsewhere = status, False

    def held_elsewhere(self, cell: Cell) -> None:
        """The cell (just started or skipped here) could not be claimed: another runner
        holds it, or stored its record meanwhile. It waits for that runner."""
        st = self.state[cell.cell_id]
        if st.slot is not None:
            self._free(st)
        st.final, st.elsewhere = None, True

    def stored(self, cell: Cell, status: str) -> None:
        """Another runner stored a record: of a cell of this run not running here (it is
        done here too), or of any other cell (it counts for the skip rule from now on)."""
        st = self.state.get(cell.cell_id)
        if st is None:
            self.known[cell.cell_id] = (cell, status)
            group = self.series.setdefault(group_key(cell), [])
            if all(x.cell_id != cell.cell_id for x in group):
                group.append(cell)
        elif st.final is None and st.slot is None:
            st.final, st.elsewhere = status, False

    def claimed(self, cell: Cell, rounds_stored: int) -> bool:
        """This runner now holds ``cell`` (just started, or taken over from a dead
        runner), whose finished rounds in the store number ``rounds_stored``. False
        when that is not the round it was about to run: it is planned again from there
        (a started round is withdrawn and its slot freed). A cell with every planned
        round stored is not claimed but recorded (``ended``)."""
        if rounds_stored >= self.rounds:
            raise ValueError(f"{cell.cell_id}: all {rounds_stored} rounds are stored; "
                             "record it (ended) instead of planning it again")
        st = self.state[cell.cell_id]
        st.elsewhere = False
        if rounds_stored == st.rounds_done:
            return True
        if st.slot is not None:
            self._free(st)
        st.rounds_done = rounds_stored
        if rounds_stored and st.home is None:
            st.home = self._home(cell)
        return False

    def _running(self, cell: Cell) -> _State:
        st = self.state[cell.cell_id]
        if st.slot is None:
            raise ValueError(f"{cell.cell_id} is not running")
        return st

    def _free(self, st: _State) -> None:
        self.free.append(st.slot)
        st.slot = None

    # --- decisions ------------------------------------------------------------------
    def next(self) -> list[Start | Skip | Wait]:
        """Everything to do now: skips, then starts for free slots; ``[Wait()]`` when
        nothing can start. Raises Stalled when nothing could ever start."""
        actions: list[Start | Skip | Wait] = []
        while True:
            action = self._one()
            if action is None:
                break
            actions.append(action)
        if actions:
            return actions
        if self.done:
            return []
        if any(st.slot is not None or st.elsewhere for st in self.state.values()):
            return [Wait()]
        raise Stalled(f"work left and nothing to run or wait for: {self.left()[:5]}")

    def _one(self) -> Start | Skip | None:
        for cell in self._round0_eligible():
            failed = self._failure_before(cell)
            if failed is not None:
                self.state[cell.cell_id].final = "skipped"
                return Skip(cell, failed[1], failed[0].seq_len)
            slot = self._home(cell, self.free)
            if slot is not None:
                return self._start(cell, slot, 0)
        for slot in dict.fromkeys(self.free):
            later = [st for st in self.state.values() if st.final is None and not st.elsewhere
                     and st.slot is None and 0 < st.rounds_done < self.rounds + st.extra
                     and st.home == slot]
            if later:
                r = min(st.rounds_done for st in later)
                due = {st.cell.cell_id for st in later if st.rounds_done == r}
                order = self._order(slot, r, due)
                return self._start(next(c for c in order if c.cell_id in due), slot, r)
        return None

    def _order(self, slot: str, r: int, due: set[str]) -> list[Cell]:
        """The seeded order ``slot``'s cells are visited in round ``r``, drawn once from
        their round-0 order; a cell reaching round ``r`` after the draw goes last."""
        order = self.orders.get((slot, r))
        if order is None:
            ranked = sorted((self.state[cid].cell for cid in due),
                            key=lambda c: (self.first_pos.get(c.cell_id, -1), c.cell_id))
            order = self.orders[(slot, r)] = visiting_order(ranked, r, seed=self.seed,
                                                            slot=slot)
        order.extend(self.state[cid].cell for cid in sorted(due - {c.cell_id for c in order}))
        return order

    def _start(self, cell: Cell, slot: str, r: int) -> Start:
        st = self.state[cell.cell_id]
        self.free.remove(slot)
        st.slot = slot
        if r == 0:
            st.home = slot
            self.first_pos[cell.cell_id] = len(self.first_pos)
        key = (st.home or slot, r)
        position = self.started.get(key, 0)
        self.started[key] = position + 1
        return Start(cell, slot, r, position)

    def _round0_eligible(self) -> list[Cell]:
        out = [st.cell for st in self.state.values()
               if st.final is None and not st.elsewhere and st.slot is None
               and st.rounds_done == 0 and all(self._settled(c) for c in self._shorter(st.cell))]
        return sorted(out, key=lambda c: c.seq_len * c.batch, reverse=True)

    def _shorter(self, cell: Cell) -> list[Cell]:
        return [c for c in self.series[group_key(cell)] if c.seq_len < cell.seq_len]

    def _settled(self, cell: Cell) -> bool:
        """Whether the skip rule may look past ``cell``: it has a record, or passed round
        0 here (a later failure of a cell that passed round 0 is not a size failure)."""
        st = self.state.get(cell.cell_id)
        return st is None or st.final is not None or st.rounds_done > 0

    def _failure_before(self, cell: Cell) -> tuple[Cell, str] | None:
        for c in sorted(self._shorter(cell), key=lambda c: c.seq_len):
            status = self.status_of(c.cell_id)
            if status in FAILURES_THAT_SKIP:
                return c, status
        return None
