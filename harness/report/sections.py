"""The sections of ``index.md`` and the files they link: tables per facet, tasks, scaling
exponents, the profile breakdown and the failed cells. Each returns its Markdown lines."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

from harness.report.catalogue import write_figures
from harness.report.crossover import crossover_table
from harness.report.output import Output, by_facet, describe, slug, varying, write_csv, write_text
from harness.report.roofline import roofline_table, share_section
from harness.report.scaling import MIN_FIT_LENGTHS, scaling_table
from harness.report.style import ArchStyle
from harness.report.tables import (
    METRICS,
    latex_table,
    markdown_table,
    metric_grid,
    metric_table,
    shared_computation,
    speedup_grid,
    speedup_table,
    to_latex,
    to_markdown,
)
from harness.report.tasks import TEXT_COLUMNS, task_results, task_table
from harness.store.load import FACET_KEYS

TABLE_NAMES = {
    "time_median_s": "time",
    "peak_mem_bytes": "memory",
    "tokens_per_s": "throughput",
    "time_per_token_s": "latency",
    "state_bytes": "state",
}


def write_tables(df: pd.DataFrame, speed: pd.DataFrame, styles: dict[str, ArchStyle],
                 baseline: str, output: Output, n_resamples: int) -> list[str]:
    """Per facet: speedup and absolute tables as .md/.tex/.csv; returns index.md lines."""
    out = output.out
    order = list(styles)
    vary = varying(df, FACET_KEYS)
    lines: list[str] = []
    facet_cols = [k for k in FACET_KEYS if k in df.columns]
    for values, g in df.groupby(facet_cols, sort=True, dropna=False):
        key = dict(zip(facet_cols, values, strict=True))
        name = slug(
            key["workload"],
            key["device_label"],
            *[key[k] for k in vary if k not in ("workload", "device_label")],
        )
        extra = describe(key, vary)
        lines.append(
            f"### {key['workload']} — {key['device_label']}" + (f" ({extra})" if extra else "")
        )
        lines.append("")
        note = shared_computation(sorted(set(g["arch"])), str(key["workload"]))
        if note:
            lines += [f"Note: {note}.", ""]
        sp = speed
        for k, v in key.items():
            sp = sp[sp[k] == v]
        tables = [("speedup", speedup_grid(sp, order), None)]
        # per-token time and state size exist only where a per-token workload recorded them
        metrics = ["time_median_s", "peak_mem_bytes", "tokens_per_s", "time_per_token_s",
                   "state_bytes"]
        for m in metrics:
            if g[m].notna().any():
                grid, unit = metric_grid(metric_table(g, m), m, order)
                tables.append((m, grid, unit))
        for kind, grid, unit in tables:
            if kind == "speedup":
                title = (
                    f"Speedup over `{baseline}` (baseline median time / arch median time, "
                    f"95% bootstrap CI from the samples, {n_resamples} resamples)"
                )
                csv = sp
                comment = f"speedup over {baseline}: {key['workload']} on {key['device_label']}"
            else:
                title = f"{METRICS[kind].title} ({unit})"
                csv = metric_table(g, kind)
                comment = (
                    f"{METRICS[kind].title} ({unit}): {key['workload']} on {key['device_label']}"
                )
            stem = out / "tables" / f"{TABLE_NAMES.get(kind, kind)}_{name}"
            md = to_markdown(grid)
            write_text(stem.with_suffix(".md"), f"{title}\n\n{md}")
            write_text(
                stem.with_suffix(".tex"), to_latex(grid, comment + (f" ({extra})" if extra else ""))
            )
            write_csv(csv.drop(columns=["samples"], errors="ignore"), stem.with_suffix(".csv"))
            lines += [f"**{title}** — {output.links(stem)}", "", md]
        lines += roofline_table(g, order, output, name, f"{key['workload']} on "
                                f"{key['device_label']}" + (f" ({extra})" if extra else ""))
    return lines


TASK_INTRO = (
    "Each architecture trained under its task's protocol (fixed seed, AdamW, the same "
    "budget), evaluated on the held-out split at intervals. Final: the metric at the last "
    "evaluation; best: the best evaluation (↑ higher is better, ↓ lower). Time to target: "
    "training wall-clock seconds (evaluation excluded) at the first evaluation that met the "
    "target; tokens to target likewise. Speedup vs `{b}` = `{b}`'s time to target / the "
    "architecture's, same device, task and options; in brackets the range the evaluation "
    "spacing allows (the target was crossed somewhere after the previous evaluation), not a "
    "noise interval: one seed, one run. '> x (baseline not reached)': `{b}` trained its "
    "whole budget without reaching the target, so the speedup is at least x. A failed cell "
    "shows its status."
)
TASK_FIGURES = {
    "wall_s": "Held-out metric vs training wall-clock seconds",
    "tokens_seen": "Held-out metric vs tokens seen",
}


def write_task_section(df: pd.DataFrame, styles: dict[str, ArchStyle], baseline: str,
                       output: Output) -> list[str]:
    """Task table (.md/.tex/.csv), curves as CSV, and metric-vs-time/tokens figures."""
    from harness.report.task_curves import plot_task_curves, task_curves

    out = output.out
    table = task_table(df, baseline)
    devices = table["device"].unique()
    shown = table.drop(columns=["device"]) if len(devices) == 1 else table
    stem = out / "tables" / "tasks"
    md = markdown_table(shown, left=TEXT_COLUMNS, code=["arch"])
    on = f" on {devices[0]}" if len(devices) == 1 else ""
    title = f"Task results{on}: final metric, parameters, time to target, speedup vs `{baseline}`"
    write_text(stem.with_suffix(".md"), f"{title}\n\n{md}")
    left = sum(c in TEXT_COLUMNS for c in shown.columns)
    write_text(stem.with_suffix(".tex"), latex_table(shown, left, f"task results{on}"))
    write_csv(task_results(df, baseline).drop(columns=["message"]), stem.with_suffix(".csv"))
    write_csv(task_curves(df), out / "task_curves.csv")
    lines = ["## Tasks", "", TASK_INTRO.format(b=baseline), ""]
    lines += [f"**{title}** — {output.links(stem)}", "", md]
    has_curves = any(isinstance(m, dict) and m.get("curve") for m in df["metrics"])
    for x, caption in TASK_FIGURES.items() if has_curves else ():
        caption += (
            ", one panel per task; dashed grey: the target; ringed: the evaluation where the "
            "target was first met; a curve identical to another (two implementations of one "
            "model) is dashed with open markers and named '(= other)' in the legend"
        )
        lines += output.figure(
            lambda w, x=x: plot_task_curves(df, x, styles=styles, width=w, baseline=baseline),
            f"task_{'time' if x == 'wall_s' else 'tokens'}", caption, f"task curves vs {x}",
        )
    lines.append("Every evaluation of every task cell: [task_curves.csv](task_curves.csv).")
    return lines + [""]


def failures(df: pd.DataFrame) -> list[str]:
    """The failed and skipped cells as a Markdown table (or that all finished)."""
    bad = df[df["status"] != "ok"]
    if bad.empty:
        return ["All cells finished."]
    lines = ["| device | workload | arch | n | status | message |", "|---|---|---|---:|---|---|"]
    for r in bad.sort_values(["device_label", "workload", "arch", "seq_len"]).itertuples():
        msg = str(r.message or "").replace("|", "\\|").replace("\n", " ")
        msg = msg[:117] + "…" if len(msg) > 120 else msg
        lines.append(
            f"| {r.device_label} | {r.workload} | `{r.arch}` | {r.seq_len} | {r.status} | {msg} |"
        )
    return lines


def profile_section(dirs: list[str | os.PathLike[str]], output: Output) -> list[str]:
    """Where the time goes, from profiles taken with ``harness profile --from RUN_DIR``
    (stored under ``RUN_DIR/profiles/``; never the cells whose times are reported)."""
    from harness.profile.breakdown import CATEGORY_HELP, breakdown_table, markdown
    from harness.report.profiles import figure

    long = breakdown_table(dirs)
    if long.empty:
        return []
    paths = figure(long, output.out / "figures" / "profile_breakdown")
    png = next((p for p in paths if p.suffix == ".png"), None)
    lines = [
        "## Where the time goes (torch.profiler)",
        "",
        "Self time per step by operator category, from separate profiled runs of these "
        "cells (profiling slows a step, so these are shares, not the reported times).",
        "",
        markdown(long),
        "",
        *(f"- **{name}**: {what}" for name, what in CATEGORY_HELP.items()),
        "",
    ]
    if png is not None:
        lines += [f"![profile breakdown]({output.rel(png)})", ""]
    return lines


def timed_sections(df: pd.DataFrame, styles: dict[str, ArchStyle], baseline: str,
                   output: Output, preset: str, n_resamples: int, seed: int,
                   pairs: Sequence[tuple[str, str]] = ()) -> list[str]:
    """Figures, scaling exponents, crossovers, memory frontiers and tables of the timed
    workloads (forward, train, …); ``pairs``: crossovers wanted besides the baseline's."""
    speed = speedup_table(df, baseline, n_resamples=n_resamples, seed=seed)
    exps = scaling_table(df)
    write_csv(exps, output.out / "scaling.csv")
    xover = crossover_table(df, baseline, pairs, n_resamples=n_resamples, seed=seed)
    lines = ["## Figures", ""]
    lines += write_figures(df, speed, styles, baseline, output, preset, crossovers=xover)
    if not exps.empty:
        lines += ["## Scaling exponents", "", SCALING_INTRO, ""]
        lines += scaling_markdown(exps)
    lines += crossover_section(xover, baseline, output, n_resamples)
    lines += frontier_section(df, output)
    lines += share_section(df, styles, output)
    lines += overhead_section(df, output)
    lines += ["## Tables", ""]
    lines += write_tables(df, speed, styles, baseline, output, n_resamples)
    return lines


