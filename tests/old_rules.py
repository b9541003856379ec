"""The runner's decisions before issue 22 (``run_cells`` of harness/run/runner.py at commit
a115e68), as a plan with the events and actions of :class:`harness.run.schedule.Schedule`,
so that the state machine of tests/harness/run/test_schedule.py can drive either and show that it
finds the two bugs of that runner:

(a) ``--workers 2`` crashed with ``ValueError: round 1 added after 2 rounds``. Later
    rounds were queued per slot *name*: two slots named ``cpu`` share one queue and one
    ``slot_round``, and when the queue runs dry it is refilled with every cell of that
    name with rounds to go, including one whose round is running on the other slot. That
    cell is sent the same round again, and its rounds are added out of order.
(b) Two runners on one directory waited for each other forever. A runner starts no
    later round while a cell is pending (``round0_over``); a cell whose shorter sibling
    another runner holds stays pending until that runner's record lands; and that
    runner writes the record only after its last round, waiting the same way.

The rules, and the lines of a115e68's harness/run/runner.py that each one models:

- known statuses: every record stored before the run (339), then this run's own records
  (``finish``, 376-382) and the records of cells it waited for (``SharedDir.poll``,
  233-238). Other runners' records reach it no other way.
- series for the skip rule: only the cells this run measures (``Scheduler.groups``,
  125-130, built at 360-361), grown by cells taken over (``put_back``, 154-160).
- round 0: pending cells whose shorter siblings all have a record or passed round 0 here
  (``eligible``, 142-149, over ``seen``, 463), largest first; a shorter ``oom`` or
  ``timeout`` skips (``failure_before``, 135-140, 465-474); otherwise the first free
  slot that fits (475-482, ``_slot_for``).
- later rounds, only once no cell is pending and no round 0 runs (``round0_over``,
  483): for each free slot, the queue of that slot's name (``queues``, ``slot_round``,
  370-372), refilled when empty with the cells whose round-0 slot has that name and
  rounds to go, running or not, at their lowest round (``next_later_round``, 440-453),
  then sent (``dispatch``, 407-418: to the cell's process even when busy).
- a cell's rounds: its state (round-0 slot, rounds done) exists from its first finished
  round (421) or from stored rounds at start-up (355-359); the last round records it
  ``ok`` (431-434); a failure records it and frees its slot (504, 508-513).
- another runner's cells: one that cannot be claimed waits in ``elsewhere`` (204-219,
  and the ``continue`` of 468-469 and 479-480, before its slot is taken); its record,
  when stored, ends it here (233-238); when its owner dies it is pending again and runs
  from round 0 whatever rounds are stored (239-247, 461-462).
- waiting: nothing busy and work left means sleeping for other runners or spinning
  (490-496), except "scheduler stalled" when cells are pending and no slot is free
  (492-493).

Left out, as they decide nothing above: processes, clocks, files, memory and warm
processes, and each cell's position in a round (``positions``, kept in its record).
Where the old loop did things in one pass, the events split them: the caller claims a
cell after a ``Start`` or ``Skip`` (the old loop claimed it just before), and a cell
resumed from stored rounds is claimed when first started rather than at start-up (356).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace

from harness.run.rounds import visiting_order
from harness.run.schedule import FAILURES_THAT_SKIP, Skip, Stalled, Start, Wait, group_key
from harness.store.records import Cell


def _slot_for(cell: Cell, free: Sequence[str]) -> str | None:
    """runner.py 521-525, unchanged."""
    for slot in free:
        if cell.device == slot or (cell.device == "cuda" and slot.startswith("cuda")):
            return slot
    return None


@dataclass
class _Rounds:
    """``CellRounds`` (70-116), reduced to what decides: the slot (name) of round 0."""

    cell: Cell
    slot: str
    done: int = 0


class OldRules:
    """a115e68's ``run_cells`` decisions, driven like :class:`Schedule`."""

    def __init__(self, cells: Sequence[Cell], slots: Sequence[str], rounds: int,
                 seed: int = 0, known: dict[str, tuple[Cell, str]] | None = None,
                 resumed: dict[str, int] | None = None) -> None:
        self.slots, self.rounds, self.seed = list(slots), rounds, seed
        self.cells = list(cells)
        homeless = [c.cell_id for c in cells if _slot_for(c, self.slots) is None]
        if homeless:
            raise ValueError(f"no worker slot among {self.slots} can run cell(s) {homeless}")
        self.known = {cid: status for cid, (_, status) in (known or {}).items()}
        self.states: dict[str, _Rounds] = {}
        self.passed0: set[str] = set()
        for c in cells:
            if (resumed or {}).get(c.cell_id):
                self.states[c.cell_id] = _Rounds(c, _slot_for(c, self.slots),
                                                 resumed[c.cell_id])
                self.passed0.add(c.cell_id)
        self.pending = [c for c in cells if c.cell_id not in self.states]
        self.groups: dict[tuple, list[Cell]] = {}
        for c in self.pending:
            self.groups.setdefault(group_key(c), []).append(c)
        self.elsewhere: dict[str, Cell] = {}
        self.free = list(self.slots)
        self.busy: list[tuple[Cell, str, int]] = []  # (cell, slot, round) of each sent round
        self.slot_round = dict.fromkeys(self.slots, 0)  # keyed by name: the bug of (a)
        self.queues: dict[str, list[Cell]] = {s: [] for s in self.slots}
        self.positions: dict[tuple[str, int], dict[str, int]] = {}

    # --- what the state machine reads -----------------------------------------------
    @property
    def done(self) -> bool:
        """The loop's condition (458-460), negated."""
        return not (self.pending or self.elsewhere or self.busy or any(
            st.done < self.rounds for st in self.states.values()))

    def left(self) -> list[str]:
        return [c.cell_id for c in self.cells if c.cell_id not in self.known]

    @property
    def state(self) -> dict[str, SimpleNamespace]:
        """The cells waiting for another runner, as ``Schedule.state`` shows them."""
        return {cid: SimpleNamespace(cell=c, elsewhere=True)
                for cid, c in self.elsewhere.items()}

    # --- events ---------------------------------------------------------------------
    def round_done(self, cell: Cell, r: int) -> bool:
        _, slot, _ = self._unbusy(cell, r)
        st = self.states.setdefault(cell.cell_id, _Rounds(cell, slot))  # 421
        st.done += 1  # 424: the order check of Pool.add is the caller's (its store)
        if r == 0:
            self.passed0.add(cell.cell_id)  # 429-430
        if st.done >= self.rounds:
            self._finish(cell, "ok")  # 431-434
            return True
        return False

    def ended(self, cell: Cell, status: str) -> None:
        if cell.cell_id in self.known:
            return  # its last round recorded it (433)
        self._unbusy(cell)  # 504, 508-509
        self._finish(cell, status)  # 513

    def held_elsewhere(self, cell: Cell) -> None:
        cid = cell.cell_id
        if any(c.cell_id == cid for c, _, _ in self.busy):
            self._unbusy(cell)  # claimed before its slot was taken (479-481)
        self.known.pop(cid, None)  # a skip it could not claim is not recorded (468-469)
        self.states.pop(cid, None)  # resumed cells were claimed at start-up (356)
        self.elsewhere[cid] = cell  # 213

    def stored(self, cell: Cell, status: str) -> None:
        if cell.cell_id in self.elsewhere:  # 233-238; other records go unseen
            del self.elsewhere[cell.cell_id]
            self.known[cell.cell_id] = status

    def claimed(self, cell: Cell, rounds_stored: int) -> bool:
        """Stored rounds are never looked at after start-up; a cell taken over from a
        dead runner is pending again, for round 0 (239-247, 461-462, 154-160)."""
        if cell.cell_id in self.elsewhere:
            del self.elsewhere[cell.cell_id]
            self.pending.append(cell)
            group = self.groups.setdefault(group_key(cell), [])
            if cell not in group:
                group.append(cell)
        return True

    def _unbusy(self, cell: Cell, r: int | None = None) -> tuple[Cell, str, int]:
        i = next(i for i, (c, _, rr) in enumerate(self.busy)
                 if c.cell_id == cell.cell_id and r in (None, rr))
        entry = self.busy.pop(i)
        self.free.append(entry[1])  # 504
        return entry

    def _finish(self, cell: Cell, status: str) -> None:
        self.known[cell.cell_id] = status  # 379
        self.states.pop(cell.cell_id, None)  # 380

    # --- decisions: one pass of the loop (461-496) ---------------------------------
    def next(self) -> list[Start | Skip | Wait]:
        actions: list[Start | Skip | Wait] = []
        seen = self.passed0 | set(self.known)  # 463
        for cell in self._eligible(seen):
            failed = self._failure_before(cell)
            if failed is not None:  # 466-474
                self.pending.remove(cell)
                self.known[cell.cell_id] = "skipped"
                actions.append(Skip(cell, failed[1], failed[0].seq_len))
                continue
            slot = _slot_for(cell, self.free)  # 475-482
            if slot is None:
                continue
            self.pending.remove(cell)
            self.free.remove(slot)
            order = self.positions.setdefault((slot, 0), {})  # 403-405
            order[cell.cell_id] = len(order)
            self.busy.append((cell, slot, 0))
            actions.append(Start(cell, slot, 0, order[cell.cell_id]))
        round0_over = not self.pending and not any(r == 0 for _, _, r in self.busy)  # 483
        if round0_over:
            for slot in list(self.free):  # 485-489
                nxt = self._next_later_round(slot)
                if nxt is not None:
                    cell, r = nxt
                    self.free.remove(slot)
                    self.states[cell.cell_id]  # noqa: B018 - dispatch's lookup (409)
                    self.busy.append((cell, slot, r))  # to its process, busy or not (410-418)
                    actions.append(Start(cell, slot, r, self.positions[(slot, r)][cell.cell_id]))
        if actions or self.done:
            return actions
        if not self.busy and self.pending and not self.free:  # 491-493
            raise Stalled("scheduler stalled: no free slot and nothing running")
        return [Wait()]  # 494-496: sleeps for other runners' records, or spins

    def _eligible(self, seen: set[str]) -> list[Cell]:  # 142-149
        out = [c for c in self.pending if all(s.cell_id in seen for s in self._shorter(c))]
        return sorted(out, key=lambda c: c.seq_len * c.batch, reverse=True)

    def _shorter(self, cell: Cell) -> list[Cell]:  # 132-133
        return sorted((c for c in self.groups[group_key(cell)] if c.seq_len < cell.seq_len),
                      key=lambda c: c.seq_len)

    def _failure_before(self, cell: Cell) -> tuple[Cell, str] | None:  # 135-140
        for c in self._shorter(cell):
            if self.known.get(c.cell_id) in FAILURES_THAT_SKIP:
                return c, self.known[c.cell_id]
        return None

    def _next_later_round(self, slot: str) -> tuple[Cell, int] | None:  # 440-453
        while True:
            if self.queues[slot]:
                return self.queues[slot].pop(0), self.slot_round[slot]
            mine = [st for st in self.states.values()
                    if st.slot == slot and st.done < self.rounds]
            if not mine:
                return None
            r = min(st.done for st in mine)
            self.slot_round[slot] = r
            due = [st.cell for st in mine if st.done == r]
            self.queues[slot] = visiting_order(due, r, seed=self.seed, slot=slot)
            self.positions[(slot, r)] = {c.cell_id: i for i, c in enumerate(self.queues[slot])}
