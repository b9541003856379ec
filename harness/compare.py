"""``python -m harness compare RUN_A RUN_B [--threshold 0.1] [--fail-on-regression]``.

Cells are matched by ``cell_id``. For each cell measured in both runs: the ratio of median
times B/A and a two-sided Mann–Whitney U test on the two runs' samples (no assumption of
normality; timing samples are skewed). A cell is a *regression* when B is slower by more
than the threshold **and** the difference is significant at ``alpha``; an *improvement*
likewise when B is faster by more than the threshold. A cell that finished in A and failed
in B (OOM, timeout, error) is a *new failure* and counts as a regression. Cells in one run
only are listed, not dropped. ``compare_runs`` returns the same as a DataFrame.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from harness.errors import UsageError

KEYS = ("arch", "workload", "seq_len", "batch", "preset", "device", "dtype", "compile")
# verdicts, in the order they are listed
VERDICTS = (
    "regression",
    "new failure",
    "improvement",
    "fixed",
    "slower (n.s.)",
    "faster (n.s.)",
    "same",
    "failed in both",
    "only in A",
    "only in B",
)
FAILING = ("regression", "new failure")


def _pvalue(a: list[float], b: list[float]) -> float:
    """Two-sided Mann–Whitney U p-value; nan when either side has fewer than two samples."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if np.ptp(np.concatenate([a, b])) == 0:
        return 1.0  # identical constant samples: no evidence of a difference
    return float(stats.mannwhitneyu(b, a, alternative="two-sided").pvalue)


def _verdict(sa: str, sb: str, ratio: float, p: float, threshold: float, alpha: float) -> str:
    if sa != "ok" and sb != "ok":
        return "failed in both"
    if sa == "ok" and sb != "ok":
        return "new failure"
    if sa != "ok":
        return "fixed"
    significant = math.isfinite(p) and p < alpha
    if ratio > 1 + threshold:
        return "regression" if significant else "slower (n.s.)"
    if ratio < 1 - threshold:
        return "improvement" if significant else "faster (n.s.)"
    return "same"


def compare_runs(
    a: pd.DataFrame, b: pd.DataFrame, *, threshold: float = 0.1, alpha: float = 0.05
) -> pd.DataFrame:
    """One row per cell of either run: statuses, medians, ``ratio`` (B/A), ``p_value``, verdict.

    ``a`` and ``b`` are record DataFrames with one row per cell (``harness.report.load_runs``
    of one directory, or ``harness.results.load``).
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    ia, ib = a.set_index("cell_id"), b.set_index("cell_id")
    rows = []
    for cid in list(ia.index) + [c for c in ib.index if c not in ia.index]:
        ra = ia.loc[cid] if cid in ia.index else None
        rb = ib.loc[cid] if cid in ib.index else None
        ref = ra if ra is not None else rb
        row = {"cell_id": cid, **{k: ref[k] for k in KEYS}}
        row["status_a"] = None if ra is None else ra["status"]
        row["status_b"] = None if rb is None else rb["status"]
        row["median_a_s"] = np.nan if ra is None else ra["time_median_s"]
        row["median_b_s"] = np.nan if rb is None else rb["time_median_s"]
        row["ratio"], row["p_value"] = np.nan, np.nan
        if ra is None or rb is None:
            row["verdict"] = "only in B" if ra is None else "only in A"
        else:
            if ra["status"] == "ok" and rb["status"] == "ok":
                row["ratio"] = float(rb["time_median_s"]) / float(ra["time_median_s"])
                row["p_value"] = _pvalue(list(ra["samples"]), list(rb["samples"]))
            row["verdict"] = _verdict(
                ra["status"], rb["status"], row["ratio"], row["p_value"], threshold, alpha
            )
        rows.append(row)
    out = pd.DataFrame(rows)
    order = {v: i for i, v in enumerate(VERDICTS)}
    out["_o"] = out["verdict"].map(order)
    return (
        out.sort_values(["_o", "workload", "arch", "seq_len"], kind="stable")
        .drop(columns="_o")
        .reset_index(drop=True)
    )


def _print(result: pd.DataFrame, a: str, b: str, threshold: float, alpha: float) -> None:
    from rich.console import Console
    from rich.table import Table

    style = {
        "regression": "bold red",
        "new failure": "bold red",
        "improvement": "green",
        "fixed": "green",
    }
    table = Table(title=f"B = {b}  vs  A = {a}   (threshold {threshold:.0%}, alpha {alpha})")
    # cell keys that vary get a column; constant ones would only repeat themselves
    extras = [k for k in ("preset", "batch", "dtype", "compile") if result[k].nunique() > 1]
    cols = ("arch", "workload", "n", "device", *extras, "A", "B", "B/A", "p", "verdict")
    for col in cols:
        table.add_column(col, justify="right" if col in ("n", "A", "B", "B/A", "p") else "left")

    def t(s: float, status: object) -> str:
        if not isinstance(status, str):  # cell absent from this run
            return "—"
        if status != "ok":
            return status.upper()
        for unit, div in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
            if s >= div:
                return f"{s / div:.3g} {unit}"
        return f"{s / 1e-9:.3g} ns"

    for r in result.itertuples(index=False):
        table.add_row(
            r.arch,
            r.workload,
            str(r.seq_len),
            r.device,
            *[str(getattr(r, k)) for k in extras],
            t(r.median_a_s, r.status_a),
            t(r.median_b_s, r.status_b),
            "" if math.isnan(r.ratio) else f"{r.ratio:.3f}",
            "" if math.isnan(r.p_value) else f"{r.p_value:.2g}",
            f"[{style.get(r.verdict, '')}]{r.verdict}" if r.verdict in style else r.verdict,
        )
    console = Console(width=max(Console().width, 110))
    console.print(table)
    counts = result["verdict"].value_counts()
    console.print(", ".join(f"{v}: {counts[v]}" for v in VERDICTS if v in counts))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_a", metavar="RUN_A", help="reference run directory")
    p.add_argument("run_b", metavar="RUN_B", help="run directory compared against RUN_A")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.1,
        help="relative change that counts (0.1 = 10%% slower or faster)",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the test")
    p.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 if any cell regressed significantly beyond the threshold or newly failed",
    )
    p.add_argument("--csv", default=None, help="also write the comparison as CSV to this file")


def main(args: argparse.Namespace) -> int:
    from harness.report.data import load_run

    if not 0 < args.threshold < 1:
        raise UsageError(f"--threshold must be between 0 and 1 (exclusive), got {args.threshold}")
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha must be between 0 and 1 (exclusive), got {args.alpha}")
    a, b = load_run(args.run_a), load_run(args.run_b)
    result = compare_runs(a, b, threshold=args.threshold, alpha=args.alpha)
    _print(result, args.run_a, args.run_b, args.threshold, args.alpha)
    if result["verdict"].isin(["only in A", "only in B"]).all():
        print("note: the runs have no cell in common (different devices, dtypes or sweeps?)")
    if args.csv:
        path = Path(args.csv)
        try:
            result.to_csv(path, index=False)
        except OSError as exc:
            raise UsageError(f"cannot write {str(path)!r}: {exc.strerror}") from None
    failing = result["verdict"].isin(FAILING)
    if args.fail_on_regression and failing.any():
        print(f"{int(failing.sum())} regression(s) beyond {args.threshold:.0%}")
        return 1
    return 0
