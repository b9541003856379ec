"""A run directory whose layout is not what the store expects (something in the place of
a claim, ``claims``/``running`` as files, a full disk while claiming, a mistyped lease, an
``--out`` that cannot be created): one line naming the path, never a traceback, nothing
left behind (issue 22)."""

from __future__ import annotations

import errno
import json
import os
import warnings

import pytest

from harness.errors import UsageError
from harness.store import claims
from harness.store.claims import claim_path
from harness.store.files import StoreWriteError
from harness.store.records import Cell, Record
from harness.store.rundir import RunDir
from harness.store.status import sweep_status
from tests.helpers import cli

ARGS = ("run", "--arch", "lmu", "--workload", "forward", "--seq-len", "8", "--batch", "1",
        "--preset", "tiny", "--budget-s", "0.05", "--device", "cpu", "--rounds", "1")


def test_a_folder_where_a_claim_goes_is_named_not_deleted(tmp_path):
    store = RunDir(tmp_path).ensure()
    path = claim_path(tmp_path, "x")
    path.mkdir(parents=True)
    (path / "keep.txt").write_text("mine")
    with pytest.raises(StoreWriteError, match="not a claim file.*move it away"):
        store.claim_cell("x")
    assert (path / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["claims", "running"])
def test_a_file_where_a_folder_goes_is_refused_before_the_run(tmp_path, capsys, name):
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_text("not a folder")
    with pytest.raises(UsageError, match=f"{name}.*is a file"):
        RunDir(out).ensure()
    with pytest.raises(StoreWriteError, match="not a folder"):
        RunDir(out).claim_cell("x") if name == "claims" else RunDir(out).lease(["x"], 1).__enter__()
    code, _, err = cli(capsys, *ARGS, "--out", str(out))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "is a file" in err
    assert "seqbench suite" not in err  # refused before the banner
    assert sorted(p.name for p in out.iterdir()) == [name]  # nothing written


def test_a_full_disk_while_claiming_leaves_no_empty_claim(tmp_path, monkeypatch):
    store = RunDir(tmp_path).ensure()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(claims.os, "fsync", full)
    with pytest.raises(StoreWriteError) as info:
        store.claim_cell("x")
    assert info.value.full
    monkeypatch.undo()
    assert not claim_path(tmp_path, "x").exists()
    assert store.claim_cell("x") is not None  # nothing blocks the cell afterwards


@pytest.mark.slow
def test_a_claim_that_cannot_be_written_says_why_and_not_free_space(tmp_path, capsys,
                                                                    monkeypatch):
    out = tmp_path / "run"
    real_open = os.open

    def refuse(path, flags, *a):
        if "claims" in str(path) and flags & os.O_EXCL:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *a)

    monkeypatch.setattr(claims.os, "open", refuse)
    code, _, err = cli(capsys, *ARGS, "--out", str(out))
    assert code == 1 and "Permission denied" in err and "free space" not in err
    assert "fix that and rerun" in err and "Traceback" not in err


def test_mistyped_leases_are_ignored_with_a_warning(tmp_path):
    store = RunDir(tmp_path).ensure()
    cell = Cell.make(arch="a", workload="forward", seq_len=1, batch=1)
    store.write_plan([cell], {"suite": "t", "device": "cpu"})
    (tmp_path / "running").mkdir()
    good = {"host": "h", "pid": 1, "create_time": 0.0, "slots": 1, "records_before": 0,
            "cells": [cell.cell_id]}
    for i, bad in enumerate([{"slots": "2"}, {"cells": "abc"}, {"pid": None},
                             {"records_before": -1}, {"started": [1]}]):
        (tmp_path / "running" / f"w{i}.json").write_text(json.dumps({**good, **bad}))
    (tmp_path / "running" / "list.json").write_text("[1, 2]")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        st = sweep_status(tmp_path)
    assert (st.workers, st.stale_workers, st.pending) == (0, 0, 1)
    assert sum("not a worker lease" in str(w.message) for w in seen) == 5
    store.append(Record.for_cell(cell, "ok"))
    assert sweep_status(tmp_path).done == 1


def test_an_out_that_cannot_be_created_leaves_no_parent(tmp_path, capsys):
    out = tmp_path / "a" / "b" / ("x" * 300)  # longer than a file name may be
    with pytest.raises(UsageError, match="cannot create results directory.*too long"):
        RunDir(out).ensure()
    assert not (tmp_path / "a").exists()
    code, _, err = cli(capsys, *ARGS, "--out", str(out))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "seqbench suite" not in err
    assert list(tmp_path.iterdir()) == []
