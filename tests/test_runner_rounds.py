"""Interleaved rounds in the real runner: pooled samples, seeded orders, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.measure.contention import read_cpu_times
from harness.run.rounds import visiting_order
from harness.run.sweep import execute, plan
from harness.store.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = str(ROOT / "tests" / "fault_adapters.py")


def write_suite(tmp_path: Path, body: str, *, budget_s: float = 0.1, rounds: int = 3,
                extra: str = "") -> str:
    path = tmp_path / "suite.toml"
    path.write_text(
        f'name = "t"\n[settings]\nbudget_s = {budget_s}\ntimeout_s = 20\nmem_cap_gb = 0.75\n'
        f'count_flops = false\nrounds = {rounds}\nplugins = ["{PLUGIN}"]\n{extra}'
        f'[cpu]\npreset = "tiny"\nbatch = 1\nworkload = "forward"\n{body}'
    )
    return str(path)


def round_lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "rounds.jsonl").read_text().splitlines() if x]


def test_rounds_pool_samples_and_visit_cells_in_seeded_orders(tmp_path):
    suite = write_suite(tmp_path, """
[[cpu.grid]]
arch = ["test-ok", "test-slow"]
seq_len = [8, 16]
""")
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
""", extra="warm_mem_gb = 0.000001\n")
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
    cmd = [sys.executable, "-m", "harness", "run", "--suite", suite, "--out", str(out)]
    log = open(tmp_path / "log.txt", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
    rounds_file = out / "rounds.jsonl"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # some cells through round 1, none final yet
        if rounds_file.exists() and sum(
            json.loads(x)["round"] == 1 for x in rounds_file.read_text().splitlines() if x
        ) >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    log.close()
    before = RunDir(out).read_rounds()
    assert before and not RunDir(out).records(), (tmp_path / "log.txt").read_text()
    resumed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    final = RunDir(out).records()
    assert sorted(r.seq_len for r in final) == [1, 2, 3, 4]  # one record each
    for r in final:
        assert r.status == "ok" and r.rounds >= 4  # more if contended
        kept = [s for e in before.get(r.cell_id, []) for s in e["samples"]]
        assert r.samples[: len(kept)] == kept  # finished rounds were not measured again
        assert sorted(set(r.sample_rounds)) == [0, 1, 2, 3]


def test_a_failure_in_a_later_round_names_its_round_once(tmp_path):
    """A cell failing after its first round is stored as ``error`` whose message says
    which round, once (it read "round 2: round 2: ..." when both sides prefixed it)."""
    import subprocess
    import sys
    import time

    from harness.store.rundir import RunDir

    root = Path(__file__).resolve().parent.parent
    out, stop = tmp_path / "run", tmp_path / "stop"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--plugin", str(root / "tests" /
         "fault_adapters.py"), "--arch", "test-late", "--workload", "forward", "--seq-len",
         "4", "--batch", "1", "--preset", "tiny", "--set", f"stop_file={stop}", "--budget-s",
         "3", "--rounds", "4", "--device", "cpu", "--out", str(out)],
        cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(RunDir(out).read_rounds().values()) if out.exists() else True:
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.1)
    stop.touch()
    assert proc.wait(timeout=120) == 0
    (rec,) = RunDir(out).records()
    assert rec.status == "error" and "injected late failure" in rec.message
    assert rec.message.startswith("round ") and rec.message.count("round ") == 1, rec.message
