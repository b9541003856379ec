"""How far speedups move between runs of the same cells: the quiet-vs-loaded check.

``python -m tests.speedup_drift RUN_A RUN_B [RUN_C ...] [--baseline lmu] [--drop-contended]``
prints, for every (workload, arch, n) measured in all runs, each run's speedup over the
baseline and the largest relative move from RUN_A, then the largest move overall.
``--drop-contended`` recomputes every cell from its uncontended samples first
(``harness.measure.contention.drop_contended``), to measure whether dropping them helps.

Typical use (see README "Contention"): two quiet runs and one beside
``python -m tests.loadgen --seconds 120``, then
``python -m tests.speedup_drift quiet1 quiet2 loaded``.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd


def speedups(run: str, baseline: str, drop: bool) -> pd.Series:
    from harness.measure.contention import drop_contended
    from harness.report.tables import speedup_table
    from harness.store.load import load_run

    df = load_run(run)
    if drop:
        df = drop_contended(df)
    t = speedup_table(df, baseline, n_resamples=1)
    t = t[(t["arch"] != baseline) & t["speedup"].notna()]
    return t.set_index(["workload", "batch", "arch", "seq_len"])["speedup"]


def drift_table(runs: list[str], baseline: str = "lmu", drop: bool = False) -> pd.DataFrame:
    """Speedups per run (columns) for the cells in every run, and ``max_move`` from the first."""
    cols = {run: speedups(run, baseline, drop) for run in runs}
    table = pd.DataFrame(cols).dropna()
    first = table[runs[0]]
    table["max_move"] = table[runs[1:]].apply(lambda c: (c / first - 1).abs()).max(axis=1)
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.speedup_drift",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--baseline", default="lmu")
    p.add_argument("--drop-contended", action="store_true")
    args = p.parse_args(argv)
    if len(args.runs) < 2:
        print("error: give at least two run directories", file=sys.stderr)
        return 2
    table = drift_table(args.runs, args.baseline, args.drop_contended)
    if table.empty:
        print("error: no speedup is measured in every run", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(table.round(3).to_string())
    worst = table["max_move"].idxmax()
    print(f"\nlargest move from {args.runs[0]}: {100 * table['max_move'].max():.1f}% at {worst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
