"""Damaged run directories: every reader warns and skips the bad part, never a traceback,
never a lost or duplicated valid record (issue 16, case 10)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main as cli_main
from harness.store.records import Cell, Record
from harness.store.rundir import RunDir
from harness.store.status import sweep_status
from tests.helpers import ENV, PLUGIN, cli, write_run, write_suite

ARCHS = ("lmu", "lmu-fft")
LENS = (16, 32)
FAST = ("--formats", "png", "--dpi", "40", "--resamples", "50",  # reports in seconds
        "--baseline", "lmu")  # given: the report then reads nothing of plan.json


def synthetic_run(root: Path) -> Path:
    """A run of 4 ok cells with a plan and an env, as ``run`` leaves it (no measuring)."""

    cells = [Cell.make(arch=a, workload="forward", seq_len=n, batch=1, preset="tiny")
             for a in ARCHS for n in LENS]
    samples = [[1e-3 * (i + 1) * (1 + 0.01 * k) for k in range(6)] for i in range(len(cells))]
    records = [Record.for_cell(c, "ok", samples=s, n_samples=6, time_median_s=s[3],
                               run_id=root.name) for c, s in zip(cells, samples, strict=True)]
    return write_run(root, records, env={**ENV, "torch": "2"},
                     plan=(cells, {"suite": "t", "device": "cpu"}))


def damage(root: Path, how: str) -> None:
    rec = root / "records.jsonl"
    lines = rec.read_text().splitlines()
    if how == "env-not-json":
        (root / "env.json").write_text("not json{")
    elif how == "env-a-list":
        (root / "env.json").write_text("[1, 2]")
    elif how == "plan-not-json":
        (root / "plan.json").write_text("{\"cells\": [")
    elif how == "plan-bad-cells":
        (root / "plan.json").write_text(json.dumps({"cells": [1, {"cell_id": 5}, "x"]}))
    elif how in RECORD_DAMAGE:
        d = json.loads(lines[1])
        if how == "missing-field":
            del d["status"]
        elif how == "wrong-type":
            d["seq_len"], d["samples"] = "sixteen", "x"
        elif how in FIGURE_DAMAGE:
            field, value = FIGURE_DAMAGE[how]
            if field == "samples":
                d["samples"][2] = value
            else:
                d[field] = value
        elif how == "bad-status":
            d["status"] = "great"
        lines[1] = "[1, 2, 3]" if how == "not-object" else json.dumps(d)
        rec.write_text("\n".join(lines) + "\n")
    else:  # pragma: no cover
        raise AssertionError(how)


# a figure no measurement gives, as (field, value); compare must never trust one
FIGURE_DAMAGE = {
    "nan-field": ("time_median_s", float("nan")),
    "negative-median": ("time_median_s", -1e-3),
    "text-median": ("time_median_s", "abc"),
    "negative-sample": ("samples", -1e-3),
    "negative-memory": ("peak_mem_bytes", -4096),
    "negative-count": ("n_samples", -6),
}
RECORD_DAMAGE = ("missing-field", "wrong-type", "bad-status", "not-object", *FIGURE_DAMAGE)
ALL_DAMAGE = ("env-not-json", "env-a-list", "plan-not-json", "plan-bad-cells") + RECORD_DAMAGE


@pytest.mark.parametrize("how", ALL_DAMAGE)
def test_readers_warn_and_skip(tmp_path, capsys, how):
    good = synthetic_run(tmp_path / "good")
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    damage(bad, how)
    lost = 1 if how in RECORD_DAMAGE else 0
    env_only = how.startswith("env")  # status never reads env.json

    with _nothing() if env_only else pytest.warns(UserWarning):
        st = sweep_status(bad)
    assert st.total == 4
    assert st.done == 4 - lost and st.pending == lost
    code, out, err = cli(capsys, "status", str(bad))
    assert code == 0 and "Traceback" not in err
    assert ("warning:" in err) != env_only

    code, out, err = cli(capsys, "report", str(bad), "--out", str(tmp_path / "rep"), *FAST)
    assert code == 0, err
    # report reads plan.json too (the suite's [report] settings: the lm roles), so a
    # damaged plan warns as every other damaged file does
    assert "warning:" in err
    csv = (tmp_path / "rep" / "results.csv").read_text().splitlines()
    assert len(csv) == 1 + 4 - lost

    code, out, err = cli(capsys, "compare", str(good), str(bad))
    assert code == 0, err
    assert ("only in A: 1" in out) == bool(lost)

    code, out, err = cli(capsys, "profile", "--from", str(bad))
    assert code == 2 and "--cell" in err.strip().splitlines()[-1]
    with pytest.warns(UserWarning) if lost else _nothing():
        kept = RunDir(bad).records()
    assert len(kept) == 4 - lost and len({r.cell_id for r in kept}) == len(kept)


def test_report_same_run_twice_reads_it_once(tmp_path, capsys):
    run = synthetic_run(tmp_path / "run")
    code, out, err = cli(capsys, "report", str(run), str(run), "--out", str(tmp_path / "rep"),
                         *FAST)
    assert code == 0, err
    assert "given twice" in err and "Traceback" not in err
    assert len((tmp_path / "rep" / "results.csv").read_text().splitlines()) == 1 + 4


def test_foreign_schema_is_one_clear_line(tmp_path, capsys):
    run = synthetic_run(tmp_path / "run")
    d = json.loads((run / "records.jsonl").read_text().splitlines()[0])
    d["schema"] = 99
    with open(run / "records.jsonl", "a") as f:
        f.write(json.dumps(d) + "\n")
    code, out, err = cli(capsys, "report", str(run), "--out", str(tmp_path / "rep"), *FAST)
    assert code == 2 and "schema version" in err and "Traceback" not in err


@pytest.mark.parametrize("how", FIGURE_DAMAGE)
def test_compare_refuses_a_damaged_figure(tmp_path, capsys, how):
    """A record with a NaN, negative or text median, or a negative sample, is skipped with
    a warning naming the value; compare never calls its cell an improvement, and
    ``--fail-on-regression`` over it (as baseline or as candidate) exits 2 naming it."""
    good = synthetic_run(tmp_path / "good")
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    damage(bad, how)
    field, value = FIGURE_DAMAGE[how]
    with pytest.warns(UserWarning, match=f"line 2, not a record: field '{field}'"):
        assert len(RunDir(bad).records()) == 3
    for a, b in ((good, bad), (bad, good)):
        code, out, err = cli(capsys, "compare", str(a), str(b))
        assert code == 0 and "improvement" not in out and "faster" not in out
        assert f"{value!r}" in err  # the warning names the bad value
        code, out, err = cli(capsys, "compare", str(a), str(b), "--fail-on-regression")
        last = err.strip().splitlines()[-1]
        assert code == 2 and "Traceback" not in err, err
        assert last.startswith("error: --fail-on-regression") and f"{value!r}" in last


@pytest.mark.slow
@pytest.mark.parametrize("how", ["env-not-json", "plan-not-json", "missing-field"])
def test_resume_of_a_damaged_store(tmp_path, capsys, how):
    """A resume sets a damaged env.json/plan.json aside and re-runs only a cell whose record
    is damaged; every valid record stays, none is duplicated."""
    from harness.run.sweep import plan

    suite = write_suite(tmp_path, '[[cpu.grid]]\narch = ["test-ok"]\nseq_len = [4, 8, 12]\n',
                        budget_s=0.02, mem_cap_gb=None)
    out = tmp_path / "run"
    store = RunDir(out).ensure()
    store.write_env({"hostname": "h"})
    (out / "plan.json").write_text(json.dumps({"cells": []}))
    for c in plan(suite, out=out).cells:  # as a first run leaves them, without measuring
        store.append(Record.for_cell(c, "ok", samples=[1e-3], n_samples=1, time_median_s=1e-3))
    before = (out / "records.jsonl").read_text().splitlines()
    damage(out, how)
    code, _, err = cli(capsys, "run", "--suite", str(suite), "--out", str(out))
    assert code == 0 and "Traceback" not in err, err
    assert "warning:" in err
    with pytest.warns(UserWarning) if how == "missing-field" else _nothing():
        recs = RunDir(out).records()
    assert len(recs) == 3 == len({r.cell_id for r in recs})
    after = (out / "records.jsonl").read_text().splitlines()
    if how == "missing-field":  # the damaged cell measured again, the others untouched
        assert after[0] == before[0] and after[2] == before[2] and len(after) == 4
        assert json.loads(after[3])["cell_id"] == json.loads(before[1])["cell_id"]
    else:
        assert after == before  # nothing re-run
        name = "env.json" if how == "env-not-json" else "plan.json"
        assert (out / f"{name}.damaged").read_text().startswith(("not json", "{\"cells\""))
        assert json.loads((out / name).read_text())  # written anew


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


ROUND_DAMAGE = {
    "samples": lambda d: d.update(samples="abc"),
    "missing k": lambda d: d.pop("k"),
    "no static in round 0": lambda d: d.pop("static"),
    "nan samples": lambda d: d.update(samples=[float("nan")] * len(d["samples"])),
    "negative samples": lambda d: d.update(samples=[-1.0] * len(d["samples"])),
    "static mistyped": lambda d: d.update(static="oops"),
}


@pytest.mark.slow
@pytest.mark.parametrize("how", ROUND_DAMAGE)
def test_a_damaged_round_is_set_aside_and_measured_again(tmp_path, how, capsys):
    """A run killed before its record, its rounds.jsonl then damaged: the resume warns
    once, measures the damaged round (and those after it) again, and stores one ok record
    whose samples are all finite and non-negative; no traceback."""
    out = tmp_path / "run"
    args = ["run", "--plugin", PLUGIN, "--arch", "test-ok", "--workload", "forward",
            "--seq-len", "8", "--batch", "1", "--preset", "tiny", "--budget-s", "0.05",
            "--rounds", "3", "--device", "cpu", "--out", str(out)]
    assert cli_main(args) == 0
    (out / "records.jsonl").unlink()  # killed after its last round, before its record
    lines = [json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines()]
    ROUND_DAMAGE[how](lines[0])  # round 0: the cell starts again from scratch
    (out / "rounds.jsonl").write_text("".join(json.dumps(d) + "\n" for d in lines))
    with pytest.warns(UserWarning, match="damaged line.*measured again"):
        assert not any(RunDir(out).read_rounds().values())  # no round 0: from scratch
    capsys.readouterr()
    assert cli_main(args) == 0
    err = capsys.readouterr().err
    assert err.count("damaged line(s) set aside") == 1 and "Traceback" not in err, err
    (rec,) = RunDir(out).records()
    assert rec.status == "ok" and rec.rounds >= 3  # more if a neighbour contended it
    assert rec.samples and min(rec.samples) >= 0
    assert sorted(set(rec.sample_rounds)) == list(range(rec.rounds))
