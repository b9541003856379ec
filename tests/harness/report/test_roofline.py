"""Each cell's share of the machine: hand-computed shares on synthetic records, the
counting-error guard (a point above the compute roof is never a figure), cache-resident
cells, the FlopCounterMode fallback, the figure, and old runs (no ceilings, no counts)."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.lines import Line2D

from harness.measure.ceilings import Ceilings
from harness.report import build_report
from harness.report.output import Output, prepare_out
from harness.report.roofline import (
    ABOVE_CACHE,
    COUNTING_ERROR,
    NO_FLOPS,
    NOT_MEASURED,
    plot_roofline,
    roofline_frame,
    roofline_grid,
    share_of,
    share_section,
)
from harness.report.style import arch_styles
from harness.store.load import load_runs
from tests.helpers import ENV, record, write_run

# peak 100 GFLOP/s, DRAM 10 GB/s, cache 50 GB/s: ridges at 10 and 2 FLOP/byte
CEIL = Ceilings(device="cpu", device_name="cpu: test", dtype="float32", threads=2,
                precision="strict", peak_flops=100e9, bandwidth=10e9, cache_bandwidth=50e9,
                torch="2.x", host="h", measured_at="2026-01-01T00:00:00+00:00", seconds=3.2,
                others_cores=0.1, method={"peak_flops": "torch.mm …"})


def test_shares_against_each_roof_are_hand_computed():
    # intensity 1 FLOP/B: DRAM roof 10 GFLOP/s; 1e8 FLOPs in 50 ms = 2 GFLOP/s: 20%
    s = share_of(0.05, CEIL, analytic_flops=1e8, analytic_bytes=1e8)
    assert s.intensity == pytest.approx(1.0)
    assert s.achieved == pytest.approx(2e9)
    assert s.attainable == pytest.approx(10e9)
    assert s.share == pytest.approx(0.20) and s.roof == "DRAM" and s.flag == ""
    assert s.text() == "20% DRAM"
    # intensity 20 FLOP/B: past the ridge, the compute roof; 1e9 FLOPs in 20 ms = 50%
    s = share_of(0.02, CEIL, analytic_flops=1e9, analytic_bytes=5e7)
    assert s.attainable == pytest.approx(100e9)
    assert s.share == pytest.approx(0.5) and s.roof == "compute"
    assert s.text() == "50% compute"
    # a small share keeps two significant figures
    assert share_of(1.0, CEIL, analytic_flops=1.23e9, analytic_bytes=1e7).text() == "1.2% compute"


def test_a_point_above_the_compute_roof_is_flagged_never_a_figure():
    s = share_of(0.05, CEIL, analytic_flops=1e10, analytic_bytes=1e6)  # 200 GFLOP/s > 100
    assert s.flag == COUNTING_ERROR and s.share is None
    assert s.text() == COUNTING_ERROR and "%" not in s.text()
    # the counter's FLOPs too: more counted than the machine can do is an error
    s = share_of(0.05, CEIL, counted_flops=1e10)
    assert s.flag == COUNTING_ERROR and s.share is None


def test_above_the_dram_roof_under_the_cache_roof_is_cache_resident():
    # intensity 1: DRAM roof 10, cache roof 50 GFLOP/s; achieved 20 GFLOP/s: 40% of cache
    s = share_of(0.005, CEIL, analytic_flops=1e8, analytic_bytes=1e8)
    assert s.achieved == pytest.approx(20e9)
    assert s.roof == "cache" and s.share == pytest.approx(0.4) and s.flag == ""
    assert s.text() == "40% cache-resident"
    # above the cache roof too (100 GFLOP/s at intensity 1): flagged, no figure
    s = share_of(0.001, CEIL, analytic_flops=1e8, analytic_bytes=1e8)
    assert s.flag == ABOVE_CACHE and s.share is None


def test_counted_flops_are_a_lower_bound_of_peak_and_no_count_says_so():
    s = share_of(0.1, CEIL, counted_flops=1e9)  # 10 GFLOP/s of 100: at least 10%
    assert s.source == "counted" and s.roof == "peak" and s.intensity is None
    assert s.text() == "≥ 10% of peak"
    # analytic bytes without analytic FLOPs: no intensity from counted FLOPs
    assert share_of(0.1, CEIL, counted_flops=1e9, analytic_bytes=1e6).intensity is None
    assert share_of(0.1, CEIL).text() == NO_FLOPS
    assert share_of(0.1, None, counted_flops=1e9).text() == NOT_MEASURED
    assert share_of(0.1, CEIL, analytic_flops=float("nan"), counted_flops=None).text() == NO_FLOPS


def env_with(*ceils: Ceilings) -> dict:
    return {**ENV, "ceilings": [c.to_dict() for c in ceils]}


def synthetic_run(tmp_path, ceils=(CEIL,), threads=2):
    """Three archs at two lengths; analytic counts added as DataFrame columns (absent from
    older records), one cell above the compute roof and one cache-resident."""
    counts = {  # (arch, n): (time s, flops, bytes)
        ("a", 256): (0.05, 1e8, 1e8),  # 20% DRAM
        ("a", 1024): (0.02, 1e9, 5e7),  # 50% compute
        ("b", 256): (0.005, 1e8, 1e8),  # 40% cache-resident
        ("b", 1024): (0.05, 1e10, 1e6),  # counting error
        ("c", 256): (0.1, 1e9, None),  # FLOPs, no bytes
        ("c", 1024): (0.1, None, None),  # nothing counted
    }
    recs = [record(a, n, samples=[t] * 5, host="h", threads=threads)
            for (a, n), (t, _f, _b) in counts.items()]
    recs.append(record("c", 4096, "oom", host="h"))
    run = write_run(tmp_path / "run", recs, env=env_with(*ceils))
    df = load_runs(run)
    df["analytic_flops"] = [counts.get((a, n), (0, None, None))[1]
                            for a, n in zip(df["arch"], df["seq_len"], strict=True)]
    df["analytic_bytes"] = [counts.get((a, n), (0, None, None))[2]
                            for a, n in zip(df["arch"], df["seq_len"], strict=True)]
    return run, df


def test_the_table_shows_each_cells_share_and_flags(tmp_path):
    _, df = synthetic_run(tmp_path)
    frame = roofline_frame(df)
    grid = roofline_grid(frame, ["a", "b", "c"])
    assert grid.loc["a", 256] == "20% DRAM"
    assert grid.loc["a", 1024] == "50% compute"
    assert grid.loc["b", 256] == "40% cache-resident"
    assert grid.loc["b", 1024] == COUNTING_ERROR
    assert grid.loc["c", 256] == "10% of peak"  # analytic FLOPs without bytes: of peak
    assert grid.loc["c", 1024] == NO_FLOPS
    assert grid.loc["c", 4096] == "OOM"
    assert grid.loc["a", 4096] == "n/a"
    # a share rests on the cell's time: the time tables' marks go with it, never on a flag
    df.loc[df["arch"].isin(["a", "b"]), "noisy"] = True
    grid = roofline_grid(roofline_frame(df), ["a", "b", "c"])
    assert grid.loc["a", 256] == "20% DRAM\u2020"
    assert grid.loc["b", 1024] == COUNTING_ERROR


def test_ceilings_of_another_thread_count_are_not_used(tmp_path):
    _, df = synthetic_run(tmp_path, threads=1)  # the env's roofs are for 2 threads
    frame = roofline_frame(df)
    assert set(frame.loc[frame["status"] == "ok", "roof_text"]) == {NOT_MEASURED, NO_FLOPS}


def test_the_section_and_figure(tmp_path):
    _, df = synthetic_run(tmp_path)
    out = prepare_out(tmp_path / "rep")
    styles = arch_styles(df["arch"], first="a")
    lines = "\n".join(share_section(df, styles, Output(out, ("double",), ("png",), 60)))
    assert "## Share of the machine" in lines
    assert "| float32 | 2 | 100 GFLOP/s | 10 GB/s | 50 GB/s | 10 |" in lines
    assert "`b` forward n=1024: counting error (not shown as a figure)" in lines
    assert "1 cell(s) cache-resident" in lines
    assert (out / "figures" / "roofline_cpu-test_double.png").is_file()
    frame = roofline_frame(df)
    drawn = frame[frame["roof_share"].notna() & frame["intensity"].notna()]
    fig = plot_roofline(drawn, styles=styles)
    ax = fig.axes[0]
    points = [ln for ln in ax.get_lines() if isinstance(ln, Line2D) and len(ln.get_xdata()) == 1]
    assert len(points) == 3  # a 256, a 1024, b 256; never the counting error
    ys = sorted(float(p.get_ydata()[0]) for p in points)
    assert ys == pytest.approx([2e9, 20e9, 50e9])
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"


def test_a_cuda_section_prints_the_datasheet_with_its_source(tmp_path):
    from harness.measure.ceilings import attach_datasheet

    gpu = attach_datasheet(Ceilings(
        device="cuda:0", device_name="NVIDIA A100-SXM4-80GB", dtype="float32", threads=8,
        precision="strict", peak_flops=18e12, bandwidth=1.8e12, cache_bandwidth=4e12,
        torch="2.x", host="h"))
    recs = [record("a", n, samples=[0.01] * 5, host="h", device="cuda", flops=1e9)
            for n in (256, 1024)]
    run = write_run(tmp_path / "run", recs,
                    env={"hostname": "h", "device_name": gpu.device_name,
                         "ceilings": [gpu.to_dict()]})
    df = load_runs(run)
    out = prepare_out(tmp_path / "rep")
    lines = "\n".join(share_section(df, arch_styles(["a"]), Output(out, ("single",), ("png",))))
    assert "datasheet, A100 SXM4 80GB" in lines
    assert "nvidia-a100-datasheet" in lines  # the source's address
    assert "| float32 | — | 18 TFLOP/s | 1.8 TB/s |" in lines


def report(run, tmp_path) -> Path:
    """The run's report (baseline ``a``, single-width PNG figures); its index.md."""
    return build_report([run], tmp_path / "rep", baseline="a", formats=("png",),
                        widths=("single",), n_resamples=20)