def crossover_section(xover: pd.DataFrame, baseline: str, output: Output,
                      n_resamples: int) -> list[str]:
    """Crossover lengths of time and peak memory (``crossover.csv``)."""
    from harness.report.crossover import crossover_markdown

    if xover.empty:
        return []
    write_csv(xover, output.out / "crossover.csv")
    return crossover_markdown(xover, baseline, n_resamples)


def frontier_section(df: pd.DataFrame, output: Output) -> list[str]:
    """The longest length that fits each device's memory (``frontier.csv``)."""
    from harness.report.frontier import frontier_markdown, frontier_table

    table = frontier_table(df)
    if table.empty:
        return []
    write_csv(table, output.out / "frontier.csv")
    return frontier_markdown(table)


OVERHEAD_INTRO = (
    "What the harness adds to a fast cell's step: at the end of its first round, pairs of "
    "one harness sample (the Timer's sampling step and its every-call check) and one sample "
    "of the bare step in a plain loop, same clock, order swapped every pair; the ratio is "
    "the median of the pairs' ratios (`harness.measure.overhead`). Cells whose samples "
    "take more than ~17 ms have no pairs (they would not fit the round's budget, and there "
    "the harness's microseconds do not show). All cells in [overhead.csv](overhead.csv)."
)


def overhead_section(df: pd.DataFrame, output: Output, shown: int = 8) -> list[str]:
    """The harness's own cost per fast cell (``metrics.harness_over_bare``): the spread
    over the cells and the ``shown`` largest."""
    if "metrics" not in df.columns:
        return []
    ok = df[df["status"] == "ok"]
    rows = [{**{k: r[k] for k in ["device_label", "workload", "arch", "seq_len", "batch"]},
             "cell_median_s": r["time_median_s"],  # over all its rounds
             "bare_s": m["bare_call_s"],
             "harness_over_bare": m["harness_over_bare"], "pairs": m.get("bare_pairs")}
            for _, r in ok.iterrows()
            if isinstance(m := r["metrics"], dict) and "harness_over_bare" in m]
    if not rows:
        return []
    t = pd.DataFrame(rows).sort_values("harness_over_bare", ascending=False)
    write_csv(t, output.out / "overhead.csv")
    ratio = t["harness_over_bare"]
    top = t.head(shown).assign(  # the pairs are round 0's: beside the cell's median
        **{"cell median": lambda d: [f"{v * 1e3:.3g} ms" for v in d["cell_median_s"]],
           "bare (round 0)": lambda d: [f"{v * 1e3:.3g} ms" for v in d["bare_s"]],
           "harness / bare": lambda d: [f"{v:.3f}" for v in d["harness_over_bare"]]})
    return ["## The harness's own cost", "", OVERHEAD_INTRO, "",
            f"{len(t)} cell(s): harness over bare loop median {ratio.median():.3f}, "
            f"range {ratio.min():.3f} to {ratio.max():.3f}. The largest:", "",
            markdown_table(top[["device_label", "workload", "arch", "seq_len", "batch",
                                "harness / bare", "bare (round 0)", "cell median", "pairs"]],
                           left=["device_label", "workload", "arch"], code=["arch"]), ""]


SCALING_INTRO = (
    "Slope of log(median time) on log(n) per architecture within one facet (device, "
    "workload, preset, batch, dtype, compile, overrides), over its completed lengths: the "
    "exponent, its 95% interval (Student t) and R² of the log–log fit. A fit needs at least "
    f"{MIN_FIT_LENGTHS} lengths; with fewer the table says so instead of fitting "
    "([scaling.csv](scaling.csv) has the standard errors, ranges and prefactors)."
)


def scaling_markdown(exps: pd.DataFrame) -> list[str]:
    """One Markdown table per facet: arch, exponent [95% CI], R², lengths fitted."""
    lines: list[str] = []
    for heading, g in by_facet(exps):
        lines += [heading, ""]
        grid = pd.DataFrame(
            {
                "exponent [95% CI]": [
                    r.note if r.note else f"{r.exponent:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]"
                    for r in g.itertuples()
                ],
                "R²": ["" if r.note else f"{r.r2:.3f}" for r in g.itertuples()],
                "lengths": [
                    "" if r.note else f"{r.n_points} ({r.n_min}–{r.n_max})" for r in g.itertuples()
                ],
            },
            index=pd.Index(g["arch"]),
        )
        lines += [to_markdown(grid, "arch"), ""]
    return lines
