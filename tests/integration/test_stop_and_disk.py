"""Stopping a run and a full disk (issue 16, cases 4, 5, 6): SIGTERM is handled like
Ctrl-C and says how to resume; no cell process outlives its runner, even after kill -9;
a full disk mid-run is one line, not a traceback (that a record line is written whole or
not at all: tests/harness/store/test_rundir.py)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from harness.store.rundir import RunDir, StoreWriteError
from tests.helpers import PLUGIN, harness, harness_cmd, start, write_suite

HANGING = "SEQBENCH_TEST_HANGING"  # tests/fault_adapters.py: where the hanging cell says its pid


def hang_suite(tmp_path: Path) -> str:
    """test-hang at n=2 is measured at once (one round: its record is final), at n=4 it
    hangs until its 60 s timeout."""
    return write_suite(tmp_path, '[[cpu.grid]]\narch = ["test-hang"]\nseq_len = [2, 4]\n'
                       'set = {fail_at = 4}\n', budget_s=0.02, timeout_s=60, mem_cap_gb=None,
                       rounds=1)


def start_runner(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    """The runner of ``hang_suite`` in its own session, SIGINT and SIGTERM at their
    default (``helpers.start``) whatever this process inherited."""
    out = tmp_path / "run"
    log = tmp_path / "log.txt"
    hanging = tmp_path / "hanging"
    hanging.mkdir()
    with open(log, "w") as f:
        proc = start(harness_cmd("run", "--suite", hang_suite(tmp_path), "--out", out), log=f,
                     **{HANGING: str(hanging)})
    return proc, out, log


def wait_for_hanging_cell(proc: subprocess.Popen, out: Path,
                          log: Path) -> tuple[list[psutil.Process], psutil.Process, int]:
    """Once the hanging cell hangs: every descendant of the runner, the hanging cell, and
    how many records are stored (n=2's, unless a neighbour's burst gave it an extra round,
    which runs after n=4's round 0; nothing is stored while n=4 hangs, one worker being
    busy). The hanging cell names itself (``tests/fault_adapters.py``), so the cell of a
    stored record, maybe still on its way out, is never taken for it."""
    deadline = time.monotonic() + 120
    runner = psutil.Process(proc.pid)
    while time.monotonic() < deadline:
        hanging = {int(p.name) for p in (out.parent / "hanging").iterdir()}
        family = runner.children(recursive=True)
        cell = next((p for p in family if p.pid in hanging), None)
        if cell is not None:
            return family, cell, len(RunDir(out).read_dicts())
        assert proc.poll() is None, log.read_text()
        time.sleep(0.1)
    raise AssertionError(f"no hanging cell after 120 s: {log.read_text()}")


def _is_cell(p: psutil.Process) -> bool:
    try:
        return p.pid == os.getsid(p.pid)  # a cell runs in its own session
    except (psutil.Error, OSError):
        return False


def survivors(procs: list[psutil.Process], within_s: float = 15.0) -> list[psutil.Process]:
    deadline = time.monotonic() + within_s
    alive = procs
    while time.monotonic() < deadline:
        alive = []
        for p in procs:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.Error:
                pass
        if not alive:
            return []
        time.sleep(0.1)
    return alive


def stopped(tmp_path: Path, stop) -> tuple[int, str, list[psutil.Process], int]:
    """The runner of ``hang_suite``, ``stop(runner, family, cell)`` once its cell hangs, and
    its exit within 60 s: exit code, output, the runner's descendants and how many records
    were stored before. A runner still alive then is killed with its group."""
    proc, out, log = start_runner(tmp_path)
    try:
        family, cell, saved = wait_for_hanging_cell(proc, out, log)
        stop(proc, family, cell)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return code, log.read_text(), family, saved


def test_sigterm_stops_like_ctrl_c_kills_cells_and_says_how_to_resume(tmp_path):
    def sigterm(runner, family, cell):
        assert _is_cell(cell)
        runner.send_signal(signal.SIGTERM)  # the runner only, as a scheduler would

    code, text, family, saved = stopped(tmp_path, sigterm)
    out = tmp_path / "run"
    assert code == 143, text
    assert "Traceback" not in text
    assert f"terminated (SIGTERM): {saved} of 2 cells saved in" in text
    assert str(out / "records.jsonl") in text and "same command" in text
    left = survivors(family)
    assert not left, [(p.pid, p.name()) for p in left]


def test_sigint_says_where_the_records_are(tmp_path):
    code, text, family, saved = stopped(
        tmp_path, lambda runner, family, cell: runner.send_signal(signal.SIGINT))
    assert code == 130 and "Traceback" not in text, text
    assert f"interrupted: {saved} of 2 cells saved in" in text and "resume" in text
    assert not survivors(family)


def test_kill_9_of_the_runner_takes_its_cells_along(tmp_path):
    """The runner killed outright (no handler runs): the cell, in its own session, dies
    with the forkserver (parent-death signal), and the resource tracker ends too."""
    proc, out, log = start_runner(tmp_path)
    try:
        family, _, _ = wait_for_hanging_cell(proc, out, log)
        proc.kill()
        proc.wait(timeout=30)
        left = survivors(family)
    finally:
        for p in family:
            try:
                p.kill()
            except psutil.Error:
                pass
    assert not left, [(p.pid, p.cmdline()[-3:]) for p in left]


@pytest.mark.parametrize("victim", ["forkserver", "cell"])
def test_a_cell_killed_from_outside_is_not_recorded_as_its_failure(tmp_path, victim):
    """The forkserver killed (the cell's exit status is lost: multiprocessing reads 255),
    or the cell stopped with SIGTERM (a Slurm job cancelled or requeued signals all its
    processes): a fault of the harness or the machine, not the architecture's. One line,
    exit 1, no record for the cell, so the same command measures it again."""
    def kill(runner, family, cell):
        if victim == "cell":
            cell.send_signal(signal.SIGTERM)
        else:
            # the server, not the cell forked from it (whose command line is the same)
            next(p for p in family
                 if not _is_cell(p) and "forkserver" in " ".join(p.cmdline())).kill()

    code, text, family, saved = stopped(tmp_path, kill)
    out = tmp_path / "run"
    assert code == 1 and "Traceback" not in text, text
    why = "forkserver died" if victim == "forkserver" else "stopped from outside (SIGTERM)"
    assert why in text and "run the same command again" in text, text
    assert [d["seq_len"] for d in RunDir(out).read_dicts()] == [2] * saved  # n=4: none
    assert not survivors(family)


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:  # gone, or a zombie meanwhile
        return ""


def test_a_stopped_forkserver_does_not_hang_the_runner_at_exit(tmp_path):
    """The forkserver stopped (SIGSTOP) while a cell runs its rounds: the rounds still
    arrive (over the cell's own pipe), but the server reports no process's end, and
    multiprocessing joins every child it has not heard of at exit without a timeout. The
    runner writes the record, kills the stopped server and exits 0."""
    out = tmp_path / "run"
    log = tmp_path / "log.txt"
    cmd = harness_cmd("run", "--plugin", PLUGIN, "--arch", "test-ok", "--workload", "forward",
                      "--seq-len", "8", "--batch", "1", "--preset", "tiny", "--budget-s", "1.5",
                      "--rounds", "3", "--device", "cpu", "--out", out)
    with open(log, "w") as f:
        proc = start(cmd, log=f)
    server = None
    try:
        deadline = time.monotonic() + 120
        rounds = out / "rounds.jsonl"
        while not (rounds.exists() and rounds.read_text().strip()):  # its process runs
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        server = next(p for p in psutil.Process(proc.pid).children(recursive=True)
                      if not _is_cell(p) and "forkserver" in _cmdline(p))
        server.send_signal(signal.SIGSTOP)
        assert not (out / "records.jsonl").exists()  # stopped before the run's end
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the runner hangs on its stopped forkserver")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the stopped server with it
    text = log.read_text()
    assert code == 0 and "Traceback" not in text, text
    (rec,) = RunDir(out).records()
    assert rec.status == "ok" and rec.rounds >= 3  # more if a neighbour contended it
    assert not survivors([server], within_s=5)  # killed, not left stopped


def test_full_disk_mid_run_is_one_line_and_the_rerun_resumes(tmp_path, capsys, monkeypatch):
    from harness.cli import main

    args = ["run", "--plugin", PLUGIN, "--suite", "smoke", "--arch", "test-ok", "--workload",
            "forward", "--seq-len", "2,3,4,5", "--batch", "1", "--budget-s", "0.02",
            "--out", str(tmp_path / "run")]
    real = RunDir._append_line
    appended = {"n": 0}

    def filling(self, path, text):
        if path.name == "records.jsonl":
            appended["n"] += 1
            if appended["n"] > 2:  # the third record finds the disk full
                raise StoreWriteError(path, OSError(errno.ENOSPC, "No space left on device"))
        return real(self, path, text)

    monkeypatch.setattr(RunDir, "_append_line", filling)
    code = main(args)
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"disk full: 2 of 4 cells saved in {tmp_path / 'run' / 'records.jsonl'}; free space "
        "and rerun the same command to resume")
    monkeypatch.undo()
    assert main(args) == 0
    recs = RunDir(tmp_path / "run").records()
    assert sorted(r.seq_len for r in recs) == [2, 3, 4, 5]


def test_processes_a_cell_starts_end_with_it_after_a_normal_finish(tmp_path):
    """A cell that leaves a child running (here ``sleep 1234``) finishes ok, and its child
    is killed with its process group instead of living on with parent 1."""
    out = tmp_path / "run"
    res = harness("run", "--plugin", PLUGIN, "--arch", "test-spawn", "--workload", "forward",
                  "--seq-len", "2", "--batch", "1", "--preset", "tiny", "--set", "fail_at=234",
                  "--budget-s", "0.02", "--rounds", "2", "--device", "cpu", "--out", out)
    assert res.returncode == 0, res.stderr
    assert [d["status"] for d in RunDir(out).read_dicts()] == ["ok"]
    left = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "1234"]]
    assert not survivors(left, within_s=5), "a cell's child outlived it"


def test_the_memory_cap_counts_a_cells_own_memory_not_torchs_shared_pages(tmp_path):
    """A cell's resident set holds ~220 MB of torch pages it shares with the forkserver;
    a 0.2 GiB cap must judge the cell's own pages (tens of MB), not call it an OOM."""
    res = harness("run", "--arch", "lmu-fft", "--workload", "forward", "--seq-len", "16",
                  "--batch", "1", "--budget-s", "0.2", "--device", "cpu", "--mem-cap-gb", "0.2",
                  "--out", tmp_path / "run")
    assert res.returncode == 0, res.stderr
    assert [d["status"] for d in RunDir(tmp_path / "run").read_dicts()] == ["ok"]
