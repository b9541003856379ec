"""The asv suite: its grid and cell measurement, the nox driver, the offline dashboard (end
to end, with asv and Chromium: tests/integration/test_asv_dashboard.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import architectures
import workloads
from tests.helpers import ROOT, asv_grid
from tools import asv_support
from tools.asv_support import ASSETS, CompareRow, parse_compare, plan, rewrite_html


@pytest.fixture(scope="module")
def grid():
    return asv_grid()


# -- grid and measurement ---------------------------------------------------------------
def test_grids_name_registered_adapters_and_timed_workloads(grid):
    for table in (grid.CPU_GRIDS, grid.CUDA_GRIDS):
        assert set(table) == {"default", "test"}
        for g in table.values():
            assert set(g.archs) <= set(architectures.available())
            assert all(workloads.kind(w) == "timed" for w in g.workloads)
            assert len(g.cells()) == len(g.archs) * len(g.seq_lens) * len(g.workloads)
            assert g.params == [list(g.archs), list(g.seq_lens), list(g.workloads)]


def test_grid_name_from_env(grid):
    assert grid.grid_name({}) == "default"
    assert grid.grid_name({"SEQBENCH_ASV_GRID": "test"}) == "test"
    with pytest.raises(ValueError, match=r"'huge'.*default, test"):
        grid.grid_name({"SEQBENCH_ASV_GRID": "huge"})


def test_measure_cell_reports_timer_median_and_tokens(grid):
    g = grid.CPU_GRIDS["test"]
    r = grid.measure_cell("lmu-fft", 16, "forward", g)
    assert r.error == ""
    assert 0 < r.time_s < 5
    # tokens of one forward call: batch × seq_len, independently of the workload's count
    assert r.tokens_per_s == pytest.approx(g.batch * 16 / r.time_s, rel=1e-12)
    assert np.isnan(r.cuda_peak_bytes)


def test_cells_run_on_the_grids_thread_count_and_restore_it(grid):
    before = torch.get_num_threads()
    with grid.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with grid.torch_threads(None):
        assert torch.get_num_threads() == before
    assert grid.CPU_GRIDS["default"].threads == grid.CPU_GRIDS["test"].threads == 1
    grid.measure_cell("lmu-fft", 16, "forward", grid.CPU_GRIDS["test"])
    assert torch.get_num_threads() == before


def test_measure_cell_turns_a_cell_it_cannot_run_into_an_error(grid):
    r = grid.measure_cell("no-such-adapter", 16, "forward", grid.CPU_GRIDS["test"])
    assert "no-such-adapter" in r.error and np.isnan(r.time_s)


# -- driver -----------------------------------------------------------------------------
def test_torch_matrix_from_seqbench_torch_spec():
    assert asv_support.torch_matrix("torch==2.13.0") == {"req": {"torch": ["2.13.0"]}}
    assert asv_support.torch_matrix("torch") == {"req": {"torch": [""]}}
    assert asv_support.torch_matrix("torch==2.13.0 --index-url https://x/cu126") == {
        "req": {"torch": ["2.13.0"]}, "env": {"PIP_INDEX_URL": "https://x/cu126"}}
    assert asv_support.torch_matrix("torch --extra-index-url=https://y") == {
        "req": {"torch": [""]}, "env": {"PIP_EXTRA_INDEX_URL": "https://y"}}
    for bad in ("numpy", "torch>=2", "torch --pre", "torch --index-url", ""):
        with pytest.raises(ValueError, match="valid forms"):
            asv_support.torch_matrix(bad)


def test_config_for_default_and_overridden_torch(tmp_path):
    assert asv_support.config_for("torch==2.13.0", ROOT) == ROOT / "asv.conf.json"
    shutil.copy(ROOT / "asv.conf.json", tmp_path / "asv.conf.json")
    path = asv_support.config_for("torch==2.5.1 --index-url https://x", tmp_path)
    conf = asv_support.load_config(path)
    assert conf["matrix"]["req"]["torch"] == ["2.5.1"]
    assert conf["results_dir"] == str(tmp_path / "results" / "asv")
    assert conf["repo"] == str(tmp_path) and path.parent == tmp_path / "results" / "asv-envs"


def test_plan_default_range_is_head_then_new(tmp_path):
    conf = tmp_path / "asv.conf.json"
    res = tmp_path / "results"
    first = plan([], conf, res)
    assert [c[1] for c in first] == ["machine", "run", "publish"]
    assert "--yes" in first[0] and first[1][-1] == "HEAD"
    (res / "vm").mkdir(parents=True)
    (res / "vm" / "machine.json").write_text("{}")
    assert plan([], conf, res)[1][-1] == "HEAD"  # a machine file alone is no result
    (res / "vm" / "abcd1234-virtualenv-py3.11.json").write_text("{}")
    assert plan([], conf, res)[1][-1] == "NEW"


def test_plan_modes(tmp_path):
    conf, res = tmp_path / "c.json", tmp_path / "r"
    cont = plan(["continuous", "main~1", "main"], conf, res)[-1]
    assert cont[1] == "continuous" and cont[cont.index("--factor") + 1] == "1.1"
    assert cont[-2:] == ["main~1", "main"]
    cont = plan(["continuous", "a", "b", "--factor=1.5"], conf, res, factor="1.1")[-1]
    assert "1.1" not in cont and "--factor=1.5" in cont
    same = plan(["same"], conf, res)[1]
    assert "--python=same" in same and same[same.index("--set-commit-hash") + 1] == "HEAD"
    assert plan(["run", "main~3..main"], conf, res)[1][-1] == "main~3..main"
    assert plan(["compare", "a", "b"], conf, res, factor="3")[0][-4:] == ["--factor", "3", "a",
                                                                           "b"]
    assert [c[1] for c in plan(["publish"], conf, res)] == ["publish"]
    for bad, msg in ((["bogus"], "valid choices"), (["continuous", "a"], "BASE and HEAD"),
                     (["run"], "commit range"), (["compare"], "BASE and HEAD")):
        with pytest.raises(ValueError, match=msg):
            plan(bad, conf, res)


def test_parse_compare_reads_marks_and_benchmarks():
    text = """
