"""Speedup and absolute tables: tidy DataFrames, then Markdown, LaTeX (booktabs) and CSV.

Every (arch, seq_len) of a facet gets a cell: a number, or the status that explains why
there is none (OOM, timeout, error, skipped, not run) — never a silent gap.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.errors import UsageError
from harness.measure.headline import headline_rounds_of
from harness.report.bootstrap import TOO_FEW, ratio_ci
from harness.store.load import FACET_KEYS, read_env
from harness.store.records import STATUSES

STATUS_TEXT = {"oom": "OOM", "timeout": "timeout", "error": "error", "skipped": "skipped",
               "nonfinite": "non-finite"}
NOT_RUN = "n/a"
NOISY_MARK = "\u2020"  # dagger: IQR/median above the runner's noise threshold
THIN_MARK = "\u2021"  # double dagger: fewer than HEADLINE_MIN_SAMPLES samples (no interval)
CONTENDED_MARK = "\u00a7"  # section sign: other processes used the CPUs while it sampled


@dataclass(frozen=True)
class Metric:
    """A record column shown as a table: its title and how its numbers are scaled."""

    column: str
    title: str
    units: tuple[tuple[str, float], ...]  # (unit label, divisor), smallest first


METRICS = {
    "time_median_s": Metric(
        "time_median_s", "median time", (("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0))
    ),
    "time_per_token_s": Metric(
        "time_per_token_s", "time per token", (("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3), ("s", 1))
    ),
    "peak_mem_bytes": Metric(
        "peak_mem_bytes", "peak memory", (("KiB", 2**10), ("MiB", 2**20), ("GiB", 2**30))
    ),
    "state_bytes": Metric(
        "state_bytes", "state size", (("B", 1), ("KiB", 2**10), ("MiB", 2**20), ("GiB", 2**30))
    ),
    "tokens_per_s": Metric(
        "tokens_per_s", "throughput", (("tok/s", 1), ("k tok/s", 1e3), ("M tok/s", 1e6))
    ),
}


def fmt_number(x: float) -> str:
    """Three significant figures without scientific notation for the usual ranges."""
    if x is None or not math.isfinite(x):
        return "nan"
    ax = abs(x)
    if ax >= 100:
        return f"{x:,.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:#.3g}"


def pick_unit(values: pd.Series, metric: Metric) -> tuple[str, float]:
    """The largest unit that keeps the table's median value at or above 1."""
    v = values.dropna()
    v = v[v > 0]
    if v.empty:
        return metric.units[-1 if metric.column == "tokens_per_s" else 0]
    med = float(v.median())
    chosen = metric.units[0]
    for label, div in metric.units:
        if med / div >= 1:
            chosen = (label, div)
    return chosen


def _failure_text(status: str) -> str:
    return STATUS_TEXT.get(status, status)


def _facets(df: pd.DataFrame) -> list[tuple[dict[str, object], pd.DataFrame]]:
    keys = [k for k in FACET_KEYS if k in df.columns]
    return [
        (dict(zip(keys, key, strict=True)), g)
        for key, g in df.groupby(keys, sort=True, dropna=False)
    ]


def check_baseline(df: pd.DataFrame, baseline: str) -> None:
    archs = sorted(df["arch"].unique())
    if baseline not in archs:
        raise UsageError(
            f"baseline {baseline!r} is not in the run(s); architectures present: {', '.join(archs)}"
        )


