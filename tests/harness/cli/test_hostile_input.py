"""Hostile but fair input (issue 16, cases 7, 8, 9, 11): non-finite, contradictory or
mistyped values are one clear line and exit 2 before anything is written; more workers
than can run are capped, not divided into the memory cap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import PLUGIN, cli

TINY = ("--suite", "smoke", "--arch", "lmu-fft", "--workload", "forward", "--seq-len", "16",
        "--batch", "1")


def existing_run(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A run directory with a plan and a record: bad input must leave both as they are."""
    out = tmp_path / "run"
    out.mkdir()
    files = {"records.jsonl": '{"kept": true}\n',
             "plan.json": json.dumps({"cells": [{"cell_id": "a/b"}]})}
    for name, text in files.items():
        (out / name).write_text(text)
    return out, files


BAD_ARGS = [
    (["--set", "theta=inf"], "theta = inf", "finite"),
    (["--set", "theta=-inf"], "theta = -inf", "finite"),
    (["--set", "theta=nan"], "theta = nan", "finite"),
    (["--set", "theta=[1.0, nan]"], "theta = nan", "finite"),
    (["--timeout-s", "nan"], "nan", "timeout_s"),
    (["--mem-cap-gb", "nan"], "nan", "mem_cap_gb"),
    (["--mem-cap-gb", "inf"], "inf", "mem_cap_gb"),
    (["--budget-s", "inf"], "inf", "budget_s"),
    (["--budget-s", "nan"], "nan", "budget_s"),
    (["--budget-s", "5", "--timeout-s", "0.5"], "below the cell timeout", "0.5"),
    (["--timeout-s", "0.1"], "below the cell timeout", "--timeout-s"),  # suite budget 0.2
    (["--budget-s", "-1"], "-1", "> 0"),
    (["--timeout-s", "-3"], "-3", "> 0"),
    (["--mem-cap-gb", "-2"], "-2", "> 0"),
    (["--workers", "0"], "0", "positive integer"),
    (["--workers", "-4"], "-4", "positive integer"),
    (["--devices", "cuda:7"], "cuda:7", "cpu"),
    (["--devices", "tpu"], "tpu", "cpu"),
    (["--launcher-config", "x.toml"], "--launcher-config", "slurm"),
    (["--threads", "0"], "0", "usable cores"),
    (["--threads", "4096"], "4096", "usable cores"),
    (["--threads", "1", "--launcher", "slurm"], "--threads", "local"),
]


@pytest.mark.parametrize("args,bad,valid", BAD_ARGS, ids=[" ".join(a) for a, _, _ in BAD_ARGS])
def test_bad_values_exit_2_and_write_nothing(tmp_path, capsys, args, bad, valid):
    out, files = existing_run(tmp_path)
    code, _, err = cli(capsys, "run", *TINY, *args, "--out", str(out))
    assert code == 2, err
    assert "Traceback" not in err
    msg = err.strip().splitlines()[-1]
    assert msg.startswith("error:") and bad in msg and valid in msg, msg
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    assert all((out / n).read_text() == t for n, t in files.items())


def test_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "run", *TINY, "--out", "")
    assert code == 2 and "--out is empty" in err
    assert list(tmp_path.iterdir()) == []


def suite_file(tmp_path: Path, settings: str = "", cpu: str | None = None,
               grid: str = 'arch = ["lmu-fft"]\nseq_len = [16]', top: str = "") -> str:
    cpu = cpu if cpu is not None else ('[cpu]\npreset = "tiny"\nbatch = 1\n'
                                       f'workload = "forward"\n[[cpu.grid]]\n{grid}\n')
    path = tmp_path / "suite.toml"
    path.write_text(f'name = "t"\n{top}\n[settings]\n{settings}\n{cpu}')
    return str(path)


