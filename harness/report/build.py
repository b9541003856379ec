"""The report pipeline: load the runs, choose the baseline and the records (paper preset),
and write ``index.md`` with the sections of :mod:`harness.report.sections`."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from harness.errors import UsageError
from harness.measure.headline import HEADLINE_MIN_SAMPLES as MIN_N
from harness.report.crossover import PAIRS_KEY, parse_pairs
from harness.report.lm_paper import (
    analyse,
    in_roles,
    lm_runs,
    lm_section,
    measured_claims,
    parse_roles,
)
from harness.report.output import Output, prepare_out, write_csv, write_text
from harness.report.published import published_section
from harness.report.sections import failures, profile_section, timed_sections, write_task_section
from harness.report.style import WIDTHS, arch_styles
from harness.report.tables import check_baseline, run_summaries, to_markdown
from harness.report.tasks import split_tasks
from harness.store.load import load_run, load_runs, pool_runs, unique_dirs
from harness.store.rundir import RunDir

PRESETS = ("default", "paper")


def stored_setting(dirs: list[str | os.PathLike[str]], key: str) -> object:
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
    chosen = baseline or stored_setting(dirs, "baseline")
    if not chosen:
        raise UsageError("no baseline: the run(s) do not name one (a suite's baseline key, "
                         f"or run --baseline); pass --baseline, one of: {', '.join(archs)}")
    return str(chosen)


def run_report_settings(dirs: list[str | os.PathLike[str]]) -> dict[str, list[str]]:
    """The suite's ``[report]`` table stored with the run(s), e.g. ``paper_archs``."""
    return dict(stored_setting(dirs, "report") or {})


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
    pool: bool = False,
) -> Path:
    """Write the whole report and return the path of its ``index.md``. ``baseline``:
    default, the one stored with the run(s); ``pool``: the runs are repeats, each cell one
    figure from all of them (:func:`~harness.store.load.pool_runs`)."""
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
    if pool:  # each run's own rows, read once: the runs table counts them
        each = pd.concat(map(load_run, dirs), ignore_index=True)
        df = pool_runs(each)
    else:
        df = each = load_runs(dirs)
    baseline = run_baseline(dirs, baseline, sorted(df["arch"].unique()))
    check_baseline(df, baseline)
    notes = []
    if pool:
        runs = df["pooled_dirs"].map(len)
        notes.append(
            "Pooled: no cell was measured in more than one of these runs; nothing pooled."
            if runs.max() < 2 else
            f"Pooled: {int((runs > 1).sum())} of {len(df)} cells measured in {runs.max()} "
            "runs; each figure is the median of their quiet samples, and its interval "
            "resamples the runs, then their rounds, then samples. A cell that failed in any "
            "run shows that failure.")
    measured = df  # every record: the published figures are compared with all of them
    settings = run_report_settings(dirs)
    roles = parse_roles(settings["lm"], "the run's [report.lm]") if "lm" in settings else {}
    if preset == "paper":
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
    output = Output(out, tuple(widths), tuple(formats), dpi)
    styles = arch_styles(df["arch"], first=baseline)
    timed, tasks = split_tasks(df)
    write_csv(df.drop(columns=["samples"]), out / "results.csv")

    lines = [f"# seqbench report{' (paper preset)' if preset == 'paper' else ''}", ""]
    if not timed.empty:
        lines += [
            f"Baseline: `{baseline}`. Speedup = baseline median time / architecture median "
            "time, with a 95% percentile-bootstrap interval [low, high] resampling both cells' "
            f"rounds, then the samples within them; with fewer than {MIN_N} samples on a side "
            "no interval is given ('too few samples': its coverage would be false). A dagger "
            "(†) in tables and a hollow marker in figures mark a cell whose samples were "
            "noisy (IQR/median above the runner's threshold): treat it with care. A double "
            f"dagger (‡) in tables and a cross in figures mark a thin cell (fewer than {MIN_N} "
            "timed samples). A section sign (§) marks a contended cell: other processes (or "
            "the hypervisor) used the CPUs it needed during more than a quarter of its "
            f"samples, and fewer than {MIN_N} were quiet (with {MIN_N} or more quiet samples, "
            "its median and interval rest on those). Failed cells show their status (OOM, "
            "timeout, error, skipped; n/a = not in the run) instead of a number, and in figures "
            "sit in the grey 'failed' strip at the length where they failed.",
            "",
        ]
    lines += [f"> {n}" for n in notes] + ([""] if notes else [])
    lines += ["## Runs", "", to_markdown(run_summaries(dirs, each).set_index("run"), "run"), ""]
    lm_runs_ = lm_runs(split_tasks(measured)[1], roles)  # roles choose their own records
    lm_found = analyse(lm_runs_, roles)
    lines += published_section(measured, lm=measured_claims(lm_runs_, lm_found))
    tasks = tasks[~in_roles(tasks, roles)] if roles else tasks  # their own section shows them
    if not tasks.empty:
        lines += write_task_section(tasks, styles, baseline, output)
    lines += lm_section(lm_runs_, lm_found, output)
    if not timed.empty:
        pairs = parse_pairs(settings.get(PAIRS_KEY) or [], "the run's [report]")
        lines += timed_sections(timed, styles, baseline, output, preset, n_resamples, seed,
                                pairs)
    lines += profile_section(dirs, output)
    lines += ["## Failed and skipped cells", ""] + failures(df) + [""]
    lines += ["All records, one row per cell: [results.csv](results.csv).", ""]
    index = out / "index.md"
    write_text(index, "\n".join(lines))
    return index
