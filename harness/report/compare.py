"""Comparing two runs (``python -m harness compare``, see :mod:`harness.cli.compare`).

Cells are matched by ``cell_id``. For each cell measured in both runs: the ratio of median
times B/A and a two-sided Mann–Whitney U test on the two runs' samples (no assumption of
normality; timing samples are skewed). A cell is a *regression* when B is slower by more
than the threshold **and** the difference is significant at ``alpha``; an *improvement*
likewise when B is faster by more than the threshold. A cell that finished in A and failed
in B (OOM, timeout, error) is a *new failure* and counts as a regression. Cells in one run
only are listed, not dropped. ``compare_runs`` returns the same as a DataFrame.

**Too few samples to test.** The smallest two-sided p-value the exact Mann–Whitney test can
give with ``a`` and ``b`` samples is ``2 / C(a + b, a)``: 0.33 with 2 per side, 0.10 with
3, 0.029 with 4. When it is not below ``alpha`` no difference could ever be significant,
so "same" or "slower (n.s.)" would be claims without evidence; such a cell gets the
verdict *insufficient samples* instead. ``--fail-on-regression`` decides it by a rule that
needs no test: it fails when **every** sample of B is slower than **every** sample of A by
more than the threshold (``min(B) > (1 + threshold) · max(A)``, column ``all_slower``).

**A time no ratio can rest on.** An ok cell whose median is not a positive finite number,
or one of whose samples is negative or not finite, gets the verdict *invalid time*, with
the bad value in column ``problem``, and fails ``--fail-on-regression``: a median of
-1 ms would otherwise be the fastest cell of all. The store's reader already skips records
holding such figures (``Record.problem``) except a zero median, so this guards a frame
built some other way and a clock that read nothing.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from harness.measure.headline import headline_of

KEYS = ("arch", "workload", "seq_len", "batch", "preset", "device", "dtype", "compile")
# verdicts, in the order they are listed
VERDICTS = (
    "regression",
    "new failure",
    "invalid time",
    "improvement",
    "fixed",
    "insufficient samples",
    "slower (n.s.)",
    "faster (n.s.)",
    "same",
    "failed in both",
    "only in A",
    "only in B",
)
FAILING = ("regression", "new failure", "invalid time")


def _pvalue(a: list[float], b: list[float]) -> float:
    """Two-sided Mann–Whitney U p-value; nan when either side has fewer than two samples."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if np.ptp(np.concatenate([a, b])) == 0:
        return 1.0  # identical constant samples: no evidence of a difference
    return float(stats.mannwhitneyu(b, a, alternative="two-sided").pvalue)


def min_pvalue(n_a: int, n_b: int) -> float:
    """The smallest two-sided p-value an exact Mann–Whitney test can reach (1 if n < 1)."""
    if n_a < 1 or n_b < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def can_reach_significance(n_a: int, n_b: int, alpha: float) -> bool:
    """Whether some outcome of the test on these sample counts is significant at alpha."""
    return n_a >= 2 and n_b >= 2 and min_pvalue(n_a, n_b) < alpha


def all_slower(a: list[float], b: list[float], threshold: float) -> bool:
    """Every B sample slower than every A sample by more than ``threshold``."""
    return len(a) > 0 and len(b) > 0 and min(b) > (1 + threshold) * max(a)


def _verdict(sa: str, sb: str, ratio: float, p: float, threshold: float, alpha: float,
             can_test: bool = True) -> str:
    if sa != "ok" and sb != "ok":
        return "failed in both"
    if sa == "ok" and sb != "ok":
        return "new failure"
    if sa != "ok":
        return "fixed"
    if not can_test:
        return "insufficient samples"
    significant = math.isfinite(p) and p < alpha
    if ratio > 1 + threshold:
        return "regression" if significant else "slower (n.s.)"
    if ratio < 1 - threshold:
        return "improvement" if significant else "faster (n.s.)"
    return "same"


def _samples(r: pd.Series) -> list[float]:
    """The samples a cell's median rests on (its quiet ones when it has enough)."""
    return headline_of(r)


def time_problem(r: pd.Series) -> str | None:
    """Why an ok cell's time cannot carry a ratio (its median or a sample named with its
    value), or None: only a positive median over non-negative samples is a time."""
    median = r["time_median_s"]
    if not isinstance(median, (int, float, np.number)) or isinstance(median, bool):
        return f"median {median!r}"
    if not (math.isfinite(median) and median > 0):
        return f"median {float(median)!r} s"
    bad = [s for s in _samples(r) if not (math.isfinite(s) and s >= 0)]
    return f"a sample of {bad[0]!r} s" if bad else None


def failing(result: pd.DataFrame) -> pd.Series:
    """Cells ``--fail-on-regression`` fails: regressions, new failures, invalid times, and
    cells with too few samples to test whose every B sample is slower than every A sample
    beyond the threshold."""
    return result["verdict"].isin(FAILING) | (
        (result["verdict"] == "insufficient samples") & result["all_slower"].astype(bool)
    )


def compare_runs(
    a: pd.DataFrame, b: pd.DataFrame, *, threshold: float = 0.1, alpha: float = 0.05
) -> pd.DataFrame:
    """One row per cell of either run: statuses, medians, ``ratio`` (B/A), ``p_value``,
    sample counts ``n_a``/``n_b``, ``all_slower``, ``problem`` (an ok side's time that is
    none, see :func:`time_problem`) and the verdict.

    ``a`` and ``b`` are record DataFrames with one row per cell (``harness.report.load_runs``
    of one directory, or ``harness.store.load.load_runs``).
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
        row["n_a"] = 0 if ra is None else len(_samples(ra))
        row["n_b"] = 0 if rb is None else len(_samples(rb))
        row["all_slower"] = False
        row["problem"] = "; ".join(
            f"{side}: {why}" for side, r in (("A", ra), ("B", rb))
            if r is not None and r["status"] == "ok" and (why := time_problem(r)))
        can_test = True
        if ra is None or rb is None:
            row["verdict"] = "only in B" if ra is None else "only in A"
        elif row["problem"]:
            row["verdict"] = "invalid time"
        else:
            if ra["status"] == "ok" and rb["status"] == "ok":
                row["ratio"] = float(rb["time_median_s"]) / float(ra["time_median_s"])
                sa_, sb_ = _samples(ra), _samples(rb)
                row["p_value"] = _pvalue(sa_, sb_)
                row["all_slower"] = all_slower(sa_, sb_, threshold)
                can_test = can_reach_significance(len(sa_), len(sb_), alpha)
            row["verdict"] = _verdict(
                ra["status"], rb["status"], row["ratio"], row["p_value"], threshold, alpha,
                can_test,
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
