"""The one loader (store.load): schema-1 and schema-2 runs load alike; harness.results.load
(the README's API) is the same function."""

from __future__ import annotations

import json

import pytest

from harness.errors import UsageError
from harness.results import load
from harness.store.load import RUN_STRIDE, load_runs
from harness.store.records import Record
from harness.store.rundir import RunDir
from tests.helpers import ENV, record, write_run, write_schema_1


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


def _repeat(root, base_s: float, *, status: str = "ok", contention=None, **kw):
    """A run of cells a (n = 8) and b (n = 8, 16): a's samples ``base_s`` in rounds 0 and 1,
    the last one contended when ``contention`` says so."""
    a = (record("a", 8, samples=[base_s, base_s, 3 * base_s, base_s, base_s, base_s],
                sample_rounds=[0, 0, 0, 1, 1, 1], threads=1, peak_mem_bytes=int(base_s * 1e6),
                contention=contention or [], time_per_token_s=base_s / 8) if status == "ok"
         else record("a", 8, status, **kw))
    b = [record("b", 8, samples=[1.0] * 5), record("b", 16, samples=[2.0] * 5)]
    return write_run(root, [a, *b], env={**ENV, "cpu_count": 1})


def test_pooled_repeats_are_one_row_per_cell_with_runs_as_the_top_round_level(tmp_path):
    one = _repeat(tmp_path / "1", 1e-3)
    two = _repeat(tmp_path / "2", 2e-3, contention=[0, 0, 0, 0, 0, 5])
    df = load_runs([one, two], pool=True).set_index(["arch", "seq_len"])
    assert len(df) == 3 and set(df["device_label"]) == {"CPU: test"}  # no @run suffixes
    a = df.loc[("a", 8)]
    # run 2's contended sample is dropped (5 quiet ones are enough), run 1 keeps all six
    assert a["samples"] == [1e-3, 1e-3, 3e-3, 1e-3, 1e-3, 1e-3, 2e-3, 2e-3, 6e-3, 2e-3, 2e-3]
    assert a["sample_rounds"] == [0, 0, 0, 1, 1, 1] + [RUN_STRIDE] * 3 + [RUN_STRIDE + 1] * 2
    assert a["rounds"] == 4 and a["n_samples"] == 11 and a["stop_reason"] == "pooled"
    assert a["time_median_s"] == 2e-3 and a["time_min_s"] == 1e-3  # 1 1 1 1 1 [2] 2 2 2 3 6
    assert a["time_per_token_s"] == 2e-3 / 8  # the pooled median's
    assert a["peak_mem_bytes"] == 2000  # the larger run's
    assert a["pooled_dirs"] == [str(one), str(two)]
    apart = load_runs([one, two])
    assert len(apart) == 6 and apart["device_label"].nunique() == 2  # without --pool


def test_a_cell_that_failed_in_any_pooled_run_shows_the_failure(tmp_path):
    one = _repeat(tmp_path / "1", 1e-3)
    two = _repeat(tmp_path / "2", 1e-3, status="oom", message="out of memory")
    a = load_runs([one, two], pool=True).set_index(["arch", "seq_len"]).loc[("a", 8)]
    assert a["status"] == "oom" and a["samples"] == []
    assert a["message"] == f"in {two} (2 runs pooled): out of memory"


def test_a_cell_of_one_run_passes_through_a_pool_unchanged(tmp_path):
    one = _repeat(tmp_path / "1", 1e-3)
    two = write_run(tmp_path / "2", [record("c", 8, samples=[4.0] * 5)],
                    env={**ENV, "cpu_count": 1})
    df = load_runs([one, two], pool=True).set_index(["arch", "seq_len"])
    alone = load_runs([one]).set_index(["arch", "seq_len"]).loc[("a", 8)]
    a = df.loc[("a", 8)]
    assert a["samples"] == alone["samples"] and a["sample_rounds"] == alone["sample_rounds"]
    assert df.loc[("c", 8), "pooled_dirs"] == [str(two)]


def test_pooling_a_task_cell_measured_twice_is_refused_in_one_line(tmp_path):
    task = record("a", 8, workload="psdigits", metrics={"accuracy": 0.9})
    one = write_run(tmp_path / "1", [task], env={**ENV, "cpu_count": 1})
    two = write_run(tmp_path / "2", [task], env={**ENV, "cpu_count": 1})
    with pytest.raises(UsageError, match=r"--pool pools timed cells; a/psdigits/\S+ has no "
                                         r"samples and is in 2 runs: repeat a task with "
                                         r"other seeds \(--set seed=N\)"):
        load_runs([one, two], pool=True)
