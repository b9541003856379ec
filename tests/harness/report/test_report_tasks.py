"""Task reports: time-to-target speedups, not-reached and failed cells, curve figures.

Records are synthetic with hand-made curves, written through RunDir so the format is
the one the runner produces; every expected number below is computed by hand from them.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

from harness.report import build_report
from harness.report.style import arch_styles
from harness.report.summary import summary_tables
from harness.report.task_curves import plot_task_curves, task_curves
from harness.report.tasks import NOT_REACHED, is_task, task_results, task_table
from harness.store.load import load_runs
from harness.store.records import Record
from tests.helpers import record, write_run

COLUMNS = ["step", "wall_s", "tokens_seen", "metric", "test_loss", "train_loss"]
PSDIGITS_SET = {"lr": 0.01, "target": 0.8}
ENV = {"device_name": "cpu: Test CPU", "hostname": "h", "torch": "2.13.0"}


def task_record(
    arch: str,
    curve: list[tuple[int, float, float]],
    *,
    task: str = "psdigits",
    seq_len: int = 784,
    target: float = 0.8,
    higher: bool = True,
    metric: str = "accuracy",
    params: int = 10_000,
    overrides: dict | None = None,
    tokens_per_step: int = 1000,
) -> Record:
    """A finished task cell whose time-to-target is read off ``curve`` (step, wall_s, metric)."""
    rows = [[s, w, s * tokens_per_step, m, 1.0 - m, None if s == 0 else 1.0] for s, w, m in curve]
    hit = next((r for r in rows if (r[3] >= target if higher else r[3] <= target)), None)
    metrics = {
        "task": task,
        "metric": metric,
        "higher_is_better": higher,
        "target": target,
        "final": rows[-1][3],
        "best": (max if higher else min)(r[3] for r in rows),
        "curve_columns": COLUMNS,
        "curve": rows,
        "time_to_target_s": None if hit is None else hit[1],
        "steps_to_target": None if hit is None else hit[0],
        "tokens_to_target": None if hit is None else hit[2],
        "steps": rows[-1][0],
        "tokens_seen": rows[-1][2],
        "train_s": rows[-1][1],
        "eval_s": 0.5,
        "stopped_by": "max_steps",
        "params": params,
    }
    return record(arch, seq_len, workload=task, batch=4, overrides=overrides or PSDIGITS_SET,
                  params=params, time_median_s=rows[-1][1] / rows[-1][0], metrics=metrics)


def failed_record(arch: str, status: str, task: str = "psdigits") -> Record:
    return record(arch, 784, status, workload=task, batch=4, overrides=PSDIGITS_SET,
                  message=f"synthetic {status}")


def timed_record(arch: str, n: int, median: float) -> Record:
    samples = [median * f for f in (0.99, 1.0, 1.01)]
    return record(arch, n, samples=samples, time_median_s=median, time_min_s=samples[0],
                  batch=4)


# lmu meets 80% at 40 s (previous evaluation 20 s); lmu-fft at 10 s (previous 5 s)
LMU = [(0, 0.0, 0.1), (10, 20.0, 0.5), (20, 40.0, 0.85), (30, 60.0, 0.9)]
FFT = [(0, 0.0, 0.1), (5, 5.0, 0.6), (10, 10.0, 0.82), (15, 15.0, 0.9)]
LSTM = [(0, 0.0, 0.1), (10, 30.0, 0.3), (20, 60.0, 0.45)]  # never reaches 80%
# mackey-glass, lower is better: the baseline never reaches 0.2 in its 30 s
MG_SET = {"lr": 0.003, "target": 0.2}
MG_LMU = [(0, 0.0, 1.0), (10, 15.0, 0.5), (20, 30.0, 0.3)]
MG_FFT = [(0, 0.0, 1.0), (5, 3.0, 0.4), (10, 6.0, 0.15)]


@pytest.fixture
def run(tmp_path) -> Path:
    mg = {"task": "mackey-glass", "seq_len": 128, "target": 0.2, "higher": False}
    mg.update(metric="nrmse", overrides=MG_SET)
    return write_run(
        tmp_path / "run",
        [
            task_record("lmu", LMU),
            task_record("lmu-fft", FFT),
            task_record("lstm", LSTM),
            failed_record("transformer", "oom"),
            task_record("lmu", MG_LMU, **mg),
            task_record("lmu-fft", MG_FFT, **mg),
            # copy: no lmu cell at all
            task_record("lmu-fft", FFT, task="copy", seq_len=40, overrides={"lr": 0.003}),
        ],
        env=ENV,
    )


def row(table, arch: str, task: str = "psdigits"):
    sel = table[(table["arch"] == arch) & (table["task"].str.startswith(task))]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def test_speedup_is_the_ratio_of_times_to_target(run):
    res = task_results(load_runs(run), baseline="lmu")
    fft = row(res, "lmu-fft")
    assert fft["speedup"] == 40.0 / 10.0
    # the target was crossed after the previous evaluations: lmu in (20, 40], fft in (5, 10]
    assert fft["speedup_low"] == 20.0 / 10.0
    assert fft["speedup_high"] == 40.0 / 5.0
    assert fft["ttt_low_s"] == 5.0 and fft["tokens_to_target"] == 10 * 1000
    assert row(res, "lmu")["speedup"] == 1.0
    shown = row(task_table(load_runs(run), "lmu"), "lmu-fft")
    assert shown["speedup vs lmu"] == "4.00 [2.00, 8.00]"
    assert shown["time to target"] == "10.0 s"
    assert shown["tokens to target"] == "10.0k"
    assert shown["final"] == "90.0%" and shown["best"] == "90.0%" and shown["target"] == "80%"
    assert shown["params"] == "10,000" and shown["steps"] == "15"
    assert shown["metric"] == "accuracy ↑"


def test_not_reached_is_said_never_blank(run):
    table = task_table(load_runs(run), "lmu")
    lstm = row(table, "lstm")
    assert lstm["time to target"] == NOT_REACHED
    assert lstm["tokens to target"] == NOT_REACHED
    assert lstm["speedup vs lmu"] == NOT_REACHED
    assert lstm["final"] == "45.0%"
    assert (table != "").all().all() and not table.isna().any().any()


def test_baseline_not_reached_gives_a_lower_bound(run):
    res = task_results(load_runs(run), "lmu")
    fft = row(res, "lmu-fft", "mackey-glass")
    # lmu trained 30 s without reaching 0.2: its time to target exceeds 30 s
    assert math.isnan(fft["speedup"]) and fft["speedup_low"] == 30.0 / 6.0
    shown = row(task_table(load_runs(run), "lmu"), "lmu-fft", "mackey-glass")
    assert shown["speedup vs lmu"] == "> 5.00 (baseline not reached)"
    assert shown["metric"] == "nrmse ↓" and shown["target"] == "0.2"
    lmu = row(task_table(load_runs(run), "lmu"), "lmu", "mackey-glass")
    assert lmu["time to target"] == NOT_REACHED


def test_failed_cell_shows_its_status_and_missing_baseline_is_named(run):
    table = task_table(load_runs(run), "lmu")
    tr = row(table, "transformer")
    assert tr["final"] == "OOM" and tr["time to target"] == "OOM" and tr["speedup vs lmu"] == "OOM"
    # metric and target come from the task itself when the failed record has no metrics
    assert tr["metric"] == "accuracy ↑" and tr["target"] == "80%"
    assert row(table, "lmu-fft", "copy")["speedup vs lmu"] == "no baseline"


def test_adapter_overrides_do_not_split_a_task(tmp_path):
    """``theta`` is an adapter key: lstm without it still compares against lmu with it."""
    a = task_record("lmu", LMU, overrides={**PSDIGITS_SET, "theta": 784.0})
    b = task_record("lstm", FFT)
    res = task_results(load_runs(write_run(tmp_path / "r", [a, b], env=ENV)), "lmu")
    assert row(res, "lstm")["speedup"] == 4.0


def test_task_rows_are_recognised(run, tmp_path):
    mixed = write_run(tmp_path / "m", [timed_record("lmu", 256, 1e-3), task_record("lmu", LMU)],
                      env=ENV)
    df = load_runs(mixed)
    assert list(is_task(df)) == [False, True]
    curves = task_curves(load_runs(run))
    fft = curves[(curves["arch"] == "lmu-fft") & (curves["workload"] == "psdigits")]
    assert list(fft["wall_s"]) == [0.0, 5.0, 10.0, 15.0]


def png_size(path: Path) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    return struct.unpack(">II", head[16:24])


@pytest.mark.parametrize(("width", "inches"), [("single", 3.3), ("double", 7.0)])
def test_figures_have_the_requested_width(run, tmp_path, width, inches):
    from harness.report.figures import save

    df = load_runs(run)
    styles = arch_styles(df["arch"], first="lmu")
    for x in ("wall_s", "tokens_seen"):
        fig = plot_task_curves(df, x, styles=styles, width=width, baseline="lmu")
        assert fig.get_size_inches()[0] == pytest.approx(inches)
        (png,) = save(fig, tmp_path / f"{x}_{width}", ("png",), dpi=100)
        assert png_size(png)[0] == round(inches * 100)
        ax = fig.axes[0]
        # the target is drawn: a horizontal line at 80 (%) in the psdigits panel
        assert any(np.allclose(line.get_ydata(), 80.0) for line in ax.get_lines())
    with pytest.raises(ValueError, match="tokens_seen"):
        plot_task_curves(df, "steps", styles=styles, baseline="lmu")


def test_identical_curves_stay_visible_and_are_named(tmp_path):
    recs = [task_record("lmu-chunked", FFT), task_record("lmu-fft", FFT), task_record("lmu", LMU)]
    df = load_runs(write_run(tmp_path / "r", recs, env=ENV))
    fig = plot_task_curves(df, "tokens_seen", styles=arch_styles(df["arch"], first="lmu"),
                           baseline="lmu")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["lmu", "lmu-chunked", "lmu-fft (= lmu-chunked)", "target 80%"]


def test_build_report_writes_timed_and_task_sections(tmp_path):
    recs = [
        timed_record(a, n, t * n)
        for a, t in (("lmu", 2e-6), ("lmu-fft", 5e-7))
        for n in (256, 512, 1024)
    ]
    recs += [task_record("lmu", LMU), task_record("lmu-fft", FFT)]
    index = build_report(
        [write_run(tmp_path / "run", recs, env=ENV)],
        tmp_path / "rep",
        widths=("single",),
        formats=("png",),
        dpi=60,
        n_resamples=50,
        baseline="lmu",
    )
    text = index.read_text()
    assert "## Tasks" in text and "## Figures" in text and "## Tables" in text
    assert "| psdigits (n=784) | `lmu-fft` |" in text and "4.00 [2.00, 8.00]" in text
    rep = tmp_path / "rep"
    assert (rep / "figures" / "task_time_single.png").exists()
    assert (rep / "figures" / "task_tokens_single.png").exists()
    assert (rep / "figures" / "time_forward_single.png").exists()
    assert (rep / "tables" / "tasks.tex").read_text().count("\\midrule") == 1
    # the timed tables are for forward only: no step-time speedup table of psdigits
    assert not list((rep / "tables").glob("speedup_psdigits*"))
    assert list((rep / "tables").glob("speedup_forward*"))


def test_summary_prints_the_task_table_for_tasks(tmp_path):
    recs = [timed_record("lmu", 256, 1e-3), timed_record("lmu-fft", 256, 5e-4)]
    recs += [task_record("lmu", LMU), task_record("lmu-fft", FFT)]
    tables = summary_tables(write_run(tmp_path / "run", recs, env=ENV), "lmu")
    assert len(tables) == 2
    (t_title, timed), (k_title, tasks) = tables
    assert "forward" in t_title and list(timed.columns) == [256]
    assert "tasks" in k_title and tasks.loc["lmu-fft", "speedup vs lmu"] == "4.00 [2.00, 8.00]"
