"""The tables printed at the end of a sweep: median time and speedup over a baseline.

It is the report's own speedup and time grids (``harness.report.tables``) for each facet
of the run directory, printed to the terminal: one way of computing a speedup everywhere.
Task workloads (psdigits, textlm, …) get the report's task table instead: what each
architecture reached, and its time-to-target speedup (``harness.report.tasks``).
"""

from __future__ import annotations

import os

import pandas as pd

from harness.errors import UsageError
from harness.measure.headline import HEADLINE_MIN_SAMPLES as MIN_N
from harness.report.tables import (
    CONTENDED_MARK,
    NOISY_MARK,
    THIN_MARK,
    _facets,
    metric_grid,
    metric_table,
    shared_computation,
    speedup_grid,
    speedup_table,
)
from harness.report.tasks import split_tasks, task_table
from harness.store.load import load_run


def summary_tables(
    run_dir: str | os.PathLike[str], baseline: str
) -> list[tuple[str, pd.DataFrame]]:
    """(title, grid) per facet: arch × n of "time (speedup [CI])" for timed workloads,
    then one task table per device (rows: task × arch) for task workloads."""
    df, tasks = split_tasks(load_run(run_dir))
    out = [] if df.empty else _timed_tables(df, baseline)
    if not tasks.empty:
        table = task_table(tasks, baseline)
        for dev, t in table.groupby("device", sort=True):
            cols = ["arch", "task"] + [c for c in t.columns if c not in ("device", "arch", "task")]
            grid = t[cols].set_index("arch")
            out.append(
                (f"{dev} · tasks — final metric, time to target (speedup vs {baseline})", grid)
            )
    return out


def _timed_tables(df: pd.DataFrame, baseline: str) -> list[tuple[str, pd.DataFrame]]:
    try:
        speed = speedup_table(df, baseline, n_resamples=500)
    except UsageError:  # baseline not in this run: times only
        speed = None
    archs = [baseline] + sorted(set(df["arch"]) - {baseline})
    out = []
    for facet, g in _facets(df):
        times, unit = metric_grid(metric_table(g, "time_median_s"), "time_median_s", archs)
        grid = times.map(lambda v, u=unit: _with_unit(v, u))
        title = _title(facet)
        if speed is not None:
            sel = speed
            for k, v in facet.items():
                sel = sel[sel[k] == v]
            sgrid = speedup_grid(sel, archs)
            for a in grid.index:
                for n in grid.columns:
                    s = sgrid.loc[a, n] if a in sgrid.index and n in sgrid.columns else ""
                    if a != baseline and s[:1].isdigit():
                        grid.loc[a, n] = f"{grid.loc[a, n]} (×{s})"
            title += f" — median time (speedup vs {baseline}, 95% CI)"
        note = shared_computation(grid.index, str(facet.get("workload", "")))
        out.append((f"{title} [{note}]" if note else title, grid))
    return out


def _with_unit(text: str, unit: str) -> str:
    """``"6.06†"`` → ``"6.06 ms†"``; failure texts stay as they are."""
    if not text[:1].isdigit():
        return text
    mark = NOISY_MARK if text.endswith(NOISY_MARK) else ""
    return f"{text.removesuffix(NOISY_MARK)} {unit}{mark}"


def _title(facet: dict) -> str:
    parts = [str(facet.get("device_label", "")), str(facet.get("workload", ""))]
    parts += [f"{k} {facet[k]}" for k in ("preset", "batch") if k in facet]
    parts += [str(facet[k]) for k in ("dtype",) if k in facet]
    if facet.get("compile") not in (None, "none"):
        parts.append(f"compile {facet['compile']}")
    if facet.get("overrides_key"):
        parts.append(f"set {facet['overrides_key']}")
    return " · ".join(p for p in parts if p)


TEXT_COLUMNS = ("task", "metric")
TASK_NOTE = (
    "time to target: training seconds at the first evaluation that met the target; "
    "speedup [range the evaluation spacing allows], one run"
)


def print_summary(run_dir: str | os.PathLike[str], baseline: str | None = None) -> None:
    """The end-of-run tables; ``baseline``: default, the one stored with the run."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=None if os.isatty(1) else 200)
    timed = tasks = False
    from harness.report.build import stored_setting

    baseline = baseline or str(stored_setting([run_dir], "baseline") or "")  # "": times only
    for title, grid in summary_tables(run_dir, baseline):
        is_task = "task" in grid.columns
        timed, tasks = timed or not is_task, tasks or is_task
        console.print(f"\n[bold]{escape(title)}[/]", highlight=False)  # unwrapped: greppable
        table = Table()
        table.add_column("arch", no_wrap=True)
        for n in grid.columns:
            text = n in TEXT_COLUMNS
            label = n if isinstance(n, str) else f"n={n}"
            table.add_column(label, justify="left" if text else "right", no_wrap=text)
        for arch, row in grid.iterrows():
            table.add_row(escape(str(arch)), *(escape(str(v)) for v in row))
        console.print(table)
    if timed:
        console.print(f"{NOISY_MARK} noisy: IQR/median above the noise threshold; treat with "
                      f"care. {THIN_MARK} thin: fewer than {MIN_N} samples, no interval. "
                      f"{CONTENDED_MARK} contended: other processes used the CPUs during more "
                      f"than a quarter of its samples, and fewer than {MIN_N} were quiet",
                      highlight=False)
    if tasks:
        console.print(TASK_NOTE, markup=False)
