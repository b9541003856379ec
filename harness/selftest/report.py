"""Stage 6, **report**: the report built from the sweep, checked for what it is for.

An ``index.md`` alone proves little: a report whose speedup tables are missing, empty or
full of "n/a" still writes one. The stage passes only when, for every timed cell of the
sweep (workload × architecture × length), a speedup table linked from ``index.md`` holds
a finite, positive ratio over the baseline.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from harness.selftest.verdict import Check, Outcome

if TYPE_CHECKING:
    import pandas as pd

Cell = tuple[str, str, int]  # workload, arch, seq_len


def speedup_gaps(report: Path, timed: pd.DataFrame, baseline: str) -> list[str]:
    """What ``report`` lacks of the speedup tables the ``timed`` records call for (empty:
    nothing): a table at all, its link and section in ``index.md``, and a finite ratio
    for every cell."""
    import pandas as pd

    index = report / "index.md"
    if not index.is_file():
        return ["no index.md"]
    tables = sorted((report / "tables").glob("speedup_*.csv"))
    if not tables:
        return [f"no speedup table over {baseline}"]
    text = index.read_text()
    gaps = [] if f"Speedup over `{baseline}`" in text else [
        f"index.md has no speedup section over {baseline}"]
    gaps += [f"{t.name} not linked from index.md" for t in tables
             if f"tables/{t.name}" not in text]
    found: set[Cell] = set()
    for t in tables:
        try:
            df = pd.read_csv(t)
        except pd.errors.EmptyDataError:
            df = pd.DataFrame()
        if not {"workload", "arch", "seq_len", "speedup"} <= set(df.columns) or df.empty:
            gaps.append(f"{t.name} is empty")
            continue
        ratio = pd.to_numeric(df["speedup"], errors="coerce")
        found |= {(str(w), str(a), int(n)) for w, a, n, s in
                  zip(df["workload"], df["arch"], df["seq_len"], ratio, strict=True)
                  if math.isfinite(s) and s > 0}
    wanted = {(str(w), str(a), int(n)) for w, a, n in
              zip(timed["workload"], timed["arch"], timed["seq_len"], strict=True)}
    missing = sorted(wanted - found)
    for arch in dict.fromkeys(a for _, a, _ in missing):
        cells = ", ".join(f"{w} n={n}" for w, a, n in missing if a == arch)
        gaps.append(f"no finite speedup for {arch} ({cells})")
    return gaps


def check_report(sweep_dir: Path, out: Path, baseline: str | None) -> Check:
    from harness.report import build_report, run_baseline
    from harness.report.summary import summary_tables
    from harness.report.tables import to_markdown
    from harness.report.tasks import split_tasks
    from harness.store.load import load_run

    index = build_report([sweep_dir], out, baseline=baseline, formats=("png",),
                         widths=("single",), dpi=110, n_resamples=500)
    baseline = run_baseline([sweep_dir], baseline, [])
    timed, _ = split_tasks(load_run(sweep_dir))
    gaps = speedup_gaps(out, timed, baseline)
    lines = [f"Full report: `{index.relative_to(out.parent)}`.", ""]
    lines += [f"- missing: {g}" for g in gaps] + ([""] if gaps else [])
    for title, grid in summary_tables(sweep_dir, baseline):
        lines += [f"**{title}**", "", to_markdown(grid, grid.index.name or ""), ""]
    archs = timed["arch"].nunique() if not timed.empty else 0
    brief = ("; ".join(gaps) if gaps else
             f"finite speedups over {baseline} for {archs} architectures, every cell")
    return Check("report", Outcome.FAIL if gaps else Outcome.PASS,
                 f"report at {index}: {brief}", brief=brief, lines=lines,
                 data={"gaps": gaps, "baseline": baseline})
