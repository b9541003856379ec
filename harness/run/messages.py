"""What a runner and its cell processes say to each other: one dataclass per message.

They travel over the cell's multiprocessing ``Connection`` as these objects (they
pickle), so both sides name the same fields and a typo is an error, not a missing key.
Runner → cell: :class:`RoundCommand` (also the first round's, handed to a new process)
and :class:`Stop`. Cell → runner: :class:`RoundDone` after each round and
:class:`CellRecord` when the cell ends with a final record. The runner takes anything
else from a cell as a fault of the harness (``harness.run.processes``), not of the cell.

A :class:`RoundDone` is also what ``rounds.jsonl`` keeps of a round (:meth:`RoundDone.entry`,
:meth:`RoundDone.from_entry`); that file's line format does not change with this module.
This module imports no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from harness.store.records import Record


@dataclass(frozen=True)
class RoundCommand:
    """Runner → cell: measure round ``round``; the cell has ``taken`` quiet samples pooled
    so far (what decides how many it still owes). ``k``, for a new process only: the calls
    per sample of the cell's earlier rounds (None: round 0, it calibrates them)."""

    round: int
    taken: int
    k: int | None = None


@dataclass(frozen=True)
class Stop:
    """Runner → cell: no more rounds here; exit."""


@dataclass(frozen=True, kw_only=True)
class RoundDone:
    """Cell → runner: a round's samples; then the process waits, warm, for a command.

    ``static`` (and ``started_at``) only from a process's first round when it is round 0:
    what the cell's setup measured (params, memory, FLOPs); a re-prepared cell's is not
    kept. ``wall_s``: the round's own time, the setup's included in a process's first."""

    round: int
    samples: list[float]
    contention: list[float] = field(default_factory=list)  # others' CPU use per sample
    k: int  # calls per sample
    warmup_s: float | None = None
    stop_reason: str = ""
    threads: int | None = None
    wall_s: float | None = None
    static: dict[str, Any] | None = None
    started_at: str | None = None

    def entry(self) -> dict[str, Any]:
        """The round's fields as a line of ``rounds.jsonl`` holds them (after the line's
        ``cell_id`` and ``position``), exactly as the cells' dicts were written before."""
        d = {"kind": "round", **asdict(self)}
        for key in ("static", "started_at"):
            if d[key] is None:
                del d[key]
        return d

    @classmethod
    def from_entry(cls, d: Mapping[str, Any]) -> RoundDone:
        """A round back from a line of ``rounds.jsonl`` (one that passed
        ``RoundEntry.problem``); a field the line lacks takes its default, the line's other
        keys (``cell_id``, ``position``, ``kind``) are not the round's."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass(frozen=True)
class CellRecord:
    """Cell → runner: the cell's final record (a failure, or a task workload's result);
    the process exits after sending it."""

    record: Record


ToCell = RoundCommand | Stop
FromCell = RoundDone | CellRecord
