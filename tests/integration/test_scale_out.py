"""More than one slot, more than one runner on one directory, kills in between: through
real processes (``python -m harness run``), each cell recorded exactly once and each of
its rounds stored once. On a115e68 ``--workers 2`` crashed (``round 1 added after 2
rounds``) and two runners started together waited for each other forever."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import PLUGIN, finish, harness_cmd, read_jsonl, start, stored_lines

ARCHS = ["test-ok", "test-slow", "lstm"]


def run_cmd(out: Path, archs=ARCHS, *extra: str) -> list[str]:
    return harness_cmd("run", "--plugin", PLUGIN, "--arch", ",".join(archs), "--workload",
                       "forward", "--seq-len", "8,16,32", "--batch", "1", "--preset", "tiny",
                       "--budget-s", "0.1", "--rounds", "3", "--device", "cpu", "--out", out,
                       *extra)


def once_each(out: Path, n: int) -> None:
    """``n`` cells, one record each, all ok, and every round of each stored once."""
    recs = stored_lines(out)
    counts = Counter(d["cell_id"] for d in recs)
    assert len(counts) == n and set(counts.values()) == {1}, counts
    assert {d["status"] for d in recs} == {"ok"}, [d["message"] for d in recs]
    rounds = Counter((d["cell_id"], d["round"]) for d in
                     read_jsonl(out / "rounds.jsonl"))
    assert set(rounds.values()) == {1}, rounds
    # its 3 rounds, and the extra ones a cell contended by the other runners asked for
    for d in recs:
        stored = sorted(r for cid, r in rounds if cid == d["cell_id"])
        assert stored == list(range(d["rounds"])) and d["rounds"] >= 3, (d["cell_id"], stored)


@pytest.mark.parametrize("workers", [2, 3])
def test_several_workers_measure_every_cell_once(tmp_path, workers):
    """(On a 2-core machine ``--workers 3`` is capped to 2 and says so; the schedule's
    state machine covers 3 slots.)"""
    text = finish(start(run_cmd(tmp_path / "run", ARCHS, "--workers", str(workers))))
    once_each(tmp_path / "run", 9)
    cores = len(os.sched_getaffinity(0))
    assert (f"capped to {cores}" in text) == (workers > cores)


@pytest.mark.parametrize("sets", [
    [ARCHS, ARCHS],  # the same command twice
    [ARCHS, ARCHS, ARCHS],
    [["test-ok", "test-slow"], ["test-slow", "lstm"]],  # overlapping sets
    [["test-ok"], ["lstm"], ["test-slow"]],  # different sets
])
def test_runners_started_together_on_one_directory_measure_each_cell_once(tmp_path, sets):
    out = tmp_path / "run"
    procs = [start(run_cmd(out, archs)) for archs in sets]
    for proc in procs:
        finish(proc)
    once_each(out, 3 * len({a for archs in sets for a in archs}))


def test_a_killed_runner_leaves_its_cells_to_the_other_and_to_a_resume(tmp_path):
    out = tmp_path / "run"
    victim, other = start(run_cmd(out)), start(run_cmd(out))
    path = out / "rounds.jsonl"
    deadline = time.monotonic() + 120
    while not (path.exists() and len(path.read_text().splitlines()) >= 4):
        assert time.monotonic() < deadline, "no rounds after 120 s"
        time.sleep(0.1)
    os.killpg(victim.pid, signal.SIGKILL)  # runner, forkserver and cells at once
    victim.wait(timeout=30)
    finish(other)  # takes over the dead runner's cells, from their stored rounds
    finish(start(run_cmd(out)))  # and a resume finds nothing left, or finishes it
    once_each(out, 9)
