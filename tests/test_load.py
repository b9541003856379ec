"""The one loader (store.load): schema-1 and schema-2 runs load alike; harness.results.load
(the README's API) is the same function."""

from __future__ import annotations

import json
from dataclasses import asdict

from harness.results import load
from harness.store.load import load_runs
from harness.store.records import Cell, Record
from harness.store.rundir import RunDir

SCHEMA_2_ONLY = ("kernel_path", "precision", "rounds", "sample_rounds", "round_order",
                 "contention", "contended", "thin")


def _record(n: int, samples: list[float]) -> Record:
    cell = Cell.make(arch="a", workload="forward", seq_len=n, batch=1, device="cpu")
    return Record.for_cell(cell, "ok", samples=samples, time_median_s=samples[0],
                           n_samples=len(samples), run_id="old")


def write_schema_1(root, records: list[Record]) -> None:
    """Lines as a schema-1 seqbench wrote them: no schema-2 field, schema 1."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "records.jsonl", "w") as f:
        for r in records:
            d = {k: v for k, v in asdict(r).items() if k not in SCHEMA_2_ONLY}
            f.write(json.dumps({**d, "schema": 1}) + "\n")
    (root / "env.json").write_text(json.dumps({"hostname": "old-host", "device_name": "cpu: X"}))


def test_a_schema_1_run_loads(tmp_path):
    write_schema_1(tmp_path / "v1", [_record(8, [1e-3] * 9), _record(16, [2e-3] * 3)])
    df = load_runs([tmp_path / "v1"]).set_index("seq_len")
    assert list(df["schema"]) == [1, 1]
    assert df.loc[16, "thin"] and not df.loc[8, "thin"]  # derived from the samples
    assert (df["kernel_path"] == "").all() and (df["rounds"] == 0).all()  # schema-2 defaults
    assert set(df["device_label"]) == {"CPU: X"} and set(df["hostname"]) == {"old-host"}


def test_schema_1_and_2_runs_load_together(tmp_path):
    write_schema_1(tmp_path / "v1", [_record(8, [1e-3] * 9)])
    RunDir(tmp_path / "v2").ensure().append(_record(8, [1.5e-3] * 9))
    df = load_runs([tmp_path / "v1", tmp_path / "v2"])
    assert sorted(df["schema"]) == [1, 2] and len(df) == 2
    assert sorted(df["time_median_s"]) == [1e-3, 1.5e-3]


def test_the_readme_api_is_the_one_loader(tmp_path):
    assert load is load_runs
