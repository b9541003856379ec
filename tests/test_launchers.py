"""Launchers: the Slurm path for real through submitit's local and debug executors, job
grouping, requeue on preemption, resume after a killed job, and ``harness status``."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from harness.errors import UsageError
from harness.run.launchers.slurm import SlurmConfig, make_jobs
from harness.run.sweep import execute, plan
from harness.store.claims import Owner, WorkerLease
from harness.store.records import Cell, Record
from harness.store.rundir import RunDir
from harness.store.status import sweep_status

pytest.importorskip("submitit")

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = str(ROOT / "tests" / "fault_adapters.py")


def write_suite(tmp_path: Path, body: str, budget_s: float = 0.05, rounds: int = 5) -> str:
    path = tmp_path / "suite.toml"
    path.write_text(
        f'name = "t"\n[settings]\nbudget_s = {budget_s}\ntimeout_s = 20\nmem_cap_gb = 0.75\n'
        f'rounds = {rounds}\n'
        f'count_flops = false\nplugins = ["{PLUGIN}"]\n'
        f'[cpu]\npreset = "tiny"\nbatch = 1\nworkload = "forward"\n{body}'
    )
    return str(path)


def jobs_file(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "slurm" / "jobs.jsonl").read_text().splitlines()]


def stored_lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]


def wait_for_records(out: Path, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    path = out / "records.jsonl"
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} records after {timeout} s")


FAILING_SUITE = """
[[cpu.grid]]
arch = ["test-ok", "test-raise"]
seq_len = [8, 16, 32]
set = {fail_at = 16}
"""
EXPECTED = {("test-ok", 8): "ok", ("test-ok", 16): "ok", ("test-ok", 32): "ok",
            ("test-raise", 8): "ok", ("test-raise", 16): "error", ("test-raise", 32): "error"}


@pytest.mark.parametrize("cluster", ["local", "debug"])
def test_slurm_path_runs_sweep_and_records_the_failing_cell(tmp_path, cluster):
    p = plan(write_suite(tmp_path, FAILING_SUITE), device="cpu", out=tmp_path / "run")
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
    execute(plan(write_suite(tmp_path, FAILING_SUITE), device="cpu", out=tmp_path / "loc"))
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


SLOW_SUITE = """
[[cpu.grid]]
arch = ["test-slow"]
seq_len = [1, 2, 3, 4, 5, 6, 7]
"""


def _job_log(out: Path) -> str:
    return "".join(f.read_text() for f in sorted((out / "slurm").glob("*/*_log.*")))


def test_preempted_job_requeues_unfinished_cells_and_killed_job_resumes(tmp_path):
    """One job: preempted (submitit's USR2) it requeues only its unfinished cells; then
    killed outright, its remaining cells are resubmitted by the next run of the sweep."""
    out = tmp_path / "run"
    p = plan(write_suite(tmp_path, SLOW_SUITE, budget_s=0.1), device="cpu", out=out)
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


def test_make_jobs_keeps_length_series_together():
    cells = [Cell.make(arch=a, workload="forward", seq_len=n, batch=1)
             for a in ("x", "y", "z") for n in (64, 8, 16)]
    jobs = make_jobs(cells, cells_per_job=4)
    assert [[(c.arch, c.seq_len) for c in j] for j in jobs] == [
        [("x", 8), ("x", 16), ("x", 64)], [("y", 8), ("y", 16), ("y", 64)],
        [("z", 8), ("z", 16), ("z", 64)]]
    jobs = make_jobs(cells, cells_per_job=2)  # a series longer than a job: split in order
    assert [[(c.arch, c.seq_len) for c in j] for j in jobs][:2] == [
        [("x", 8), ("x", 16)], [("x", 64)]]
    assert sorted(c.cell_id for j in jobs for c in j) == sorted(c.cell_id for c in cells)
    assert max(len(j) for j in jobs) == 2


def test_slurm_config_rejects_bad_values(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text('partition = "gpu"\ncells_per_jobs = 4\n')
    with pytest.raises(UsageError, match="cells_per_jobs.*valid choices.*cells_per_job"):
        SlurmConfig.load(path)
    with pytest.raises(UsageError, match="cluster 'pbs'.*slurm, local, debug"):
        SlurmConfig(cluster="pbs")
    with pytest.raises(UsageError, match="cells_per_job must be a positive integer, got 0"):
        SlurmConfig(cells_per_job=0)
    example = SlurmConfig.load(ROOT / "harness" / "run" / "launchers" / "slurm.example.toml")
    assert example.partition and example.gpus_per_job >= 1 and example.slurm


def test_status_counts_by_hand(tmp_path):
    cells = [Cell.make(arch="a", workload="forward", seq_len=n, batch=1) for n in range(1, 9)]
    store = RunDir(tmp_path).ensure()
    RunDir(tmp_path).write_plan(cells, {"suite": "t", "device": "cpu"})
    for c, s in zip(cells[:5], ["ok", "ok", "skipped", "error", "oom"], strict=True):
        store.append(Record.for_cell(c, s))
    # cells 6-8 have no record; a stale claim of a dead process is ignored
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / "running").mkdir()
    (tmp_path / "running" / "old.json").write_text(json.dumps(WorkerLease(
        Owner(socket.gethostname(), int(dead), 0.0), slots=1, records_before=0,
        cells=tuple(c.cell_id for c in cells)).to_dict()))
    st = sweep_status(tmp_path)
    assert (st.total, st.done, st.failed, st.running, st.pending) == (8, 3, 2, 0, 3)
    assert st.stale_workers == 1 and st.by_status == {"ok": 2, "skipped": 1, "error": 1, "oom": 1}
    # a live worker with 2 slots re-running the error cell and owning cells 6-8
    with store.lease([cells[3].cell_id] + [c.cell_id for c in cells[5:]], slots=2):
        st = sweep_status(tmp_path)
        assert (st.done, st.failed, st.running, st.pending, st.queued) == (3, 1, 2, 2, 2)
        store.append(Record.for_cell(cells[3], "ok"))  # the re-run cell finished
        store.append(Record.for_cell(cells[5], "ok"))
        st = sweep_status(tmp_path)
        assert (st.done, st.failed, st.running, st.pending, st.queued) == (5, 1, 2, 0, 0)
    st = sweep_status(tmp_path)  # the worker ended (without running cells 7-8)
    assert (st.done, st.failed, st.running, st.pending, st.workers) == (5, 1, 0, 2, 0)


def test_status_cli(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    bad = subprocess.run([sys.executable, "-m", "harness", "status", str(tmp_path / "nope")],
                         capture_output=True, text=True, cwd=ROOT, env=env)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
    cells = [Cell.make(arch="a", workload="forward", seq_len=n, batch=1) for n in (1, 2, 3)]
    RunDir(tmp_path).write_plan(cells, {"suite": "t", "device": "cpu"})
    RunDir(tmp_path).append(Record.for_cell(cells[0], "timeout"))
    res = subprocess.run([sys.executable, "-m", "harness", "status", "--json", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, env=env)
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert (d["total"], d["done"], d["failed"], d["pending"]) == (3, 0, 1, 2)


def test_launcher_config_without_slurm_is_rejected(tmp_path):
    p = plan(write_suite(tmp_path, FAILING_SUITE), device="cpu", out=tmp_path / "run")
    with pytest.raises(UsageError, match="--launcher-config applies to --launcher slurm"):
        execute(p, launcher_config=tmp_path / "x.toml")
    with pytest.raises(UsageError, match="unknown launcher 'pbs'.*local, slurm"):
        execute(p, launcher="pbs")


def test_status_counts_every_failure_status_as_failed(tmp_path):
    """One statuses tuple (store.records): a nonfinite cell is failed, not lost between
    done and failed (status used to know only error/oom/timeout)."""
    from harness.store.records import DONE, FAILED, STATUSES
    from harness.store.status import format_status

    assert set(DONE) | set(FAILED) == set(STATUSES) and not set(DONE) & set(FAILED)
    cells = [Cell.make(arch="a", workload="forward", seq_len=n, batch=1) for n in (1, 2, 3)]
    RunDir(tmp_path).write_plan(cells, {"suite": "t", "device": "cpu"})
    store = RunDir(tmp_path)
    for c, s in zip(cells, ["ok", "nonfinite", "timeout"], strict=True):
        store.append(Record.for_cell(c, s))
    st = sweep_status(tmp_path)
    assert (st.total, st.done, st.failed, st.pending) == (3, 1, 2, 0)
    assert "nonfinite 1" in format_status(st) and "timeout 1" in format_status(st)
