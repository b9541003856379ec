"""The one loader (store.load): schema-1 and schema-2 runs load alike; harness.results.load
(the README's API) is the same function."""

from __future__ import annotations

import json

from harness.results import load
from harness.store.load import load_runs
from harness.store.records import Record
from harness.store.rundir import RunDir
from tests.helpers import record, write_schema_1


def _record(n: int, samples: list[float]) -> Record:
    return record("a", n, samples=samples, time_median_s=samples[0], run_id="old")


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


def test_schema_1_records_still_load(tmp_path):
    """A run written before schema 2 loads; the schema-2 fields take their defaults."""

    from harness.store.records import SCHEMA_VERSION
    from harness.store.rundir import RunDir

    rec = {"arch": "a", "workload": "train", "seq_len": 8, "batch": 1, "preset": "small",
           "device": "cpu", "dtype": "float32", "compile": "none", "overrides": {},
           "cell_id": "a/train/n8/b1/float32/x", "status": "ok", "schema": 1,
           "time_median_s": 0.5, "samples": [0.5, 0.5]}
    (tmp_path / "records.jsonl").write_text(json.dumps(rec) + "\n")
    [r] = RunDir(tmp_path).records()
    assert SCHEMA_VERSION == 2
    assert r.schema == 1 and r.time_median_s == 0.5
    assert r.kernel_path == "" and r.sample_rounds == [] and r.thin is False
