"""Property-based tests (issue 16, case 12): whatever truncation, corruption or wrong types
a run directory's files (records.jsonl, env.json, plan.json) or a suite's TOML hold, every
reader answers with data or one clear UsageError: never a traceback, never a lost valid
record, never a duplicated one."""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import UsageError
from harness.store.records import Cell, Record
from harness.store.rundir import RunDir
from harness.store.status import sweep_status

FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

CELLS = [Cell.make(arch=a, workload="forward", seq_len=n, batch=1, preset="tiny")
         for a in ("lmu", "lmu-fft") for n in (8, 16, 32)]


def valid_line(i: int, cell: Cell) -> str:
    samples = [1e-3 * (1 + 0.1 * k) for k in range(1 + i % 4)]
    return Record.for_cell(cell, "ok" if i % 5 else "error", samples=samples,
                           n_samples=len(samples), time_median_s=samples[0]).to_json()


JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**12),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda c: st.lists(c, max_size=3)
                           | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=6)
FIELDS = sorted(json.loads(valid_line(1, CELLS[0])))


@st.composite
def damaged_line(draw, i: int, cell: Cell) -> str:
    """A line that is not a valid record of ``cell``: cut, garbage, or a field wrong."""
    line = valid_line(i, cell)
    how = draw(st.sampled_from(["cut", "garbage", "wrong-type", "missing", "not-object"]))
    if how == "cut":
        return line[:draw(st.integers(0, len(line) - 2))]
    if how == "garbage":
        return draw(st.binary(min_size=1, max_size=40)).decode("latin-1").replace("\n", " ")
    if how == "not-object":
        return json.dumps(draw(st.one_of(JSON_SCALARS, st.lists(JSON_SCALARS, max_size=3))))
    d = json.loads(line)
    key = draw(st.sampled_from(["status", "cell_id", "seq_len", "samples", "time_median_s",
                                "overrides", "noisy", "n_samples"]))
    if how == "missing" and key in ("status", "cell_id", "seq_len", "overrides"):
        del d[key]
    else:
        d[key] = draw(st.sampled_from([
            "x", [1, "y"], {"a": 1}, None if key in ("status", "seq_len") else "7", True,
            1.5 if key in ("seq_len", "n_samples", "status") else "1.5",
        ]))
        if Record.problem(d) is None:  # the draw happened to be valid: break it for sure
            d["status"] = "not-a-status"
    return json.dumps(d)


@st.composite
def records_file(draw) -> tuple[bytes, list[str]]:
    """``(file bytes, the valid lines in it)``: valid records of the cells (some cells
    recorded twice, as a resume does) mixed with damaged lines, maybe cut at the end."""
    lines, valid = [], []
    n = draw(st.integers(0, 14))
    for i in range(n):
        cell = CELLS[draw(st.integers(0, len(CELLS) - 1))]
        if draw(st.booleans()):
            line = valid_line(i, cell)
            valid.append(line)
        else:
            line = draw(damaged_line(i, cell))
        lines.append(line)
    data = "".join(x + "\n" for x in lines).encode("utf-8", "surrogateescape")
    if valid and draw(st.booleans()):  # a writer killed mid-line: the last line cut
        last = draw(st.integers(1, len(valid[-1]) - 1))
        data += valid[-1][:last].encode()
    return data, valid


def readers(root: Path) -> None:
    """Everything that reads a run directory, as the commands do."""
    from harness.store.load import load_run

    store = RunDir(root)
    store.records()
    store.latest_by_cell()
    store.env()
    store.plan()
    st_ = sweep_status(root)
    assert st_.total >= len(st_.by_status) - 1
    assert st_.done + st_.failed + st_.pending + st_.running == st_.total
    try:
        load_run(root)
    except UsageError:
        pass  # e.g. no valid record at all: one clear line


@FAST
@given(records_file())
def test_records_jsonl_never_loses_or_duplicates_a_valid_record(case):
    data, valid = case
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = Path(tmp)
        (root / "records.jsonl").write_bytes(data)
        got = [r.to_json() for r in RunDir(root).records()]
        assert got == [Record.from_dict(json.loads(x)).to_json() for x in valid]
        latest = RunDir(root).latest_by_cell()
        assert len(latest) == len({json.loads(x)["cell_id"] for x in valid})
        readers(root)
        # a resume appends whole lines after whatever is there, and reads them all back
        extra = Record.for_cell(CELLS[0], "ok", samples=[1.0], n_samples=1, time_median_s=1.0)
        RunDir(root).append(extra)
        again = [r.to_json() for r in RunDir(root).records()]
        assert again == got + [extra.to_json()]