def test_an_old_run_without_ceilings_or_counts_still_reports(tmp_path):
    recs = [record(a, n, samples=[0.01 * (n / 256)] * 5) for a in ("a", "b")
            for n in (256, 1024)]
    run = write_run(tmp_path / "old", recs)  # env.json without ceilings, records without FLOPs
    index = report(run, tmp_path)
    text = index.read_text()
    assert "Ceilings not measured: the run predates the machine's ceilings." in text
    assert "0 counted by torch (lower bounds), 4 without" in text
    assert "No roofline figure" in text


def test_an_old_run_with_counted_flops_says_not_measured_in_its_table(tmp_path):
    recs = [record(a, n, samples=[0.01] * 5, flops=1e6) for a in ("a", "b") for n in (256, 1024)]
    run = write_run(tmp_path / "old", recs)
    index = report(run, tmp_path)
    table = (index.parent / "tables" / "roofline_forward_cpu-test.md").read_text()
    assert "| `a` | not measured | not measured |" in table


def test_a_run_with_ceilings_and_counted_flops_reports_a_lower_bound(tmp_path):
    recs = [record(a, n, samples=[0.01] * 5, flops=1e8, host="h", threads=2)
            for a in ("a", "b") for n in (256, 1024)]
    run = write_run(tmp_path / "new", recs, env=env_with(CEIL))
    index = report(run, tmp_path)
    text = index.read_text()
    assert "| `a` | ≥ 10% of peak | ≥ 10% of peak |" in text  # 10 GFLOP/s of 100
    assert "## Share of the machine (roofline)" in text
    csv = (index.parent / "tables" / "roofline_forward_cpu-test.csv").read_text()
    assert "achieved_flops_per_s" in csv.splitlines()[0]


