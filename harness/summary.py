"""The table printed at the end of a sweep: median time and speedup over a baseline.

It is the report's own speedup and time grids (``harness.report.tables``) for each facet
of the run directory, printed to the terminal: one way of computing a speedup everywhere.
"""

from __future__ import annotations

import os

import pandas as pd

from harness.errors import UsageError
from harness.report.data import load_run
from harness.report.tables import (
    NOISY_MARK,
    _facets,
    metric_grid,
    metric_table,
    speedup_grid,
    speedup_table,
)


def summary_tables(
    run_dir: str | os.PathLike[str], baseline: str
) -> list[tuple[str, pd.DataFrame]]:
    """(title, arch × n grid of "time (speedup [CI])") per facet of the run."""
    df = load_run(run_dir)
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
        out.append((title, grid))
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


def print_summary(run_dir: str | os.PathLike[str], baseline: str = "lmu") -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if os.isatty(1) else 200)
    for title, grid in summary_tables(run_dir, baseline):
        table = Table(title=title)
        table.add_column("arch", no_wrap=True)
        for n in grid.columns:
            table.add_column(f"n={n}", justify="right")
        for arch, row in grid.iterrows():
            table.add_row(arch, *map(str, row))
        console.print(table)
    console.print(f"{NOISY_MARK} noisy: IQR/median above the noise threshold; treat with care")
