"""The ceilings each machine stores in its environment when a run starts: one entry per
dtype of its cells on its device, with the run's thread count and float32 policy; a
measurement that fails or is switched off leaves a note, never a failed run."""

from __future__ import annotations

import pytest

from harness.measure import ceilings as cm
from harness.run.launchers.base import Batch, environment
from harness.run.settings import RunSettings
from harness.store.records import Cell
from harness.store.rundir import RunDir


def batch(tmp_path, dtypes=("float32",), device="cpu") -> Batch:
    cells = [Cell.make(arch="a", workload="forward", seq_len=8, batch=1, dtype=d, device=device)
             for d in dtypes]
    cells.append(Cell.make(arch="a", workload="forward", seq_len=8, batch=1, device="cuda",
                           dtype="float16"))  # another device's cell: not this machine's roofs
    return Batch(cells, RunSettings(budget_s=0.05, precision="strict"), RunDir(tmp_path))


def test_each_dtype_of_the_machines_cells_gets_its_ceilings(tmp_path, monkeypatch):
    asked = []

    def fake(device, dtype, threads, precision, *, device_name=None):
        asked.append((device, dtype, threads, precision))
        return cm.Ceilings(device=device, device_name=device_name or "", dtype=dtype,
                           threads=threads, precision=precision, peak_flops=1e11,
                           bandwidth=1e10, cache_bandwidth=5e10, torch="t")

    monkeypatch.setattr(cm, "ceilings", fake)
    env = environment("cpu", batch(tmp_path, ("float32", "bfloat16")), threads=3)
    assert sorted(asked) == [("cpu", "bfloat16", 3, "strict"), ("cpu", "float32", 3, "strict")]
    assert [c["dtype"] for c in env["ceilings"]] == ["bfloat16", "float32"]
    assert "ceilings_note" not in env


@pytest.mark.parametrize("failure, note", [
    (RuntimeError("no memory"), "not measured (RuntimeError: no memory)"),
    (None, "not measured (SEQBENCH_CEILINGS=off)"),
])
def test_a_missing_ceiling_is_a_note_not_a_failed_run(tmp_path, monkeypatch, failure, note):
    def fake(*a, **k):
        if failure is not None:
            raise failure
        return None

    monkeypatch.setattr(cm, "ceilings", fake)
    env = environment("cpu", batch(tmp_path), threads=1)
    assert env["ceilings"] == []
    assert env["ceilings_note"] == f"float32: {note}"
