"""RunDir owns every file of a run directory; per-host environments are read back; a record
is written whole or not at all (issue 16, case 6)."""

from __future__ import annotations

import errno
import json
import os

import pytest

from harness.store.load import load_run
from harness.store.records import Cell, Record
from harness.store.rundir import RunDir, StoreWriteError
from tests.helpers import record

H100 = {"hostname": "node1", "device_name": "NVIDIA H100 80GB HBM3", "torch": "2.13.0"}
A100 = {"hostname": "node2", "device_name": "NVIDIA A100-SXM4-40GB", "torch": "2.13.0"}


def _ok(n: int, host: str) -> Record:
    return record("a", n, samples=[1e-3] * 8, n_samples=0, device="cuda", host=host)


def timed(n: int) -> Record:
    return record("lmu", n, samples=[1e-3] * 50)


def test_every_record_is_labelled_with_its_own_hosts_device(tmp_path):
    run = RunDir(tmp_path).ensure()
    run.note_env(H100)  # the first job: env.json
    run.note_env(A100)  # a second Slurm job on another node: envs/node2.json only
    assert json.loads((tmp_path / "env.json").read_text())["hostname"] == "node1"
    assert run.host_env("node2")["device_name"] == A100["device_name"]
    for n, host in ((64, "node1"), (128, "node2"), (256, "")):
        run.append(_ok(n, host))
    df = load_run(tmp_path).set_index("seq_len")
    assert df.loc[64, "device_label"] == "NVIDIA H100 80GB HBM3"
    assert df.loc[128, "device_label"] == "NVIDIA A100-SXM4-40GB"  # was the first host's
    assert (df.loc[128, "hostname"], df.loc[64, "hostname"]) == ("node2", "node1")
    # a record without a host (older runs) falls back to env.json
    assert df.loc[256, "device_label"] == "NVIDIA H100 80GB HBM3"
    assert df.loc[256, "hostname"] == "node1"


def test_a_damaged_host_env_falls_back_with_a_warning(tmp_path, recwarn):
    run = RunDir(tmp_path).ensure()
    run.note_env(H100)
    (tmp_path / "envs").mkdir(exist_ok=True)
    (tmp_path / "envs" / "node3.json").write_text("{not json")
    assert run.host_env("node3") == run.env()
    assert any("node3.json" in str(w.message) for w in recwarn.list)


def test_plan_and_claims_live_in_the_run_directory(tmp_path):
    run = RunDir(tmp_path).ensure()
    cells = [Cell.make(arch="a", workload="forward", seq_len=n, batch=1) for n in (1, 2)]
    run.write_plan(cells[:1], {"suite": "s", "device": "cpu"})
    run.write_plan(cells, {"suite": "s", "device": "cpu"})  # a resume adds, never drops
    assert [d["cell_id"] for d in run.plan()["cells"]] == [c.cell_id for c in cells]
    with run.lease([cells[1].cell_id], slots=1) as c:
        assert [x.cells for x in run.leases()] == [(cells[1].cell_id,)]
        assert c.owner.alive() is True
    assert run.leases() == []
    assert run.profiles_path == tmp_path / "profiles"


@pytest.mark.parametrize("how", ["short-then-enospc", "enospc", "zero", "fsync"])
def test_a_record_is_written_whole_or_not_at_all(tmp_path, monkeypatch, how):
    store = RunDir(tmp_path).ensure()
    store.append(timed(1))
    before = store.records_path.read_bytes()
    real_write, real_fsync = os.write, os.fsync
    calls = {"n": 0}

    def write(fd, data):
        calls["n"] += 1
        if how == "zero":
            return 0
        if how == "short-then-enospc" and calls["n"] == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))  # the disk fills mid-line
        if how == "fsync":
            return real_write(fd, data)
        raise OSError(errno.ENOSPC, "No space left on device")

    def fsync(fd):
        if how == "fsync":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr("harness.store.rundir.os.write", write)
    monkeypatch.setattr("harness.store.rundir.os.fsync", fsync)
    with pytest.raises(StoreWriteError) as info:
        store.append(timed(2))
    assert info.value.full
    monkeypatch.undo()
    assert store.records_path.read_bytes() == before  # no half line left behind
    store.append(timed(3))  # and the file takes whole lines again afterwards
    assert [r.seq_len for r in store.records()] == [1, 3]
