"""The Slurm launcher against a real one-node Slurm (the ``slurm`` fixture): job arrays,
a failing cell, ``scancel`` and resume, ``scontrol requeue``, a time limit, ``status``
reading the queue, and two submissions into one run directory.

Every test drives ``python -m harness run`` as a user does. Skipped (with the reason)
where Slurm is not installed or the tests do not run as root; ``.ci/run`` installs it.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import (
    EXPECTED,
    FAILING_SUITE,
    SLOW_SUITE,
    finish,
    harness,
    harness_cmd,
    read_jsonl,
    start,
    stored_lines,
    write_suite,
)

pytest.importorskip("submitit")


def launcher_config(tmp_path: Path, **keys) -> Path:
    cfg = {"cluster": "slurm", "partition": "debug", "cpus_per_job": 1, "mem_gb": 1,
           "poll_s": 0.5, "timeout_min": 5, **keys}
    path = tmp_path / f"slurm-{len(list(tmp_path.glob('slurm-*.toml')))}.toml"
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in cfg.items()
                            if not isinstance(v, dict))
                    + "".join(f"[{k}]\n" + "".join(f"{a} = {json.dumps(b)}\n"
                                                   for a, b in v.items())
                              for k, v in cfg.items() if isinstance(v, dict)))
    return path


def run_args(suite: str, out: Path, cfg: Path) -> list[str]:
    return harness_cmd("run", "--suite", suite, "--device", "cpu", "--out", out,
                       "--launcher", "slurm", "--launcher-config", cfg)


def jobs(out: Path) -> list[dict]:
    path = out / "slurm" / "jobs.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def wait_until(cond, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.2)


def n_records(out: Path) -> int:
    path = out / "records.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def once_each(out: Path, n: int) -> dict[str, dict]:
    """The run's records, asserting exactly one per cell and ``n`` cells."""
    lines = stored_lines(out)
    counts = Counter(d["cell_id"] for d in lines)
    assert len(counts) == n and set(counts.values()) == {1}, counts
    return {d["cell_id"]: d for d in lines}


def job_log(out: Path) -> str:
    return "".join(f.read_text(errors="replace")
                   for f in sorted((out / "slurm").glob("*/*_log.*")))


def test_sweep_lands_each_cell_once_and_records_the_failing_cell(slurm, tmp_path):
    out = tmp_path / "run"
    cfg = launcher_config(tmp_path, cells_per_job=3)
    text = finish(start(run_args(write_suite(tmp_path, FAILING_SUITE, rounds=5), out, cfg)))
    recs = once_each(out, 6)
    assert {(d["arch"], d["seq_len"]): d["status"] for d in recs.values()} == EXPECTED
    assert any("injected failure" in d["message"] for d in recs.values())
    submitted = jobs(out)  # one array of two tasks, a length series each
    assert len(submitted) == 2 and all(re.fullmatch(r"\d+_\d", j["job_id"]) for j in submitted)
    assert sorted(len(j["cells"]) for j in submitted) == [3, 3]
    states = slurm.run("squeue", "--noheader", "--array", "--states=all", "--format=%i %T")
    assert all(f"{j['job_id']} COMPLETED" in states for j in submitted), states
    assert "submitted 2 job(s) for 6 cells" in text
    again = finish(start(run_args(write_suite(tmp_path, FAILING_SUITE, rounds=5), out, cfg)))
    assert "nothing to submit" in again and len(jobs(out)) == 2 and n_records(out) == 6


def test_cancelled_job_ends_the_wait_and_the_same_command_resumes_it(slurm, tmp_path):
    """Without accounting submitit cannot tell a cancelled job from a running one; the
    launcher reads the queue, so the command returns and says what is left."""
    out = tmp_path / "run"
    # one round a cell: records land one by one over ~4 s, so the cancel comes mid-run
    suite = write_suite(tmp_path, SLOW_SUITE, budget_s=0.5, rounds=1)
    cfg = launcher_config(tmp_path, cells_per_job=7)
    proc = start(run_args(suite, out, cfg))
    wait_until(lambda: n_records(out) >= 1, what="a first record")
    (job,) = jobs(out)
    slurm.run("scancel", job["job_id"])
    text = finish(proc, timeout=60)
    done = n_records(out)
    assert 1 <= done < 7, text
    assert re.search(rf"job {job['job_id']} ended \((CANCELLED|ENDED)\) leaving {7 - done} "
                     r"cell\(s\) without a record", text), text[-2000:]
    finish(start(run_args(suite, out, cfg)))
    first, second = jobs(out)
    assert len(second["cells"]) == 7 - done and not set(second["cells"]) & {
        d["cell_id"] for d in stored_lines(out)[:done]}
    assert all(d["status"] == "ok" for d in once_each(out, 7).values())