@FAST
@given(st.one_of(st.binary(max_size=60).map(lambda b: ("bytes", b)),
                 JSON_VALUES.map(lambda v: ("json", v))),
       st.sampled_from(["env.json", "plan.json"]))
def test_damaged_env_and_plan_are_read_as_empty_or_as_they_are(content, name):
    kind, value = content
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = Path(tmp)
        for i, cell in enumerate(CELLS[:3]):
            RunDir(root).append(Record.from_dict(json.loads(valid_line(i + 1, cell))))
        raw = value if kind == "bytes" else json.dumps(value).encode()
        (root / name).write_bytes(raw)
        store = RunDir(root)
        env, plan = store.env(), store.plan()
        assert isinstance(env, dict) and isinstance(plan, dict)
        assert all(isinstance(c.get("cell_id"), str) for c in plan.get("cells", []))
        readers(root)
        assert len(store.records()) == 3  # the records stand whatever the other files say
        store.write_plan(CELLS, {"suite": "t"})  # a resume rewrites a damaged file, keeps
        assert {c["cell_id"] for c in RunDir(root).plan()["cells"]} >= {  # the valid part
            c.cell_id for c in CELLS}


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


TOML_SCALARS = st.one_of(st.booleans(), st.integers(-3, 300), st.text(max_size=6),
                         st.floats(allow_nan=True, allow_infinity=True, width=32),
                         st.sampled_from(["lmu", "lmu-fft", "forward", "train", "tiny",
                                          "float32", "none", "fast"]))
TOML_VALUES = st.one_of(TOML_SCALARS, st.lists(TOML_SCALARS, max_size=3),
                        st.dictionaries(st.sampled_from(["order", "theta", "x"]), TOML_SCALARS,
                                        max_size=2))
SETTING_KEYS = ["budget_s", "timeout_s", "mem_cap_gb", "seed", "target_rel_ci",
                "noise_threshold", "count_flops", "plugins", "rounds", "warm_mem_gb", "precision",
                "bogus"]
GRID_KEYS = ["arch", "workload", "seq_len", "batch", "preset", "dtype", "compile", "set",
             "architecture"]


@st.composite
def suite_text(draw) -> str:
    lines = ['name = "t"']
    if draw(st.booleans()):
        lines.append(f"description = {toml_value(draw(TOML_SCALARS))}")
    settings_ = draw(st.dictionaries(st.sampled_from(SETTING_KEYS), TOML_VALUES, max_size=3))
    if draw(st.booleans()):
        lines.append(f"cpu = {toml_value(draw(TOML_VALUES))}")
    else:
        base = {"arch": "lmu-fft", "workload": "forward", "seq_len": 8, "batch": 1,
                "preset": "tiny"}
        grid = {**base, **draw(st.dictionaries(st.sampled_from(GRID_KEYS), TOML_VALUES,
                                               max_size=2))}
        lines.append("[cpu]")
        lines += [f"{k} = {toml_value(v)}" for k, v in grid.items()
                  if draw(st.booleans()) or k in base]
    lines.insert(1, "[settings]\n" + "\n".join(f"{k} = {toml_value(v)}"
                                               for k, v in settings_.items()))
    text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 5)) == 0:  # sometimes cut anywhere
        text = text[:draw(st.integers(0, len(text)))]
    return text


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(suite_text())
def test_any_suite_toml_gives_cells_or_one_clear_usage_error(tmp_path, text):
    from harness.run.sweep import plan

    path = tmp_path / "suite.toml"
    path.write_text(text)
    try:
        p = plan(str(path), device="cpu", out=tmp_path / "out")
    except UsageError as exc:
        assert str(exc) and "\n" not in str(exc).strip() or "TOML" in str(exc)
        return
    assert p.cells and all(isinstance(c.seq_len, int) and c.seq_len > 0 for c in p.cells)
    s = p.settings
    assert math.isfinite(s.budget_s) and 0 < s.budget_s < s.timeout_s
    for c in p.cells:
        json.dumps(c.key_dict(), allow_nan=False)  # a record of it can be stored


@pytest.mark.parametrize("line", ['{"schema": 3}', '{"schema": 99, "cell_id": "x"}'])
def test_a_newer_schema_is_named_not_skipped(tmp_path, line):
    (tmp_path / "records.jsonl").write_text(valid_line(1, CELLS[0]) + "\n" + line + "\n")
    with pytest.raises(UsageError, match="schema version"):
        RunDir(tmp_path).records()
