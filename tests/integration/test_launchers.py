"""Launchers: the Slurm path for real through submitit's local and debug executors, job
grouping, requeue on preemption, resume after a killed job, and ``harness status`` as a
command (its counts and the launcher's configuration: tests/harness/store/test_status.py,
tests/harness/run/test_launcher_config.py)."""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest

from harness.run.launchers.slurm import SlurmConfig
from harness.run.sweep import execute, plan
from harness.store.records import Cell, Record
from harness.store.rundir import RunDir
from harness.store.status import sweep_status
from tests.helpers import (
    EXPECTED,
    FAILING_SUITE,
    SLOW_SUITE,
    harness,
    read_jsonl,
    stored_lines,
    write_suite,
)

pytest.importorskip("submitit")


def jobs_file(out: Path) -> list[dict]:
    return read_jsonl(out / "slurm" / "jobs.jsonl")


def wait_for_records(out: Path, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    path = out / "records.jsonl"
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} records after {timeout} s")


@pytest.mark.parametrize("cluster", ["local", "debug"])
def test_slurm_path_runs_sweep_and_records_the_failing_cell(tmp_path, cluster):
    p = plan(write_suite(tmp_path, FAILING_SUITE, rounds=5), device="cpu", out=tmp_path / "run")
    # local: one job (each costs a python + torch start); debug: two, one series each
    per_job = 6 if cluster == "local" else 4
    cfg = SlurmConfig(cluster=cluster, cells_per_job=per_job, timeout_min=5, poll_s=0.2)
    seen = []
    recs = execute(p, launcher="slurm", launcher_config=cfg, on_record=seen.append)
    assert {(r.arch, r.seq_len): r.status for r in recs} == EXPECTED
    assert "injected failure" in next(r for r in recs if r.status == "error").message
    lines = stored_lines(tmp_path / "run")
    assert sorted(d["cell_id"] for d in lines) == sorted(c.cell_id for c in p.cells)
    assert sorted(r.cell_id for r in seen) == sorted(c.cell_id for c in p.cells)
    jobs = jobs_file(tmp_path / "run")
    assert sorted(len(j["cells"]) for j in jobs) == ([6] if cluster == "local" else [3, 3])
    assert all(d["host"] == socket.gethostname() for d in lines)
    assert (tmp_path / "run" / "envs" / f"{socket.gethostname()}.json").exists()
    assert not list((tmp_path / "run" / "running").glob("*.json"))  # leases released
    # a job writes the environment a local run writes: same keys, the suite described
    local = plan(write_suite(tmp_path, FAILING_SUITE, rounds=5), device="cpu", out=tmp_path / "loc")
    execute(local)
    slurm_env, local_env = (RunDir(tmp_path / d).env() for d in ("run", "loc"))
    assert set(slurm_env) - {"resumed"} == set(local_env) - {"resumed"}
    assert slurm_env["suite"]["cells"] == 6 and set(slurm_env["adapters"]) == {
        "test-ok", "test-raise"}
    st = sweep_status(tmp_path / "run")
    assert (st.total, st.done, st.failed, st.running, st.pending) == (6, 4, 2, 0, 0)
    # resuming submits nothing; --retry-failed submits exactly the two error cells
    again = execute(p, launcher="slurm", launcher_config=cfg)
    assert len(jobs_file(tmp_path / "run")) == len(jobs) and len(again) == 6
    if cluster == "debug":
        execute(p, launcher="slurm", launcher_config=cfg, retry_failed=True)
        retried = jobs_file(tmp_path / "run")[2:]
        assert [len(j["cells"]) for j in retried] == [2]
        assert len(stored_lines(tmp_path / "run")) == 8


def _job_tree(job_id: str) -> list[psutil.Process]:
    """A local submitit job's id is its controller's pid: the controller and all below it."""
    ctl = psutil.Process(int(job_id))
    return [ctl, *ctl.children(recursive=True)]


def _kill_tree(procs: list[psutil.Process]) -> None:
    for proc in reversed(procs):
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    deadline = time.monotonic() + 30  # SIGKILL is delivered asynchronously
    while time.monotonic() < deadline:
        try:
            if all(not q.is_running() or q.status() == psutil.STATUS_ZOMBIE for q in procs):
                return
        except psutil.NoSuchProcess:
            continue
        time.sleep(0.05)


def _run_in_thread(fn) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


def _job_log(out: Path) -> str:
    return "".join(f.read_text() for f in sorted((out / "slurm").glob("*/*_log.*")))


def test_preempted_job_requeues_unfinished_cells_and_killed_job_resumes(tmp_path):
    """One job: preempted (submitit's USR2) it requeues only its unfinished cells; then
    killed outright, its remaining cells are resubmitted by the next run of the sweep."""
    out = tmp_path / "run"
    p = plan(write_suite(tmp_path, SLOW_SUITE, budget_s=0.1, rounds=5), device="cpu", out=out)
    n = len(p.cells)
    cfg = SlurmConfig(cluster="local", cells_per_job=n, timeout_min=5, poll_s=0.2)
    t, box = _run_in_thread(lambda: execute(p, launcher="slurm", launcher_config=cfg))
    wait_for_records(out, 1)
    (job,) = jobs_file(out)
    tree = _job_tree(job["job_id"])
    task = next(q for q in tree[1:] if "submitit" in " ".join(q.cmdline()))
    task.send_signal(signal.SIGUSR2)  # preemption / time-limit warning
    deadline = time.monotonic() + 60
    while "checkpoint:" not in _job_log(out) and time.monotonic() < deadline:
        time.sleep(0.05)
    done_at_signal = len(stored_lines(out))
    left = [int(x) for x in re.findall(rf"checkpoint: (\d+) of {n} cells left", _job_log(out))]
    assert left and left[0] == n - done_at_signal, _job_log(out)[-2000:]
    wait_for_records(out, done_at_signal + 1)  # the requeued task runs on
    _kill_tree(_job_tree(job["job_id"]))  # now kill the whole job, like a node failure
    t.join(timeout=60)
    assert not t.is_alive() and "error" not in box, box.get("error")
    done_before = {d["cell_id"]: d for d in stored_lines(out)}
    assert done_at_signal < len(done_before) < n, "the job was not killed mid-way"
    assert len(stored_lines(out)) == len(done_before)  # nothing ran twice
    st = sweep_status(out)  # the killed job's claim is recognised as dead
    assert (st.done, st.running, st.pending, st.stale_workers) == (
        len(done_before), 0, n - len(done_before), 1)
    execute(p, launcher="slurm", launcher_config=cfg)
    resubmitted = jobs_file(out)[1]["cells"]
    assert sorted(resubmitted) == sorted(c.cell_id for c in p.cells
                                         if c.cell_id not in done_before)
    lines = stored_lines(out)
    ids = [d["cell_id"] for d in lines]
    assert len(ids) == len(set(ids)) == n and all(d["status"] == "ok" for d in lines)
    assert all(d == done_before[d["cell_id"]] for d in lines if d["cell_id"] in done_before)


def test_status_cli(tmp_path):
    bad = harness("status", tmp_path / "nope")
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
    cells = [Cell.make(arch="a", workload="forward", seq_len=n, batch=1) for n in (1, 2, 3)]
    RunDir(tmp_path).write_plan(cells, {"suite": "t", "device": "cpu"})
    RunDir(tmp_path).append(Record.for_cell(cells[0], "timeout"))
    res = harness("status", "--json", tmp_path)
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert (d["total"], d["done"], d["failed"], d["pending"]) == (3, 0, 1, 2)
