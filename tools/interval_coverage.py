"""Do a run's speedup intervals hold what the same command measures next time?

    python -m tools.interval_coverage QUIET_RUN [QUIET_RUN ...] [--loaded RUN ...]
                                      [--pool K] [--baseline lmu] [--resamples 2000]

For the speedups (workload, batch, arch, n) measured in every quiet run: the share of
(run, speedup) cases whose 95% interval holds the median of the *other* quiet runs'
speedups, and the median relative half-width of the intervals. With ``--loaded``, for
each loaded run: how many of its timed cells are flagged contended, and which speedups
fall outside the span of the quiet runs' intervals without a flag. With ``--pool K``:
the same for the intervals of every K of the quiet runs pooled (``harness report
--pool``), each against the median of the runs outside the pool.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys

import pandas as pd

from harness.report.tables import speedup_table
from harness.store.load import load_runs

KEYS = ["workload", "batch", "arch", "seq_len"]


def speedups(runs: str | list[str], baseline: str, resamples: int) -> pd.DataFrame:
    """The speedups of one run, or of several pooled."""
    t = speedup_table(load_runs(runs, pool=True), baseline, n_resamples=resamples)
    t = t[(t["arch"] != baseline) & t["speedup"].notna()].copy()
    t["flagged"] = t["contended"].astype(bool)  # the cell's or its baseline's
    return t.set_index(KEYS)[["speedup", "ci_low", "ci_high", "flagged"]]


def coverage(runs: list[pd.DataFrame], intervals: list[tuple[pd.DataFrame, set[int]]] | None
             = None) -> tuple[int, int, float]:
    """(cases held, cases, median relative half-width) over every speedup of each interval
    table, against the median of the runs it was not made from (by default: each run's
    own intervals against the other runs)."""
    if intervals is None:
        intervals = [(r, {i}) for i, r in enumerate(runs)]
    common = set.intersection(*(set(r.index) for r in runs))
    held = total = 0
    widths = []
    for r, made_of in intervals:
        for key in common:
            others = statistics.median(o.loc[key, "speedup"] for j, o in enumerate(runs)
                                       if j not in made_of)
            lo, hi, s = r.loc[key, ["ci_low", "ci_high", "speedup"]]
            held += bool(lo <= others <= hi)
            total += 1
            widths.append((hi - lo) / 2 / s)
    return held, total, statistics.median(widths) if widths else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.interval_coverage",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("quiet", nargs="+", metavar="QUIET_RUN")
    p.add_argument("--loaded", nargs="*", default=[], metavar="RUN")
    p.add_argument("--pool", type=int, default=0, metavar="K",
                   help="also every K of the quiet runs pooled, against the runs outside")
    p.add_argument("--baseline", default="lmu")
    p.add_argument("--resamples", type=int, default=2000)
    args = p.parse_args(argv)
    if len(args.quiet) < 2:
        print("error: give at least two quiet runs", file=sys.stderr)
        return 2
    if args.pool and not 2 <= args.pool < len(args.quiet):
        print(f"error: --pool {args.pool}: give 2 to {len(args.quiet) - 1}", file=sys.stderr)
        return 2
    quiet = [speedups(r, args.baseline, args.resamples) for r in args.quiet]
    held, total, width = coverage(quiet)
    print(f"{len(quiet)} quiet runs: intervals hold the other runs' median in {held} of "
          f"{total} cases ({held / total:.0%}); median relative half-width {width:.1%}")
    if args.pool:
        pools = [(speedups([args.quiet[i] for i in c], args.baseline, args.resamples), set(c))
                 for c in itertools.combinations(range(len(quiet)), args.pool)]
        held, total, width = coverage(quiet, pools)
        print(f"{len(pools)} pools of {args.pool}: intervals hold the median of the runs "
              f"outside in {held} of {total} cases ({held / total:.0%}); median relative "
              f"half-width {width:.1%}")
    common = sorted(set.intersection(*(set(r.index) for r in quiet)))
    span = {k: (min(r.loc[k, "ci_low"] for r in quiet), max(r.loc[k, "ci_high"] for r in quiet))
            for k in common}
    for run in args.loaded:
        t = speedups(run, args.baseline, args.resamples)
        flagged = int(t["flagged"].sum())
        outside = [(k, round(t.loc[k, "speedup"], 2), tuple(round(x, 2) for x in span[k]))
                   for k in common if k in t.index and not t.loc[k, "flagged"]
                   and not span[k][0] <= t.loc[k, "speedup"] <= span[k][1]]
        print(f"{run}: {flagged} flagged contended; {len(outside)} outside the quiet span "
              f"unflagged" + "".join(f"\n  {k}: {s} not in {sp}" for k, s, sp in outside))
    return 0


if __name__ == "__main__":
    sys.exit(main())
