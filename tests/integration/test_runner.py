"""The runner records every failure as that cell's status and never loses a record."""

from __future__ import annotations

import json

import pytest

from harness.run.sweep import execute, plan
from harness.store.records import Record
from harness.store.rundir import RunDir
from tests.helpers import harness, harness_cmd, kill_when, start, write_suite


def statuses(records: list[Record]) -> dict[tuple[str, int], str]:
    return {(r.arch, r.seq_len): r.status for r in records}


def test_each_failure_is_recorded_and_other_cells_succeed(tmp_path):
    suite = write_suite(tmp_path, """
[[cpu.grid]]
arch = ["test-ok", "test-raise", "test-abort", "test-hang", "test-hog"]
seq_len = [8, 16, 32]
set = {fail_at = 16, hog_gb = 3.0}
""", timeout_s=4)  # test-hang times out at 4 s
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
""", timeout_s=4)
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
""", budget_s=0.3, timeout_s=4)
    out = tmp_path / "run"
    args = ("run", "--suite", suite, "--out", out)
    log = open(tmp_path / "log.txt", "w")
    proc = start(harness_cmd(*args), log=log)
    records = out / "records.jsonl"
    # the sweep and its running cell, mid-flight
    kill_when(proc, lambda: records.exists() and len(records.read_text().splitlines()) >= 2, 60)
    log.close()
    done_before = RunDir(out).records()
    assert 2 <= len(done_before) < 8, (tmp_path / "log.txt").read_text()
    # a writer killed mid-line leaves a truncated line: tolerated with a warning
    with open(records, "ab") as f:
        f.write(b'{"arch": "test-slow", "trunc')
    resumed = harness(*args)
    assert resumed.returncode == 0, resumed.stderr
    with pytest.warns(UserWarning, match="truncated"):
        final = RunDir(out).records()
    ids = [r.cell_id for r in final]
    assert len(ids) == len(set(ids)) == 8
    assert {r.seq_len for r in final} == set(range(1, 9))
    assert all(r.status == "ok" for r in final)
    kept = {r.cell_id: r.to_json() for r in done_before}
    assert all(kept[r.cell_id] == r.to_json() for r in final if r.cell_id in kept)


def test_sweep_run_frames_the_plans_records_with_the_loaders_columns(tmp_path):
    """The README's ``harness.sweep.run`` goes through the one loader: the plan's records
    only (not others in the same directory), with the env columns ``load_run`` adds."""
    from harness.store.load import load_run
    from harness.sweep import run

    suite = write_suite(tmp_path, '[[cpu.grid]]\narch = ["test-ok"]\nseq_len = [8, 16]\n',
                        timeout_s=4)
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
