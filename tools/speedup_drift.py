"""How far speedups move between runs of the same cells: the quiet-vs-loaded check.

``python -m tools.speedup_drift RUN_A RUN_B [RUN_C ...] [--baseline lmu] [--drop-contended]``
prints, for every (workload, arch, n) measured in all runs, each run's speedup over the
baseline and the largest relative move from RUN_A, then the largest move overall.
``--drop-contended`` recomputes every cell from its uncontended samples first
(:func:`drop_contended`), to measure whether dropping them helps.

Typical use (see README "Contention"): two quiet runs and one beside
``python -m tools.loadgen --seconds 120``, then
``python -m tools.speedup_drift quiet1 quiet2 loaded``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import pandas as pd

from harness.measure.headline import HEADLINE_MIN_SAMPLES, contended_samples
from harness.report.tables import speedup_table
from harness.store.load import load_run


def drop_contended(df: Any) -> Any:
    """A copy of a runs DataFrame (``harness.store.load``) whose timed ``ok`` cells keep only
    their uncontended samples, with medians, throughput and ``thin`` recomputed.

    For checking what dropping every contended sample would do, however few are left
    (``--drop-contended``); the harness's own rule,
    :func:`harness.measure.headline.headline_samples`,
    keeps at least ``HEADLINE_MIN_SAMPLES``.
    A cell without per-sample contention is left as it is.
    """
    out = df.copy()
    for i, r in out.iterrows():
        values, samples = r.get("contention"), r.get("samples")
        if r["status"] != "ok" or not isinstance(values, list) or not isinstance(samples, list):
            continue
        if not values or len(values) != len(samples):
            continue
        cpus = r.get("cpu_count")
        cpus = int(cpus) if isinstance(cpus, (int, float)) and cpus == cpus else None
        keep = [s for s, bad in zip(samples, contended_samples(values, int(r.get("threads") or 1),
                                                                cpus), strict=True) if not bad]
        if not keep or len(keep) == len(samples):
            continue
        old, new = float(r["time_median_s"]), float(np.median(keep))
        out.at[i, "samples"] = keep
        out.at[i, "n_samples"] = len(keep)
        out.at[i, "time_median_s"] = new
        out.at[i, "thin"] = len(keep) < HEADLINE_MIN_SAMPLES
        for col in ("tokens_per_s", "flops_per_s"):
            if col in out and r.get(col) == r.get(col) and r.get(col) is not None:
                out.at[i, col] = float(r[col]) * old / new
        if "time_per_token_s" in out and r.get("time_per_token_s") == r.get("time_per_token_s") \
                and r.get("time_per_token_s") is not None:
            out.at[i, "time_per_token_s"] = float(r["time_per_token_s"]) * new / old
    return out


def speedups(run: str, baseline: str, drop: bool) -> pd.Series:
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
    p = argparse.ArgumentParser(prog="python -m tools.speedup_drift",
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
