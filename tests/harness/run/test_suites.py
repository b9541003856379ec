"""Shipped suites are valid on every device kind; grids expand as documented."""

from __future__ import annotations

import pytest

from harness.errors import UsageError
from harness.run.suites import load_suite, suite_names


@pytest.mark.parametrize("name", suite_names())
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_every_shipped_suite_expands_to_valid_unique_cells(name, device):
    cells = load_suite(name).cells(device)
    assert cells
    assert len({c.cell_id for c in cells}) == len(cells)
    assert all(c.device == device for c in cells)


def test_grid_is_the_union_of_cross_products(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("""
[cpu]
preset = "tiny"
batch = 2
[[cpu.grid]]
arch = ["lmu", "lstm"]
workload = ["forward", "train"]
seq_len = [8, 16, 32]
[[cpu.grid]]
arch = "lmu"
workload = "forward"
seq_len = 8          # duplicate of a cell above: kept once
batch = 2
""")
    cells = load_suite(str(path)).cells("cpu")
    assert len(cells) == 2 * 2 * 3
    only = load_suite(str(path)).cells("cpu", only={"seq_len": [64]}, overrides={"order": 8})
    assert {c.seq_len for c in only} == {64}
    assert {(c.arch, dict(c.overrides).get("order")) for c in only} == {("lmu", 8), ("lstm", None)}


def test_cuda_section_falls_back_to_cpu_and_missing_fields_are_named(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[cpu]\narch = "lmu"\nworkload = "forward"\nbatch = 1\n[[cpu.grid]]\n')
    with pytest.raises(UsageError, match="lacks seq_len"):
        load_suite(str(path)).cells("cuda")


def test_command_line_arch_and_workload_select_the_grids_that_mention_them():
    s = load_suite("bench")
    cells = s.cells("cpu", only={"arch": ["lmu", "lmu-fft"], "workload": ["train"],
                                 "seq_len": [1024, 4096]})
    assert sorted((c.arch, c.seq_len, c.batch) for c in cells) == [
        ("lmu", 1024, 16), ("lmu", 4096, 16), ("lmu-fft", 1024, 16), ("lmu-fft", 4096, 16)]
    # a workload no grid mentions still runs, on every grid's shape
    odd = s.cells("cpu", only={"arch": ["lstm"], "workload": ["stream"], "seq_len": [64]})
    assert {(c.workload, c.batch) for c in odd} == {("stream", 1)}
    anywhere = s.cells("cpu", only={"arch": ["minlstm"], "workload": ["forward"], "seq_len": [8]})
    assert {c.arch for c in anywhere} == {"minlstm"} and anywhere


def test_paper_and_bench_suites_run_the_papers_classify_experiment():
    """paper: classify at psMNIST's n = 784, batch 100, and a length sweep, with the
    same-model recurrence beside the parallel LMU; bench: a classify row."""
    for device in ("cpu", "cuda"):
        cells = [c for c in load_suite("paper").cells(device) if c.workload == "classify"]
        at_784 = {c.arch for c in cells if (c.seq_len, c.batch, c.preset) == (784, 100, "small")}
        assert {"lmu", "lmu-seq", "lmu-fft", "lmu-chunked"} <= at_784
        sweep = {c.seq_len for c in cells if c.arch == "lmu-fft" and c.preset == "small"}
        assert len(sweep) >= 4 and min(sweep) == 784
        assert {c.arch for c in cells if c.preset == "paper-psmnist"} == {"lmu", "lmu-fft"}
    bench = [c for c in load_suite("bench").cells("cpu") if c.workload == "classify"]
    assert {c.arch for c in bench} >= {"lmu", "lmu-seq", "lmu-fft"}
    assert {c.seq_len for c in bench} == {784}
