"""``harness status`` counted by hand: done, failed, running, pending and queued cells
from a run's plan, records and worker leases (a dead worker's lease is stale)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from harness.store.claims import Owner, WorkerLease
from harness.store.records import Cell, Record
from harness.store.rundir import RunDir
from harness.store.status import sweep_status


@pytest.mark.slow
def test_status_counts_by_hand(tmp_path):
    cells = [Cell.make(arch="a", workload="forward", seq_len=n, batch=1) for n in range(1, 9)]
    store = RunDir(tmp_path).ensure()
    RunDir(tmp_path).write_plan(cells, {"suite": "t", "device": "cpu"})
    for c, s in zip(cells[:5], ["ok", "ok", "skipped", "error", "oom"], strict=True):
        store.append(Record.for_cell(c, s))
    # cells 6-8 have no record; a stale claim of a dead process is ignored
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / "running").mkdir()
    (tmp_path / "running" / "old.json").write_text(json.dumps(WorkerLease(
        Owner(socket.gethostname(), int(dead), 0.0), slots=1, records_before=0,
        cells=tuple(c.cell_id for c in cells)).to_dict()))
    st = sweep_status(tmp_path)
    assert (st.total, st.done, st.failed, st.running, st.pending) == (8, 3, 2, 0, 3)
    assert st.stale_workers == 1 and st.by_status == {"ok": 2, "skipped": 1, "error": 1, "oom": 1}
    # a live worker with 2 slots re-running the error cell and owning cells 6-8
    with store.lease([cells[3].cell_id] + [c.cell_id for c in cells[5:]], slots=2):
        st = sweep_status(tmp_path)
        assert (st.done, st.failed, st.running, st.pending, st.queued) == (3, 1, 2, 2, 2)
        store.append(Record.for_cell(cells[3], "ok"))  # the re-run cell finished
        store.append(Record.for_cell(cells[5], "ok"))
        st = sweep_status(tmp_path)
        assert (st.done, st.failed, st.running, st.pending, st.queued) == (5, 1, 2, 0, 0)
    st = sweep_status(tmp_path)  # the worker ended (without running cells 7-8)
    assert (st.done, st.failed, st.running, st.pending, st.workers) == (5, 1, 0, 2, 0)


def test_status_counts_every_failure_status_as_failed(tmp_path):
    """One statuses tuple (store.records): a nonfinite cell is failed, not lost between
    done and failed (status used to know only error/oom/timeout)."""
    from harness.store.records import DONE, FAILED, STATUSES
    from harness.store.status import format_status

    assert set(DONE) | set(FAILED) == set(STATUSES) and not set(DONE) & set(FAILED)
    cells = [Cell.make(arch="a", workload="forward", seq_len=n, batch=1) for n in (1, 2, 3)]
    RunDir(tmp_path).write_plan(cells, {"suite": "t", "device": "cpu"})
    store = RunDir(tmp_path)
    for c, s in zip(cells, ["ok", "nonfinite", "timeout"], strict=True):
        store.append(Record.for_cell(c, s))
    st = sweep_status(tmp_path)
    assert (st.total, st.done, st.failed, st.pending) == (3, 1, 2, 0)
    assert "nonfinite 1" in format_status(st) and "timeout 1" in format_status(st)
