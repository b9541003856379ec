"""Runners sharing one run directory (issue 16, case 3): each cell is claimed by one
runner, measured once, and a claim whose owner died is taken over. A second runner is
never refused (Slurm jobs share a store by design). A claim from another host:
tests/harness/store/test_claims.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from harness.store.claims import CLAIMS
from harness.store.rundir import RunDir
from tests.helpers import ROOT, harness_cmd, start, write_suite

HOLD = """
import sys, time
from harness.store.rundir import RunDir
c = RunDir(sys.argv[1]).claim_cell(sys.argv[2])
print("claimed" if c else "refused", flush=True)
time.sleep(60)
"""


def holder(tmp_path: Path, cell_id: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), cell_id], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "claimed"
    return proc


def test_a_live_claim_is_respected_and_a_dead_ones_taken_over(tmp_path):
    store = RunDir(tmp_path).ensure()
    other = holder(tmp_path, "a/cell")
    try:
        assert store.claim_cell("a/cell") is None  # held by a live process
        mine = store.claim_cell("b/cell")
        assert mine is not None and store.claim_cell("b/cell") == mine  # re-entrant
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()
    taken = store.claim_cell("a/cell")  # its owner died: stale, taken over
    assert taken is not None
    mine.release()
    assert not Path(mine.path).exists()


def test_the_record_ends_the_claim_and_a_foreign_release_does_nothing(tmp_path):
    from harness.store.records import Cell, Record

    store = RunDir(tmp_path).ensure()
    cell = Cell.make(arch="lmu", workload="forward", seq_len=8, batch=1)
    claim = store.claim_cell(cell.cell_id)
    store.append(Record.for_cell(cell, "ok", samples=[1.0], n_samples=1, time_median_s=1.0))
    assert not Path(claim.path).exists()
    other = holder(tmp_path, cell.cell_id)
    try:
        claim.release()  # not ours any more: the other runner's claim stays
        assert Path(claim.path).exists() and store.claim_cell(cell.cell_id) is None
    finally:
        other.kill()
        other.wait()


def test_two_runners_into_one_out_measure_each_cell_once(tmp_path):
    out = tmp_path / "run"
    grid = '[[cpu.grid]]\narch = ["test-slow"]\nseq_len = [1, 2, 3, 4, 5, 6]\n'
    suite = write_suite(tmp_path, grid, budget_s=0.3, timeout_s=60, mem_cap_gb=None, rounds=1)
    cmd = harness_cmd("run", "--suite", suite, "--out", out)
    logs = [open(tmp_path / f"log{i}.txt", "w") for i in range(2)]
    procs = [start(cmd, log=f) for f in logs]
    codes = [p.wait(timeout=400) for p in procs]
    for f in logs:
        f.close()
    texts = [(tmp_path / f"log{i}.txt").read_text() for i in range(2)]
    assert codes == [0, 0], texts
    lines = (out / "records.jsonl").read_text().splitlines()
    ids = [json.loads(x)["cell_id"] for x in lines]
    assert len(ids) == len(set(ids)) == 6, texts  # the issue saw 12 records for 6 cells
    assert {json.loads(x)["status"] for x in lines} == {"ok"}
    assert not list((out / CLAIMS).glob("*.json"))  # every claim ended with its record
    assert any("another runner" in t for t in texts)  # the waiting one said so
    assert all("6 of 6" not in t or "no record" not in t for t in texts)
