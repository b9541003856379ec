"""torch.profiler traces for TensorBoard, and a time breakdown (the command line is
:mod:`harness.cli.profile`).

Each cell gets a directory (a TensorBoard run) with the trace (``*.pt.trace.json``, also
a Chrome/Perfetto trace), the memory timeline, ``ops.csv`` and ``breakdown.csv``; the
profile directory gets the breakdown across cells as CSV, Markdown and a figure. Profiles
never write a run's ``records.jsonl``: profiled steps are not timings.

For the report: ``breakdown_table(paths)`` returns the breakdown of every profile found.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.errors import UsageError
from harness.profile.breakdown import CATEGORIES, breakdown_table
from harness.profile.trace import ProfileConfig, profile_cell
from harness.store.records import Cell

__all__ = ["breakdown_table", "profile_cell", "ProfileConfig", "CATEGORIES", "cells_from_run",
           "cell_dir_name"]


def cells_from_run(run_dir: str, ids: list[str]) -> list[Cell]:
    """The cells of ``run_dir`` named by id (exact, or a prefix matching exactly one)."""
    from harness.store.rundir import RunDir

    root = Path(run_dir)
    if not root.is_dir():
        raise UsageError(f"run directory {run_dir!r} does not exist")
    records = RunDir(root).latest_by_cell()
    if not records:
        raise UsageError(f"run directory {run_dir!r} has no records (records.jsonl missing "
                         "or empty)")
    if not ids:
        raise UsageError("--from needs --cell ID; cells of this run: "
                         + ", ".join(sorted(records)[:10])
                         + (" ..." if len(records) > 10 else ""))
    cells = []
    for ident in ids:
        hits = [k for k in records if k == ident] or [k for k in records if k.startswith(ident)]
        if len(hits) != 1:
            what = "matches several cells" if hits else "is not a cell of this run"
            shown = sorted(hits or records)[:10]
            raise UsageError(f"cell {ident!r} {what} in {run_dir!r}; valid choices: "
                             + ", ".join(shown) + (" ..." if len(hits or records) > 10 else ""))
        r = records[hits[0]]
        cells.append(Cell.make(
            overrides=r.overrides, arch=r.arch, workload=r.workload, seq_len=r.seq_len,
            batch=r.batch, preset=r.preset, device=r.device, dtype=r.dtype, compile=r.compile))
    return cells


def cell_dir_name(cell: Cell) -> str:
    """A directory (and TensorBoard run) name: the cell id with '_' for '/'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", cell.cell_id.replace("/", "_"))