BAD_SUITES = [
    (dict(settings='budget_s = "fast"'), "budget_s", "'fast'"),
    (dict(settings="budget_s = nan"), "budget_s", "nan"),
    (dict(settings="timeout_s = -1"), "timeout_s", "-1"),
    (dict(settings="timeout_s = inf"), "timeout_s", "inf"),
    (dict(settings="mem_cap_gb = -1"), "mem_cap_gb", "-1"),
    (dict(settings="budget_s = 3\ntimeout_s = 2"), "budget", "below the cell timeout"),
    (dict(settings="target_rel_ci = 2"), "target_rel_ci", "< 1"),
    (dict(settings="seed = -1"), "seed", "-1"),
    (dict(settings="seed = 1.5"), "seed", "1.5"),
    (dict(settings='count_flops = "yes"'), "count_flops", "'yes'"),
    (dict(settings='plugins = "x.py"'), "plugins", "'x.py'"),
    (dict(top="cpu = 5", cpu=""), "[cpu]", "5"),
    (dict(cpu="[cpu]\ngrid = 5\n"), "cpu.grid", "5"),
    (dict(cpu="[cpu]\ngrid = [1, 2]\n"), "cpu.grid", "[1, 2]"),
    (dict(grid='arch = ["lmu-fft"]\nseq_len = [16]\nset = 5'), "set must be a table", "5"),
    (dict(grid='arch = ["lmu-fft"]\nseq_len = [16]\nset = {theta = inf}'), "theta = inf",
     "finite"),
    (dict(grid='architecture = ["lmu-fft"]\nseq_len = [16]'), "unknown grid field",
     "architecture"),
    (dict(top="description = 5"), "description", "5"),
]


@pytest.mark.parametrize("kw,bad,valid", BAD_SUITES, ids=[str(k) for k, _, _ in BAD_SUITES])
def test_suite_settings_get_the_command_lines_checks(tmp_path, capsys, kw, bad, valid):
    out, files = existing_run(tmp_path)
    code, _, err = cli(capsys, "run", "--suite", suite_file(tmp_path, **kw), "--out", str(out))
    assert code == 2, err
    assert "Traceback" not in err
    msg = err.strip().splitlines()[-1]
    assert bad in msg and valid in msg, msg
    assert all((out / n).read_text() == t for n, t in files.items())


def test_suite_directory_says_it_is_a_directory(tmp_path, capsys):
    code, _, err = cli(capsys, "run", "--suite", str(tmp_path), "--out", str(tmp_path / "o"))
    assert code == 2 and "is a directory" in err and "smoke" in err
    assert not (tmp_path / "o").exists()


def test_phantom_workers_are_capped_and_do_not_divide_the_memory_cap(tmp_path):
    from harness.run.launchers.local import cap_workers, usable_cores, worker_slots
    from harness.run.processes import default_mem_cap
    from harness.run.settings import RunSettings
    from harness.store.records import Cell
    from harness.store.rundir import RunDir

    cores = usable_cores()
    with pytest.warns(UserWarning, match=f"capped to {cores}"):
        slots, threads = worker_slots("cpu", 99, None)
    assert slots == ["cpu"] * cores
    store = RunDir(tmp_path / "run").ensure()
    cells = [Cell.make(arch="lmu-fft", workload="forward", seq_len=16, batch=1)]
    if cores > 1:
        with pytest.warns(UserWarning, match="only 1 cell"):
            slots, threads = cap_workers(slots, threads, cells, store, False)
    else:
        slots, threads = cap_workers(slots, threads, cells, store, False)
    assert slots == ["cpu"] and threads == 0
    whole = default_mem_cap(RunSettings(), 1)
    assert default_mem_cap(RunSettings(), len(slots)) == whole


@pytest.mark.slow
def test_workers_beyond_cells_measure_the_cell_under_the_whole_cap(tmp_path, capsys):
    """The reported case: --workers 99 on one 16-token cell is measured, not an OOM."""
    code, _, err = cli(capsys, "run", "--plugin", PLUGIN, "--suite", "smoke", "--arch", "test-ok",
                       "--workload", "forward", "--seq-len", "16", "--batch", "1", "--budget-s",
                       "0.02", "--workers", "99", "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert "capped" in err
    from harness.store.rundir import RunDir

    (rec,) = RunDir(tmp_path / "run").records()
    assert rec.status == "ok", rec.message
