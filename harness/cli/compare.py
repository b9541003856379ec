"""``python -m harness compare RUN_A RUN_B [--threshold 0.1] [--fail-on-regression]``: the
command line of :mod:`harness.report.compare` (which says how cells are judged)."""

from __future__ import annotations

import argparse
import math
import warnings
from pathlib import Path

import pandas as pd

from harness.cli.args import check_run_dirs
from harness.errors import UsageError, os_errors_as_usage
from harness.measure.timing import format_seconds
from harness.report.compare import VERDICTS, compare_runs, failing
from harness.store.records import DamagedRecordWarning


def _print(result: pd.DataFrame, a: str, b: str, threshold: float, alpha: float) -> None:
    from rich.console import Console
    from rich.table import Table

    style = {
        "regression": "bold red",
        "new failure": "bold red",
        "invalid time": "bold red",
        "improvement": "green",
        "fixed": "green",
        "insufficient samples": "yellow",
    }
    table = Table(title=f"B = {b}  vs  A = {a}   (threshold {threshold:.0%}, alpha {alpha})")
    # cell keys that vary get a column; constant ones would only repeat themselves
    extras = [k for k in ("preset", "batch", "dtype", "compile") if result[k].nunique() > 1]
    cols = ("arch", "workload", "n", "device", *extras, "A", "B", "B/A", "samples", "p",
            "verdict")
    right = ("n", "A", "B", "B/A", "samples", "p")
    for col in cols:
        table.add_column(col, justify="right" if col in right else "left")

    def t(s: float, status: object) -> str:
        if not isinstance(status, str):  # cell absent from this run
            return "—"
        if status != "ok":
            return status.upper()
        return format_seconds(s)

    for r in result.itertuples(index=False):
        verdict = r.verdict
        if verdict == "insufficient samples" and r.all_slower:
            verdict += " (every B slower)"
        if r.problem:
            verdict += f" ({r.problem})"
        table.add_row(
            r.arch,
            r.workload,
            str(r.seq_len),
            r.device,
            *[str(getattr(r, k)) for k in extras],
            t(r.median_a_s, r.status_a),
            t(r.median_b_s, r.status_b),
            "" if math.isnan(r.ratio) else f"{r.ratio:.3f}",
            f"{r.n_a}/{r.n_b}" if r.n_a or r.n_b else "",
            "" if math.isnan(r.p_value) else f"{r.p_value:.2g}",
            f"[{style[r.verdict]}]{verdict}" if r.verdict in style else verdict,
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
        help="exit 1 if any cell regressed significantly beyond the threshold or newly failed; "
        "a cell with too few samples to test fails when every B sample is slower than every "
        "A sample by more than the threshold",
    )
    p.add_argument("--csv", default=None, help="also write the comparison as CSV to this file")


def main(args: argparse.Namespace) -> int:
    from harness.store.load import load_run

    if not 0 < args.threshold < 1:
        raise UsageError(f"--threshold must be between 0 and 1 (exclusive), got {args.threshold}")
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha must be between 0 and 1 (exclusive), got {args.alpha}")
    check_run_dirs([args.run_a, args.run_b])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a, b = load_run(args.run_a), load_run(args.run_b)
    for w in caught:  # shown as ever; a damaged record is also remembered for the gate
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    damaged = [str(w.message) for w in caught if issubclass(w.category, DamagedRecordWarning)]
    result = compare_runs(a, b, threshold=args.threshold, alpha=args.alpha)
    _print(result, args.run_a, args.run_b, args.threshold, args.alpha)
    if result["verdict"].isin(["only in A", "only in B"]).all():
        print("note: the runs have no cell in common (different devices, dtypes or sweeps?)")
    if args.csv:
        path = Path(args.csv)
        with os_errors_as_usage(f"write {str(path)!r}"):
            result.to_csv(path, index=False)
    insufficient = result["verdict"] == "insufficient samples"
    if insufficient.any():
        print(
            f"note: {int(insufficient.sum())} cell(s) have too few samples for any test to "
            f"reach p < {args.alpha} (a Mann–Whitney test needs e.g. 4 per side at 0.05); "
            "--fail-on-regression fails them only when every B sample is slower than every "
            f"A sample by more than {args.threshold:.0%}"
        )
    if args.fail_on_regression and damaged:
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise UsageError(f"--fail-on-regression cannot vouch for a cell whose record is "
                         f"damaged: {damaged[0]}{more}")
    bad = failing(result)
    if args.fail_on_regression and bad.any():
        print(f"{int(bad.sum())} regression(s) beyond {args.threshold:.0%}")
        return 1
    return 0
