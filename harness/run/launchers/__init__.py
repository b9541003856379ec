"""Launchers: where a sweep's cells run.

- ``local`` (default): one machine, a pool of worker slots: N CPU workers
  (``--workers N``) or one per GPU (``--devices cuda:0,cuda:1`` or ``all``).
- ``slurm``: jobs on a Slurm cluster through submitit, each running a slice of the
  cells with the local launcher's per-cell isolation and writing to the shared store.

Both run exactly the cells that need it (``cells_to_run``): cells without a record,
plus, with ``retry_failed``, cells whose latest record is not ``ok``.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.errors import UsageError
from harness.store.records import Cell, Record

LAUNCHERS = ("local", "slurm")


def validate_launcher(name: str) -> str:
    if name not in LAUNCHERS:
        raise UsageError(f"unknown launcher {name!r}; valid choices: {', '.join(LAUNCHERS)}")
    return name


def cells_to_run(cells: Sequence[Cell], known: dict[str, Record],
                 retry_failed: bool) -> list[Cell]:
    """Cells with no record, and (``retry_failed``) those whose latest record is not ok."""
    return [c for c in cells
            if c.cell_id not in known or (retry_failed and known[c.cell_id].status != "ok")]
