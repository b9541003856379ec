"""Do a run's speedup intervals hold what the same command measures next time?

    python -m tools.interval_coverage QUIET_RUN [QUIET_RUN ...] [--loaded RUN ...]
                                      [--baseline lmu] [--resamples 2000]

For the speedups (workload, batch, arch, n) measured in every quiet run: the share of
(run, speedup) cases whose 95% interval holds the median of the *other* quiet runs'
speedups, and the median relative half-width of the intervals. With ``--loaded``, for
each loaded run: how many of its timed cells are flagged contended, and which speedups
fall outside the span of the quiet runs' intervals without a flag.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import pandas as pd

from harness.report.tables import speedup_table
from harness.store.load import load_run

KEYS = ["workload", "batch", "arch", "seq_len"]


def speedups(run: str, baseline: str, resamples: int) -> pd.DataFrame:
    t = speedup_table(load_run(run), baseline, n_resamples=resamples)
    t = t[(t["arch"] != baseline) & t["speedup"].notna()].copy()
    t["flagged"] = t["contended"].astype(bool)  # the cell's or its baseline's
    return t.set_index(KEYS)[["speedup", "ci_low", "ci_high", "flagged"]]


def coverage(runs: list[pd.DataFrame]) -> tuple[int, int, float]:
    """(cases held, cases, median relative half-width) over every run and speedup."""
    common = set.intersection(*(set(r.index) for r in runs))
    held = total = 0
    widths = []
    for i, r in enumerate(runs):
        for key in common:
            others = statistics.median(o.loc[key, "speedup"] for j, o in enumerate(runs)
                                       if j != i)
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
    p.add_argument("--baseline", default="lmu")
    p.add_argument("--resamples", type=int, default=2000)
    args = p.parse_args(argv)
    if len(args.quiet) < 2:
        print("error: give at least two quiet runs", file=sys.stderr)
        return 2
    quiet = [speedups(r, args.baseline, args.resamples) for r in args.quiet]
    held, total, width = coverage(quiet)
    print(f"{len(quiet)} quiet runs: intervals hold the other runs' median in {held} of "
          f"{total} cases ({held / total:.0%}); median relative half-width {width:.1%}")
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
