"""The report pipeline (``python -m harness report``, see :mod:`harness.cli.report`).

Speedup and absolute tables (Markdown, booktabs LaTeX, CSV) and figures (PDF, SVG, PNG)
from one or several run directories, faceted by device, tied together by ``index.md``.
The same pieces are plain functions returning DataFrames for notebooks::

    from harness.report import load_runs, speedup_table, scaling_table
    df = load_runs(["runs/cpu", "runs/h100"])
    speedup_table(df, baseline="lmu")
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.errors import UsageError, os_errors_as_usage
from harness.measure.timing import MIN_SAMPLES
from harness.report.published import published_section
from harness.report.scaling import MIN_FIT_LENGTHS, fit_exponent, scaling_table
from harness.report.style import WIDTHS, arch_families, arch_styles
from harness.report.tables import (
    METRICS,
    check_baseline,
    metric_grid,
    metric_table,
    run_summaries,
    speedup_grid,
    speedup_table,
    to_latex,
    to_markdown,
)
from harness.report.tasks import split_tasks, task_results, task_table
from harness.store.load import FACET_KEYS, load_runs, unique_dirs
from harness.store.rundir import RunDir

__all__ = [
    "build_report",
    "load_runs",
    "speedup_table",
    "metric_table",
    "scaling_table",
    "fit_exponent",
    "add_arguments",
    "main",
    "run_baseline",
    "run_report_settings",
    "task_table",
    "task_results",
]

PRESETS = ("default", "paper")
# figure-level keys: everything in a facet but the device (devices are the panels)
GROUP_KEYS = tuple(k for k in FACET_KEYS if k != "device_label")
TABLE_NAMES = {
    "time_median_s": "time",
    "peak_mem_bytes": "memory",
    "tokens_per_s": "throughput",
    "time_per_token_s": "latency",
    "state_bytes": "state",
}


def time_label(workload: str) -> str:
    """The axis label of a workload's median time (``{unit}`` left to fill): one call of its
    step, which for a per-token workload (declared by the workload) is a stream of n tokens."""
    import workloads

    try:
        per_token = workloads.info(workload).per_token
    except ValueError:  # a plugin's workload this process did not load
        per_token = False
    return "time per stream of n tokens ({unit})" if per_token else (
        f"time per {workload} step ({{unit}})")


@dataclass
class Report:
    """What was written, for ``index.md`` and for callers."""

    out: Path
    sections: list[str] = field(default_factory=list)


def slug(*parts: object) -> str:
    """File-name-safe, lower case; parts joined by ``_``, within a part ``-``."""
    clean = [
        re.sub(r"[^A-Za-z0-9.+]+", "-", str(p)).strip("-").lower()
        for p in parts
        if p not in ("", None)
    ]
    return "_".join(c for c in clean if c)


def _varying(df: pd.DataFrame, keys: tuple[str, ...]) -> list[str]:
    return [k for k in keys if k in df.columns and df[k].nunique(dropna=False) > 1]


def _describe(key: dict[str, object], varying: list[str]) -> str:
    extra = [f"{k}={key[k]}" for k in varying if k not in ("workload", "device_label")]
    return ", ".join(extra)


def prepare_out(out: Path) -> Path:
    """Create ``out`` (and figures/, tables/) or fail with a usage error."""
    with os_errors_as_usage(f"create report directory {str(out)!r}"):
        for sub in ("", "figures", "tables"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise UsageError(f"report directory {str(out)!r} is not writable")
    return out


def _write(path: Path, text: str) -> None:
    with os_errors_as_usage(f"write {str(path)!r}"):
        path.write_text(text, encoding="utf-8")


def _rel(path: Path, out: Path) -> str:
    return path.relative_to(out).as_posix()


def write_tables(df, speed, styles, baseline, out: Path, n_resamples: int) -> list[str]:
    """Per facet: speedup and absolute tables as .md/.tex/.csv; returns index.md lines."""
    order = list(styles)
    varying = _varying(df, FACET_KEYS)
    lines: list[str] = []
    facet_cols = [k for k in FACET_KEYS if k in df.columns]
    for key, g in df.groupby(facet_cols, sort=True, dropna=False):
        key = dict(zip(facet_cols, key, strict=True))
        name = slug(
            key["workload"],
            key["device_label"],
            *[key[k] for k in varying if k not in ("workload", "device_label")],
        )
        extra = _describe(key, varying)
        lines.append(
            f"### {key['workload']} — {key['device_label']}" + (f" ({extra})" if extra else "")
        )
        lines.append("")
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
            _write(stem.with_suffix(".md"), f"{title}\n\n{md}")
            _write(
                stem.with_suffix(".tex"), to_latex(grid, comment + (f" ({extra})" if extra else ""))
            )
            _write_csv(csv.drop(columns=["samples"], errors="ignore"), stem.with_suffix(".csv"))
            links = " · ".join(
                f"[{s}]({_rel(stem.with_suffix('.' + s), out)})" for s in ("md", "tex", "csv")
            )
            lines += [f"**{title}** — {links}", "", md]
    return lines


def write_figures(
    df, speed, styles, baseline, out: Path, widths, formats, dpi, preset: str
) -> list[str]:
    """Per workload (and other varying keys): time, memory, speedup, stream latency figures."""
    from harness.report import figures

    varying = _varying(df, GROUP_KEYS)
    group_cols = [k for k in GROUP_KEYS if k in df.columns]
    lines: list[str] = []
    for key, g in df.groupby(group_cols, sort=True, dropna=False):
        key = dict(zip(group_cols, key, strict=True))
        if g["seq_len"].nunique() < 2:
            continue
        name = slug(key["workload"], *[key[k] for k in varying if k != "workload"])
        extra = _describe(key, varying)
        sp = speed
        for k, v in key.items():
            sp = sp[sp[k] == v]
        specs = []
        if preset == "paper":
            specs.append(
                (
                    "paper",
                    "Training time per step vs sequence length, speedup over "
                    f"`{baseline}` annotated at the longest common length",
                    lambda w, g=g: figures.plot_vs_length(
                        g,
                        "time_median_s",
                        styles=styles,
                        width=w,
                        ylabel="time per training step ({unit})",
                        annotate_speedup_over=baseline,
                        metric=METRICS["time_median_s"],
                    ),
                )
            )
        if preset != "paper":  # the paper figure is this one, annotated
            specs.append(
                (
                    "time",
                    "Median time vs sequence length (log–log); legend: fitted "
                    "exponent over the completed lengths",
                    lambda w, g=g, wl=key["workload"]: figures.plot_vs_length(
                        g,
                        "time_median_s",
                        styles=styles,
                        width=w,
                        ylabel=time_label(wl),
                        metric=METRICS["time_median_s"],
                        families=arch_families(g["arch"].unique()),
                        baseline=baseline,
                    ),
                )
            )
        if g["peak_mem_bytes"].notna().any():
            specs.append(
                (
                    "memory",
                    "Peak memory vs sequence length (log–log)",
                    lambda w, g=g: figures.plot_vs_length(
                        g,
                        "peak_mem_bytes",
                        styles=styles,
                        width=w,
                        ylabel="peak memory ({unit})",
                        metric=METRICS["peak_mem_bytes"],
                        families=arch_families(g["arch"].unique()),
                        baseline=baseline,
                    ),
                )
            )
        if sp["speedup"].notna().any() and (sp["arch"] != baseline).any():
            specs.append(
                (
                    "speedup",
                    f"Speedup over `{baseline}` with 95% bootstrap CI",
                    lambda w, sp=sp: figures.plot_speedup(
                        sp, baseline, styles=styles, width=w,
                        families=arch_families(sp["arch"].unique()),
                    ),
                )
            )
        if g["time_per_token_s"].notna().any():  # a per-token workload
            specs.append(
                (
                    "latency",
                    "Streaming: mean per-token latency over a stream of n tokens",
                    lambda w, g=g: figures.plot_vs_length(
                        g,
                        "time_per_token_s",
                        styles=styles,
                        width=w,
                        ylabel="time per token ({unit})",
                        metric=METRICS["time_per_token_s"],
                    ),
                )
            )
        lines.append(f"### {key['workload']}" + (f" ({extra})" if extra else ""))
        lines.append("")
        for kind, caption, make in specs:
            stems = {}
            for w in widths:
                fig = make(w)
                stem = out / "figures" / f"{kind}_{name}_{w}"
                with os_errors_as_usage(f"write {str(stem)!r}"):
                    figures.save(fig, stem, formats, dpi)
                stems[w] = stem
            show = stems.get("double") or next(iter(stems.values()))
            files = " · ".join(
                f"[{w} {fmt}]({_rel(s.with_suffix('.' + fmt), out)})"
                for w, s in stems.items()
                for fmt in formats
            )
            lines.append(f"**{caption}** — {files}")
            lines.append("")
            if "png" in formats:
                lines.append(f"![{kind} {key['workload']}]({_rel(show.with_suffix('.png'), out)})")
                lines.append("")
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


def write_task_section(
    df: pd.DataFrame, styles, baseline: str, out: Path, widths, formats, dpi: int
) -> list[str]:
    """Task table (.md/.tex/.csv), curves as CSV, and metric-vs-time/tokens figures."""
    from harness.report import figures
    from harness.report.tasks import plot_task_curves, task_curves, task_latex, task_markdown

    table = task_table(df, baseline)
    devices = table["device"].unique()
    shown = table.drop(columns=["device"]) if len(devices) == 1 else table
    stem = out / "tables" / "tasks"
    md = task_markdown(shown)
    on = f" on {devices[0]}" if len(devices) == 1 else ""
    title = f"Task results{on}: final metric, parameters, time to target, speedup vs `{baseline}`"
    _write(stem.with_suffix(".md"), f"{title}\n\n{md}")
    _write(stem.with_suffix(".tex"), task_latex(shown, f"task results{on}"))
    _write_csv(task_results(df, baseline).drop(columns=["message"]), stem.with_suffix(".csv"))
    _write_csv(task_curves(df), out / "task_curves.csv")
    links = " · ".join(
        f"[{s}]({_rel(stem.with_suffix('.' + s), out)})" for s in ("md", "tex", "csv")
    )
    lines = ["## Tasks", "", TASK_INTRO.format(b=baseline), ""]
    lines += [f"**{title}** — {links}", "", md]
    has_curves = any(isinstance(m, dict) and m.get("curve") for m in df["metrics"])
    for x, caption in TASK_FIGURES.items() if has_curves else ():
        caption += (
            ", one panel per task; dashed grey: the target; ringed: the evaluation where the "
            "target was first met; a curve identical to another (two implementations of one "
            "model) is dashed with open markers and named '(= other)' in the legend"
        )
        stems = {}
        for w in widths:
            fig = plot_task_curves(df, x, styles=styles, width=w, baseline=baseline)
            stems[w] = out / "figures" / f"task_{'time' if x == 'wall_s' else 'tokens'}_{w}"
            with os_errors_as_usage(f"write {str(stems[w])!r}"):
                figures.save(fig, stems[w], formats, dpi)
        files = " · ".join(
            f"[{w} {fmt}]({_rel(s.with_suffix('.' + fmt), out)})"
            for w, s in stems.items()
            for fmt in formats
        )
        lines += [f"**{caption}** — {files}", ""]
        if "png" in formats:
            show = stems.get("double") or next(iter(stems.values()))
            lines += [f"![task curves vs {x}]({_rel(show.with_suffix('.png'), out)})", ""]
    lines.append("Every evaluation of every task cell: [task_curves.csv](task_curves.csv).")
    return lines + [""]


def _failures(df: pd.DataFrame) -> list[str]:
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


def _stored(dirs: list[str | os.PathLike[str]], key: str) -> object:
    """``key`` of the first run's plan.json that has it, else of the suite that run names
    (a run written before the key was stored); None when no run says."""
    from harness.run.suites import load_suite, suite_names

    for d in dirs:
        plan = RunDir(d).plan()
        if plan.get(key):
            return plan[key]
    for d in dirs:
        name = RunDir(d).plan().get("suite")
        if name in suite_names():
            value = getattr(load_suite(name), key)
            if value:
                return value
    return None


def run_baseline(dirs: list[str | os.PathLike[str]], baseline: str | None,
                 archs: list[str]) -> str:
    """The architecture speedups are relative to: ``baseline`` when given, else the one
    stored with the run(s) (the suite's ``baseline`` key or ``run --baseline``)."""
    chosen = baseline or _stored(dirs, "baseline")
    if not chosen:
        raise UsageError("no baseline: the run(s) do not name one (a suite's baseline key, "
                         f"or run --baseline); pass --baseline, one of: {', '.join(archs)}")
    return str(chosen)


def run_report_settings(dirs: list[str | os.PathLike[str]]) -> dict[str, list[str]]:
    """The suite's ``[report]`` table stored with the run(s), e.g. ``paper_archs``."""
    return dict(_stored(dirs, "report") or {})


def build_report(
    dirs: list[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    *,
    baseline: str | None = None,
    preset: str = "default",
    widths: tuple[str, ...] = ("single", "double"),
    formats: tuple[str, ...] = ("pdf", "svg", "png"),
    dpi: int = 300,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Path:
    """Write the whole report and return the path of its ``index.md``. ``baseline``:
    default, the one stored with the run(s)."""
    from harness.report.figures import FORMATS

    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; valid choices: {', '.join(PRESETS)}")
    for w in widths:
        if w not in WIDTHS:
            raise UsageError(f"unknown width {w!r}; valid choices: {', '.join(WIDTHS)}")
    for f in formats:
        if f not in FORMATS:
            raise UsageError(f"unknown format {f!r}; valid choices: {', '.join(FORMATS)}")
    dirs = unique_dirs(dirs)
    df = load_runs(dirs)
    baseline = run_baseline(dirs, baseline, sorted(df["arch"].unique()))
    check_baseline(df, baseline)
    notes = []
    measured = df  # every record: the published figures are compared with all of them
    if preset == "paper":
        settings = run_report_settings(dirs)
        paper_archs = settings.get("paper_archs") or []
        paper_workloads = settings.get("paper_workloads") or []
        if not paper_archs or not paper_workloads:
            raise UsageError("the paper preset needs a run of a suite whose [report] table "
                             "names paper_archs and paper_workloads (e.g. --suite paper)")
        present = [w for w in paper_workloads if w in set(df["workload"])]
        if not present:
            raise UsageError(
                f"the paper preset needs {' or '.join(map(repr, paper_workloads))} records; "
                f"workloads present: {', '.join(sorted(df['workload'].unique()))}"
            )
        df = df[df["workload"].isin(present) & df["arch"].isin(paper_archs)]
        check_baseline(df, baseline)
        missing = [a for a in paper_archs if a not in set(df["arch"])]
        if missing:
            notes.append(f"Not in the run(s), so not shown: {', '.join(missing)}.")
    out = prepare_out(Path(out) if out is not None else Path(dirs[0]) / "report")
    styles = arch_styles(df["arch"], first=baseline)
    timed, tasks = split_tasks(df)
    _write_csv(df.drop(columns=["samples"]), out / "results.csv")

    lines = [f"# seqbench report{' (paper preset)' if preset == 'paper' else ''}", ""]
    if not timed.empty:
        lines += [
            f"Baseline: `{baseline}`. Speedup = baseline median time / architecture median "
            "time, with a 95% percentile-bootstrap interval [low, high] resampling both cells' "
            f"samples; with fewer than {MIN_SAMPLES} samples on a side no interval is given "
            "('too few samples': its coverage would be false). A dagger (†) in tables and "
            "a hollow marker in figures mark a cell whose samples were noisy (IQR/median above "
            "the runner's threshold): treat it with care. A double dagger (‡) in tables and a "
            f"cross in figures mark a thin cell (fewer than {MIN_SAMPLES} timed samples). A "
            "section sign (§) marks a contended cell: other processes (or the hypervisor) "
            "used the CPUs it needed during more than a quarter of its samples. "
            "Failed cells show their status (OOM, "
            "timeout, error, skipped; n/a = not in the run) instead of a number, and in figures "
            "sit in the grey 'failed' strip at the length where they failed.",
            "",
        ]
    lines += [f"> {n}" for n in notes] + ([""] if notes else [])
    lines += ["## Runs", "", to_markdown(run_summaries(dirs, df).set_index("run"), "run"), ""]
    lines += published_section(measured)
    if not tasks.empty:
        lines += write_task_section(tasks, styles, baseline, out, widths, formats, dpi)
    if not timed.empty:
        lines += _timed_sections(
            timed, styles, baseline, out, widths, formats, dpi, preset, n_resamples, seed
        )
    lines += _profile_section(dirs, out)
    lines += ["## Failed and skipped cells", ""] + _failures(df) + [""]
    lines += ["All records, one row per cell: [results.csv](results.csv).", ""]
    index = out / "index.md"
    _write(index, "\n".join(lines))
    return index


def _profile_section(dirs: list[str | os.PathLike[str]], out: Path) -> list[str]:
    """Where the time goes, from profiles taken with ``harness profile --from RUN_DIR``
    (stored under ``RUN_DIR/profiles/``; never the cells whose times are reported)."""
    from harness.profile.breakdown import CATEGORY_HELP, breakdown_table, markdown
    from harness.report.profiles import figure

    long = breakdown_table(dirs)
    if long.empty:
        return []
    paths = figure(long, out / "figures" / "profile_breakdown")
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
        lines += [f"![profile breakdown]({_rel(png, out)})", ""]
    return lines


def _timed_sections(
    df, styles, baseline, out: Path, widths, formats, dpi, preset, n_resamples, seed
) -> list[str]:
    """Figures, scaling exponents and tables of the timed workloads (forward, train, …)."""
    speed = speedup_table(df, baseline, n_resamples=n_resamples, seed=seed)
    exps = scaling_table(df)
    _write_csv(exps, out / "scaling.csv")
    lines = ["## Figures", ""]
    lines += write_figures(df, speed, styles, baseline, out, widths, formats, dpi, preset)
    if not exps.empty:
        lines += ["## Scaling exponents", "", SCALING_INTRO, ""]
        lines += scaling_markdown(exps)
    lines += ["## Tables", ""]
    lines += write_tables(df, speed, styles, baseline, out, n_resamples)
    return lines


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
    facet_cols = [k for k in FACET_KEYS if k in exps.columns]
    varying = _varying(exps, FACET_KEYS)
    for key, g in exps.groupby(facet_cols, sort=True, dropna=False):
        key = dict(zip(facet_cols, key, strict=True))
        extra = _describe(key, varying)
        lines += [f"**{key['workload']} — {key['device_label']}**"
                  + (f" ({extra})" if extra else ""), ""]
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


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with os_errors_as_usage(f"write {str(path)!r}"):
        frame.to_csv(path, index=False)