| Change | Before [aaaa] <x> | After [bbbb] <y> | Ratio | Benchmark (Parameter) |
|--------|-------------------|------------------|-------|-----------------------|
|        | 151μs  | 153μs  |  1.01 | s.C.track_time_s('a', 32, 'forward') |
| +      | 21.5ms | 284ms  | 13.22 | s.C.track_time_s('b', 32, 'forward') |
| -      | 1491.3 | 112.8  |  0.08 | s.C.track_tokens_per_s('b', 32, 'forward') |
| !      | 1.0    | failed |   n/a | s.C.track_time_s('c', 32, 'forward') |
"""
    rows = parse_compare(text)
    assert rows == [
        CompareRow("", "s.C.track_time_s('a', 32, 'forward')", "1.01"),
        CompareRow("+", "s.C.track_time_s('b', 32, 'forward')", "13.22"),
        CompareRow("-", "s.C.track_tokens_per_s('b', 32, 'forward')", "0.08"),
        CompareRow("!", "s.C.track_time_s('c', 32, 'forward')", "n/a"),
    ]
    assert [r.worse for r in rows] == [False, True, False, True]


# -- offline dashboard ------------------------------------------------------------------
def test_rewrite_html_covers_every_remote_script_and_stylesheet_of_asv():
    asv = pytest.importorskip("asv")
    html = (Path(asv.__file__).parent / "www" / "index.html").read_text()
    new, unknown = rewrite_html(html)
    assert unknown == []
    assert "integrity=" not in new and "cdnjs" not in new and "jsdelivr" not in new
    for asset in ASSETS:  # each known URL of this asv is replaced by its local copy
        if asset.url in html:
            assert f'"{asset.local}"' in new
            assert asset.local.removeprefix("vendor/") in asset.files.values()
    _, unknown = rewrite_html('<script src="https://cdn.example/x.js"></script>')
    assert unknown == ["https://cdn.example/x.js"]