def test_a_run_whose_records_carry_analytic_counts_gets_its_figure(tmp_path):
    recs = [record("a", 256, samples=[0.05] * 5, host="h", threads=2, analytic_flops=1e8,
                   analytic_bytes=1e8),  # 20% DRAM
            record("a", 1024, samples=[0.05] * 5, host="h", threads=2, analytic_flops=1e10,
                   analytic_bytes=1e6),  # 200 GFLOP/s: above the compute roof
            record("b", 256, samples=[0.005] * 5, host="h", threads=2, analytic_flops=1e8,
                   analytic_bytes=1e8),  # 40% cache-resident
            record("b", 1024, samples=[0.02] * 5, host="h", threads=2, analytic_flops=1e9,
                   analytic_bytes=5e7)]  # 50% compute
    run = write_run(tmp_path / "new", recs, env=env_with(CEIL))
    index = report(run, tmp_path)
    text = index.read_text()
    assert "| `a` | 20% DRAM | counting error |" in text
    assert "| `b` | 40% cache-resident | 50% compute |" in text
    assert "`a` forward n=1024: counting error (not shown as a figure)" in text
    assert "![roofline CPU: test](figures/roofline_cpu-test_single.png)" in text
    assert (index.parent / "figures" / "roofline_cpu-test_single.png").is_file()
