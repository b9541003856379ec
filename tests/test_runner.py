"""The runner records every failure as that cell's status and never loses a record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.run.schedule import Schedule, Start
from harness.run.sweep import execute, plan
from harness.store.records import Cell, Record
from harness.store.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = str(ROOT / "tests" / "fault_adapters.py")


def write_suite(tmp_path: Path, body: str, budget_s: float = 0.05) -> str:
    path = tmp_path / "suite.toml"
    path.write_text(
        f'name = "t"\n[settings]\nbudget_s = {budget_s}\ntimeout_s = 4\nmem_cap_gb = 0.75\n'
        f'count_flops = false\nplugins = ["{PLUGIN}"]\n'
        f'[cpu]\npreset = "tiny"\nbatch = 1\nworkload = "forward"\n{body}'
    )
    return str(path)


def statuses(records: list[Record]) -> dict[tuple[str, int], str]:
    return {(r.arch, r.seq_len): r.status for r in records}


def test_each_failure_is_recorded_and_other_cells_succeed(tmp_path):
    suite = write_suite(tmp_path, """
[[cpu.grid]]
arch = ["test-ok", "test-raise", "test-abort", "test-hang", "test-hog"]
seq_len = [8, 16, 32]
set = {fail_at = 16, hog_gb = 3.0}
""")
    p = plan(suite, out=tmp_path / "run")
    recs = execute(p)
    got = statuses(recs)
    assert got == {
        ("test-ok", 8): "ok", ("test-ok", 16): "ok", ("test-ok", 32): "ok",
        ("test-raise", 8): "ok", ("test-raise", 16): "error", ("test-raise", 32): "error",
        ("test-abort", 8): "ok", ("test-abort", 16): "error", ("test-abort", 32): "error",
        ("test-hang", 8): "ok", ("test-hang", 16): "timeout", ("test-hang", 32): "skipped",
        ("test-hog", 8): "ok", ("test-hog", 16): "oom", ("test-hog", 32): "skipped",
    }
    by = {(r.arch, r.seq_len): r for r in recs}
    assert "injected failure" in by["test-raise", 16].message
    assert "SIGABRT" in by["test-abort", 16].message
    assert "timeout" in by["test-hang", 16].message
    assert "CPU cap" in by["test-hog", 16].message
    assert "hit timeout at n=16" in by["test-hang", 32].message
    # the store holds exactly these records, one per cell, all parseable
    stored = RunDir(tmp_path / "run").records()
    assert sorted(r.cell_id for r in stored) == sorted(r.cell_id for r in recs)
    ok = by["test-ok", 8]
    assert ok.n_samples == len(ok.samples) >= 1 and ok.time_median_s > 0
    assert ok.peak_mem_bytes is not None and ok.tokens_per_s > 0
    assert json.loads((tmp_path / "run" / "env.json").read_text())["torch"]


def test_resume_skips_done_cells_and_retry_failed_reruns(tmp_path):
    suite = write_suite(tmp_path, """
[[cpu.grid]]
arch = ["test-ok", "test-raise"]
seq_len = [8, 16]
set = {fail_at = 16}
""")
    p = plan(suite, out=tmp_path / "run")
    first = execute(p)
    assert len(first) == 4
    lines = (tmp_path / "run" / "records.jsonl").read_text().splitlines()
    again = execute(p)
    assert [r.cell_id for r in again] == [r.cell_id for r in first]
    assert (tmp_path / "run" / "records.jsonl").read_text().splitlines() == lines
    execute(p, retry_failed=True)
    after = (tmp_path / "run" / "records.jsonl").read_text().splitlines()
    assert len(after) == len(lines) + 1  # only the error cell ran again


def test_kill_minus_9_then_resume_loses_and_duplicates_nothing(tmp_path):
    suite = write_suite(tmp_path, """
[[cpu.grid]]
arch = ["test-slow"]
seq_len = [1, 2, 3, 4, 5, 6, 7, 8]
""", budget_s=0.3)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "harness", "run", "--suite", suite, "--out", str(out)]
    log = open(tmp_path / "log.txt", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
    records = out / "records.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if records.exists() and len(records.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its running cell, mid-flight
    proc.wait()
    log.close()
    done_before = RunDir(out).records()
    assert 2 <= len(done_before) < 8, (tmp_path / "log.txt").read_text()
    # a writer killed mid-line leaves a truncated line: tolerated with a warning
    with open(records, "ab") as f:
        f.write(b'{"arch": "test-slow", "trunc')
    resumed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    with pytest.warns(UserWarning, match="truncated"):
        final = RunDir(out).records()
    ids = [r.cell_id for r in final]
    assert len(ids) == len(set(ids)) == 8
    assert {r.seq_len for r in final} == set(range(1, 9))
    assert all(r.status == "ok" for r in final)
    kept = {r.cell_id: r.to_json() for r in done_before}
    assert all(kept[r.cell_id] == r.to_json() for r in final if r.cell_id in kept)


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


def test_sweep_run_frames_the_plans_records_with_the_loaders_columns(tmp_path):
    """The README's ``harness.sweep.run`` goes through the one loader: the plan's records
    only (not others in the same directory), with the env columns ``load_run`` adds."""
    from harness.store.load import load_run
    from harness.sweep import run

    suite = write_suite(tmp_path, '[[cpu.grid]]\narch = ["test-ok"]\nseq_len = [8, 16]\n')
    out = tmp_path / "run"
    run(suite, out=out, seq_len=[8])
    df = run(suite, out=out, seq_len=[16])
    assert list(df["seq_len"]) == [16] and list(df["status"]) == ["ok"]
    every = load_run(out)
    assert sorted(every["seq_len"]) == [8, 16]
    assert set(every.columns) == set(df.columns)
    row = every[every["seq_len"] == 16].iloc[0]
    for col in ("cell_id", "device_label", "hostname", "thin", "overrides_key", "time_median_s"):
        assert df.iloc[0][col] == row[col], col
