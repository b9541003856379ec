"""A name-blind engine: the baseline and the paper comparison come from the suite and are
stored with the run; every reader (report, compare, status, resume) reads schema-1 runs."""

from __future__ import annotations

import json

import pytest

from harness.cli import main as cli_main
from harness.errors import UsageError
from harness.report import build_report, run_baseline, run_report_settings
from harness.report.compare import compare_runs
from harness.run.suites import load_suite
from harness.run.sweep import plan
from harness.store.load import load_run
from harness.store.records import Cell, Record, cells_to_run
from harness.store.rundir import RunDir
from harness.store.status import sweep_status
from tests.helpers import record, write_schema_1

FAST = dict(formats=("png",), widths=("single",), dpi=40, n_resamples=50)


def _timed(arch: str, n: int, t: float) -> Record:
    return record(arch, n, samples=[t * (1 + k / 100) for k in range(6)], time_median_s=t,
                  preset="tiny", run_id="r")


def test_the_suite_names_the_baseline_and_the_run_stores_it(tmp_path):
    p = plan("smoke", device="cpu", out=tmp_path / "a")
    assert p.baseline == load_suite("smoke").baseline == "lmu"
    assert p.meta()["baseline"] == "lmu"
    assert plan("smoke", device="cpu", out=tmp_path / "b", baseline="lstm").baseline == "lstm"
    with pytest.raises(UsageError, match="unknown baseline architecture 'nope'"):
        plan("smoke", device="cpu", out=tmp_path / "c", baseline="nope")


@pytest.mark.slow
def test_the_paper_comparison_comes_from_the_suite():
    p = plan("paper", device="cpu", out="unused")
    archs = p.meta()["report"]["paper_archs"]
    assert "lmu-chunked" in archs  # PAPER_ARCHS in code silently dropped it
    assert {c.arch for c in p.cells} >= set(archs) - {"lmu-conv"}


def test_report_takes_the_baseline_stored_with_the_run(tmp_path):
    run = RunDir(tmp_path / "run").ensure()
    for arch, t in (("lmu", 4e-3), ("lstm", 2e-3)):
        for n in (64, 128):
            run.append(_timed(arch, n, t * n / 64))
    with pytest.raises(UsageError, match="no baseline.*--baseline, one of: lmu, lstm"):
        build_report([run.root], tmp_path / "rep0", **FAST)
    run.write_plan([], {"suite": "t", "baseline": "lstm"})
    assert run_baseline([run.root], None, []) == "lstm"
    text = build_report([run.root], tmp_path / "rep", **FAST).read_text()
    assert "Baseline: `lstm`" in text
    text = build_report([run.root], tmp_path / "rep2", baseline="lmu", **FAST).read_text()
    assert "Baseline: `lmu`" in text  # --baseline wins


def test_a_run_of_a_known_suite_without_a_stored_baseline_uses_the_suites(tmp_path):
    run = RunDir(tmp_path / "old").ensure()
    run.write_plan([], {"suite": "paper"})  # written before baselines were stored
    assert run_baseline([run.root], None, []) == "lmu"
    assert "lmu-chunked" in run_report_settings([run.root])["paper_archs"]


def test_every_reader_reads_a_schema_1_run(tmp_path, capsys):
    old = [_timed(a, n, t * n) for a, t in (("lmu", 2e-5), ("lstm", 1e-5)) for n in (64, 128)]
    write_schema_1(tmp_path / "v1", old)
    (tmp_path / "v1" / "plan.json").write_text(json.dumps(
        {"suite": "t", "cells": [{"cell_id": r.cell_id} for r in old]}))
    # report
    index = build_report([tmp_path / "v1"], tmp_path / "rep", baseline="lmu", **FAST)
    assert "Speedup over `lmu`" in index.read_text()
    # compare (against itself: every cell the same)
    res = compare_runs(load_run(tmp_path / "v1"), load_run(tmp_path / "v1"))
    assert len(res) == 4 and set(res["verdict"]) == {"same"}
    assert cli_main(["compare", str(tmp_path / "v1"), str(tmp_path / "v1")]) == 0
    # status
    st = sweep_status(tmp_path / "v1")
    assert (st.total, st.done, st.pending) == (4, 4, 0)
    # resume: cells with a schema-1 record are not run again
    cells = [Cell.make(arch=r.arch, workload=r.workload, seq_len=r.seq_len, batch=r.batch,
                       preset=r.preset) for r in old]
    known = RunDir(tmp_path / "v1").latest_by_cell()
    assert cells_to_run(cells, known, retry_failed=False) == []
    assert cells_to_run(cells, known, retry_failed=True) == []  # all ok
    capsys.readouterr()
