"""Interleaved rounds in the real runner: pooled samples, seeded orders, kill and resume."""

from __future__ import annotations

import time
from pathlib import Path

from harness.measure.contention import read_cpu_times
from harness.run.rounds import visiting_order
from harness.run.sweep import execute, plan
from harness.store.rundir import RunDir
from tests.helpers import PLUGIN, harness, harness_cmd, kill_when, read_jsonl, start, write_suite


def round_lines(out: Path) -> list[dict]:
    return read_jsonl(out / "rounds.jsonl")


def test_rounds_pool_samples_and_visit_cells_in_seeded_orders(tmp_path):
    suite = write_suite(tmp_path, """
[[cpu.grid]]
arch = ["test-ok", "test-slow"]
seq_len = [8, 16]
""", budget_s=0.1, rounds=3)
    out = tmp_path / "run"
    recs = execute(plan(suite, out=out))
    assert len(recs) == 4 and all(r.status == "ok" for r in recs)
    for r in recs:
        assert r.rounds >= 3 and sorted(set(r.sample_rounds)) == list(range(r.rounds))
        assert r.n_samples == len(r.samples) == len(r.sample_rounds) >= 5
        assert not r.thin and len(r.round_order) == r.rounds
        if read_cpu_times() is not None:
            assert len(r.contention) == r.n_samples
    lines = round_lines(out)
    rounds_seen = [e["round"] for e in lines]
    assert rounds_seen == sorted(rounds_seen)  # every cell's round r before any round r+1
    for r in (1, 2):
        visited = [e["cell_id"] for e in lines if e["round"] == r]
        first = [e["cell_id"] for e in lines if e["round"] == 0]
        assert visited == visiting_order(first, r, seed=0, slot="cpu")
    # the records' pooled samples are exactly the rounds' samples
    by_cell = {r.cell_id: r for r in recs}
    for cid, rec in by_cell.items():
        pooled = [s for e in lines if e["cell_id"] == cid for s in e["samples"]]
        assert rec.samples == pooled


def test_cells_prepared_again_when_warm_memory_is_exhausted(tmp_path):
    suite = write_suite(tmp_path, """
[[cpu.grid]]
arch = ["test-ok"]
seq_len = [8, 16]
""", budget_s=0.1, rounds=3, extra="warm_mem_gb = 0.000001\n")
    recs = execute(plan(suite, out=tmp_path / "run"))
    assert all(r.status == "ok" and r.rounds >= 3 and r.n_samples >= 5 for r in recs)
    # a re-prepared round keeps the first round's batching
    for e in round_lines(tmp_path / "run"):
        assert e["k"] == next(x["k"] for x in round_lines(tmp_path / "run")
                              if x["cell_id"] == e["cell_id"] and x["round"] == 0)


def test_slow_cell_still_gets_the_minimum_samples(tmp_path):
    # budget far below one call per round: the rounds still take 5 samples in all
    suite = write_suite(tmp_path, """
[[cpu.grid]]
arch = ["test-slow"]
seq_len = [8]
""", budget_s=0.001, rounds=2)
    (rec,) = execute(plan(suite, out=tmp_path / "run"))
    # each round takes the samples still due (3, then 2), and samples on until the open
    # contention window (0.2 s, about 7 of these 30 ms samples) closes and judges them
    assert rec.sample_rounds.count(0) >= 3 and rec.sample_rounds.count(1) >= 2
    assert rec.rounds >= 2  # more when a neighbour's burst left too few quiet samples


def test_kill_between_rounds_then_resume_keeps_finished_rounds(tmp_path):
    suite = write_suite(tmp_path, """
[[cpu.grid]]
arch = ["test-slow"]
seq_len = [1, 2, 3, 4]
""", budget_s=0.6, rounds=4)
    out = tmp_path / "run"
    args = ("run", "--suite", suite, "--out", out)
    log = open(tmp_path / "log.txt", "w")
    proc = start(harness_cmd(*args), log=log)
    rounds_file = out / "rounds.jsonl"
    kill_when(proc, lambda: rounds_file.exists() and sum(  # some cells through round 1,
        e["round"] == 1 for e in read_jsonl(rounds_file)) >= 2, 90)  # none final yet
    log.close()
    before = RunDir(out).read_rounds()
    assert before and not RunDir(out).records(), (tmp_path / "log.txt").read_text()
    resumed = harness(*args, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    final = RunDir(out).records()
    assert sorted(r.seq_len for r in final) == [1, 2, 3, 4]  # one record each
    for r in final:
        assert r.status == "ok" and r.rounds >= 4  # more if contended
        kept = [s for e in before.get(r.cell_id, []) for s in e["samples"]]
        assert r.samples[: len(kept)] == kept  # finished rounds were not measured again
        assert sorted(set(r.sample_rounds)) == list(range(r.rounds))  # extras: contended


def test_a_failure_in_a_later_round_names_its_round_once(tmp_path):
    """A cell failing after its first round is stored as ``error`` whose message says
    which round, once (it read "round 2: round 2: ..." when both sides prefixed it)."""
    out, stop, log = tmp_path / "run", tmp_path / "stop", tmp_path / "log.txt"
    with open(log, "w") as f:
        proc = start(harness_cmd(
            "run", "--plugin", PLUGIN, "--arch", "test-late", "--workload", "forward",
            "--seq-len", "4", "--batch", "1", "--preset", "tiny", "--set", f"stop_file={stop}",
            "--budget-s", "3", "--rounds", "4", "--device", "cpu", "--out", out), log=f)
    deadline = time.monotonic() + 120
    while not any(RunDir(out).read_rounds().values()) if out.exists() else True:
        assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
        time.sleep(0.1)
    stop.touch()
    assert proc.wait(timeout=120) == 0
    (rec,) = RunDir(out).records()
    assert rec.status == "error" and "injected late failure" in rec.message
    assert rec.message.startswith("round ") and rec.message.count("round ") == 1, rec.message