def test_requeued_and_timed_out_jobs_continue_their_unfinished_cells(slurm, tmp_path):
    """One job requeued by ``scontrol requeue``, one past its time limit (submitit's
    USR2, then its checkpoint requeues it), side by side: each finishes in the same
    command, every cell once; each new start runs only the cells without a record and
    continues them from their next round (no round is measured twice)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    requeued, timed = tmp_path / "a" / "run", tmp_path / "b" / "run"
    suite_a = write_suite(tmp_path / "a", SLOW_SUITE, budget_s=0.3, rounds=5)
    p_requeued = start(run_args(suite_a, requeued, launcher_config(tmp_path, cells_per_job=7)))
    # the limit is 1 min; the job is told to requeue 45 s before it. Slurm looks every
    # 30 s, so the signal comes 15-45 s after a start: after python is up (a signal due
    # before the job's step runs is lost), before its 7 x 8 s of cells are done
    suite_b = write_suite(tmp_path / "b", SLOW_SUITE, budget_s=8, rounds=5)
    Path(suite_b).write_text(Path(suite_b).read_text().replace(  # use the whole budget
        "[settings]\n", "[settings]\ntarget_rel_ci = 1e-9\n"))
    p_timed = start(run_args(suite_b, timed, launcher_config(
        tmp_path, cells_per_job=7, timeout_min=1, signal_delay_s=45, max_num_timeout=5)))
    wait_until(lambda: n_records(requeued) >= 1, what="a first record")
    (job,) = jobs(requeued)
    slurm.run("scontrol", "requeue", job["job_id"])
    finish(p_requeued)
    finish(p_timed, timeout=240)
    for out in (requeued, timed):
        once_each(out, 7)
        starts = [int(k) for k in re.findall(r"runs (\d+) of \d+ cells", job_log(out))]
        assert len(starts) >= 2 and starts[0] == 7, (out, starts)
        assert starts == sorted(starts, reverse=True), starts
        rounds = Counter((d["cell_id"], d["round"]) for d in
                         read_jsonl(out / "rounds.jsonl"))
        assert set(rounds.values()) == {1}, "a round was measured twice"
    assert starts_after_requeue(job_log(requeued)) < 7  # it had a record by then
    assert re.search(r"checkpoint: \d+ of 7 cells left", job_log(timed)), job_log(timed)[-2000:]
    assert len(jobs(requeued)) == len(jobs(timed)) == 1  # requeued, never resubmitted


def starts_after_requeue(log: str) -> int:
    return [int(k) for k in re.findall(r"runs (\d+) of \d+ cells", log)][1]


def test_status_reads_the_queue_while_jobs_wait_and_run(slurm, tmp_path):
    out = tmp_path / "run"
    suite = write_suite(tmp_path, SLOW_SUITE, budget_s=0.2, rounds=5)
    cfg = launcher_config(tmp_path, cells_per_job=7, wait=False, slurm={"hold": True})
    text = finish(start(run_args(suite, out, cfg)))
    assert "not waiting" in text
    (job,) = jobs(out)

    def status() -> dict:
        res = harness("status", "--json", out)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    held = status()  # the job waits in the queue (held): its cells are queued in Slurm
    assert held["slurm_jobs"] == {"PENDING": 1} and held["slurm_queued"] == 7
    assert (held["pending"], held["queued"], held["running"]) == (7, 7, 0)
    slurm.run("scontrol", "release", job["job_id"])
    wait_until(lambda: status()["slurm_jobs"] == {"RUNNING": 1} and status()["running"] == 1,
               what="status showing the running job")
    wait_until(lambda: status()["slurm_jobs"] == {}, what="the job leaving the queue")
    st = status()
    assert (st["done"], st["pending"], st["running"]) == (7, 0, 0)


def test_two_submissions_into_one_directory_measure_each_cell_once(slurm, tmp_path):
    out = tmp_path / "run"
    suite = write_suite(tmp_path, FAILING_SUITE.replace('"test-raise"', '"test-slow"'), rounds=5)
    cfg = launcher_config(tmp_path, cells_per_job=3)
    procs = [start(run_args(suite, out, cfg)) for _ in range(2)]
    for proc in procs:
        finish(proc)
    assert all(d["status"] == "ok" for d in once_each(out, 6).values())