def speedup_table(
    df: pd.DataFrame,
    baseline: str,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Tidy speedups: one row per facet × arch × seq_len, ``baseline time / arch time``.

    Columns: facet keys, ``arch``, ``seq_len``, ``status`` (the arch's), ``base_status``,
    ``speedup`` (ratio of the records' medians), ``ci_low``/``ci_high`` (percentile bootstrap
    of the ratio of medians, resampling both cells' rounds, then samples within them),
    ``noisy`` (either side noisy), ``thin`` (either side rests on too few samples) and
    ``too_few`` (so no interval).
    """
    check_baseline(df, baseline)
    rows = []
    for facet, g in _facets(df):
        base = g[g["arch"] == baseline].set_index("seq_len")
        for r in g.itertuples(index=False):
            row = {**facet, "arch": r.arch, "seq_len": int(r.seq_len), "status": r.status}
            b = base.loc[r.seq_len] if r.seq_len in base.index else None
            row["base_status"] = None if b is None else b["status"]
            row.update(speedup=np.nan, ci_low=np.nan, ci_high=np.nan, noisy=bool(r.noisy),
                       thin=bool(r.thin), too_few=False,
                       contended=bool(getattr(r, "contended", False)))
            if b is not None and r.status == "ok" and b["status"] == "ok":
                row["noisy"] = bool(r.noisy) or bool(b["noisy"])
                row["thin"] = bool(r.thin) or bool(b["thin"])
                row["contended"] = row["contended"] or bool(b.get("contended", False))
                if r.arch == baseline:
                    row.update(speedup=1.0, ci_low=1.0, ci_high=1.0)
                else:
                    (num, num_rounds), (den, den_rounds) = (headline_rounds_of(b),
                                                            headline_rounds_of(r))
                    ci = ratio_ci(
                        num,
                        den,
                        num_rounds=num_rounds,
                        den_rounds=den_rounds,
                        confidence=confidence,
                        n_resamples=n_resamples,
                        seed=seed,
                    )
                    row.update(
                        speedup=float(b["time_median_s"]) / float(r.time_median_s),
                        ci_low=ci.low,
                        ci_high=ci.high,
                        too_few=ci.too_few,
                    )
            rows.append(row)
    return pd.DataFrame(rows)


def metric_table(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Tidy absolute values of one record column (``time_median_s``, ``peak_mem_bytes`` …)."""
    if metric not in df.columns:
        raise ValueError(f"unknown metric {metric!r}; valid choices: {', '.join(METRICS)}")
    keys = [k for k in FACET_KEYS if k in df.columns]
    extra = [c for c in ("thin", "contended") if c in df.columns]
    out = df[keys + ["arch", "seq_len", "status", "noisy", *extra, metric]].copy()
    out = out.rename(columns={metric: "value"})
    out["metric"] = metric
    return out.reset_index(drop=True)


def shared_computation(archs: Iterable[str], workload: str) -> str:
    """For a last-position workload (``classify``): which of ``archs`` run another's
    ``forward_last`` (``AdapterInfo.last_output_of``), so their rows time one computation
    (the parallel LMU's memory modes all take eq. 25's last state); "" when none do."""
    import architectures
    import workloads

    try:
        if not workloads.info(workload).last_position:
            return ""
    except (KeyError, ValueError):  # a workload of a plugin not loaded here
        return ""
    present, same = set(archs), {}
    for a in sorted(present):
        try:
            of = architectures.info(a).last_output_of
        except ValueError:  # an adapter of a plugin not loaded here
            continue
        if of and of in present:
            same.setdefault(of, []).append(a)
    return "; ".join(f"{' and '.join(v)} run {of}'s forward_last (one computation)"
                     for of, v in same.items())


def _grid(long: pd.DataFrame, text: Callable[[pd.Series], str], arch_order: list[str]):
    """Arch × seq_len grid of display strings; missing combinations read ``n/a``."""
    lens = sorted(long["seq_len"].unique())
    archs = [a for a in arch_order if a in set(long["arch"])]
    grid = pd.DataFrame(NOT_RUN, index=pd.Index(archs), columns=pd.Index(lens), dtype=object)
    for _, r in long.iterrows():
        grid.loc[r["arch"], r["seq_len"]] = text(r)
    return grid


def speedup_grid(long: pd.DataFrame, arch_order: list[str], *, ci: bool = True) -> pd.DataFrame:
    """Display grid of one facet's speedups: ``3.21 [3.10, 3.32]``, or why there is none."""

    def text(r: pd.Series) -> str:
        if r["status"] != "ok":
            return _failure_text(r["status"])
        if r["base_status"] is None or (isinstance(r["base_status"], float)):
            return "no baseline"
        if r["base_status"] != "ok":
            return f"baseline {_failure_text(r['base_status'])}"
        s = fmt_number(r["speedup"])
        if ci and r.get("too_few", False):
            s += f" ({TOO_FEW})"
        elif ci and math.isfinite(r["ci_low"]) and r["ci_low"] != r["ci_high"]:
            s += f" [{fmt_number(r['ci_low'])}, {fmt_number(r['ci_high'])}]"
        thin = r.get("thin", False) and not (ci and r.get("too_few", False))  # said already
        return (s + (NOISY_MARK if r["noisy"] else "") + (THIN_MARK if thin else "")
                + (CONTENDED_MARK if r.get("contended", False) else ""))

    return _grid(long, text, arch_order)


def metric_grid(long: pd.DataFrame, metric: str, arch_order: list[str]) -> tuple[pd.DataFrame, str]:
    """Display grid of one facet's absolute values in one unit (returned with the grid)."""
    m = METRICS[metric]
    ok = long["status"] == "ok"
    unit, div = pick_unit(long.loc[ok, "value"].astype(float), m)

    def text(r: pd.Series) -> str:
        if r["status"] != "ok":
            return _failure_text(r["status"])
        if r["value"] is None or not math.isfinite(float(r["value"])):
            return "not measured"
        timed = metric.startswith("time") or metric == "tokens_per_s"
        return (
            fmt_number(float(r["value"]) / div)
            + (NOISY_MARK if r["noisy"] and timed else "")
            + (THIN_MARK if r.get("thin", False) and timed else "")
            + (CONTENDED_MARK if r.get("contended", False) and timed else "")
        )

    return _grid(long, text, arch_order), unit


# ---------------------------------------------------------------- writers


def markdown_table(frame: pd.DataFrame, left: Iterable[str] = (), code: Iterable[str] = ()) -> str:
    """GitHub-flavoured Markdown of a frame of strings (pandas' own needs the optional
    ``tabulate``): columns in ``left`` align left, the rest right; ``code`` columns in
    backticks."""
    left, code = set(left), set(code)
    lines = [
        "| " + " | ".join(str(c) for c in frame.columns) + " |",
        "|" + "|".join(":---" if c in left else "---:" for c in frame.columns) + "|",
    ]
    for _, r in frame.iterrows():
        cells = [f"`{v}`" if c in code else str(v) for c, v in r.items()]
        lines.append("| " + " | ".join(v.replace("|", "\\|") for v in cells) + " |")
    return "\n".join(lines) + "\n"


def _with_corner(grid: pd.DataFrame, corner: str) -> pd.DataFrame:
    """A grid's row labels as its first column, named ``corner``."""
    t = grid.copy()
    t.columns = [str(c) for c in t.columns]
    t.insert(0, corner, [str(i) for i in grid.index])
    return t.reset_index(drop=True)


def to_markdown(grid: pd.DataFrame, corner: str = "arch \\ n") -> str:
    """A grid (architectures by sequence length) as Markdown."""
    return markdown_table(_with_corner(grid, corner), left=[corner], code=[corner])


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(s: str) -> str:
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in s)
    return (
        out.replace(NOISY_MARK, r"\textsuperscript{\dag}")
        .replace(THIN_MARK, r"\textsuperscript{\ddag}")
        .replace(CONTENDED_MARK, r"\textsuperscript{\S}")
        .replace("µ", r"\textmu{}")
        .replace("×", r"$\times$")
        .replace("↑", r"$\uparrow$")
        .replace("↓", r"$\downarrow$")
        .replace("∞", r"$\infty$")
        .replace(">", r"$>$")
    )


def latex_table(frame: pd.DataFrame, left: int = 1, comment: str = "",
                header: list[str] | None = None) -> str:
    """A bare booktabs ``tabular`` (pandas Styler) of a frame of strings, to ``\\input``
    inside your own table: its first ``left`` columns align left, the rest right. The
    column names are escaped unless ``header`` gives them as LaTeX already."""
    t = frame.map(lambda v: latex_escape(str(v)))
    t.columns = header or [latex_escape(str(c)) for c in frame.columns]
    body = t.style.hide(axis="index").to_latex(
        hrules=True, column_format="l" * left + "r" * (len(t.columns) - left))
    head = "% generated by seqbench (python -m harness report); needs \\usepackage{booktabs}\n"
    return head + "".join(f"% {line}\n" for line in comment.splitlines()) + body


def to_latex(grid: pd.DataFrame, comment: str = "") -> str:
    """A grid (architectures by sequence length) as LaTeX; columns read ``$n=...$``."""
    return latex_table(_with_corner(grid, ""), 1, comment,
                       header=[""] + [f"$n={c}$" for c in grid.columns])


def run_summaries(dirs: Iterable[str | os.PathLike[str]], df: pd.DataFrame) -> pd.DataFrame:
    """One row per run directory: environment and status counts, for the report's index."""
    rows = []
    for d in dirs:
        env = read_env(d)
        sub = df[df["run_dir"] == str(d)]
        counts = sub["status"].value_counts()
        rows.append(
            {
                "run": str(d),
                "device": ", ".join(sorted(sub["device_label"].unique())),
                "host": ", ".join(sorted(set(sub["hostname"]) - {""})) or env.get("hostname", ""),
                "torch": env.get("torch", ""),
                "commit": str(env.get("git_commit", ""))[:10],
                "cells": len(sub),
                **{s: int(counts.get(s, 0)) for s in STATUSES},
            }
        )
    return pd.DataFrame(rows)
