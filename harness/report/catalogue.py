"""The figure catalogue of the timed workloads: which figures a group of records gets
(time, memory, speedup, per-token latency; the paper preset's annotated time), each a
:class:`FigureSpec` that draws itself at a width."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from harness.report.output import Output, describe, slug, varying
from harness.report.style import ArchStyle, arch_families
from harness.report.tables import METRICS
from harness.store.load import FACET_KEYS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# figure-level keys: everything in a facet but the device (devices are the panels)
GROUP_KEYS = tuple(k for k in FACET_KEYS if k != "device_label")


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


XOVER_CAPTION = (
    "; ◆ where an architecture's curve crosses the baseline's, the bar its 95% bootstrap "
    "interval (an arrow: open, past the measured range)"
)


@dataclass(frozen=True)
class FigureSpec:
    """One figure of a group: its file-name kind, its caption, and how to draw it."""

    kind: str
    caption: str
    make: Callable[[str], Figure]  # width name -> figure


def figure_specs(g: pd.DataFrame, sp: pd.DataFrame, workload: str,
                 styles: dict[str, ArchStyle], baseline: str, preset: str,
                 crossovers: pd.DataFrame | None = None) -> list[FigureSpec]:
    """The figures of one group ``g`` (its speedups ``sp``), in index order; the time
    figures mark ``crossovers`` (a :func:`~harness.report.crossover.crossover_table`)."""
    from harness.report import figures

    def vs_length(value: str, ylabel: str, **kw: object) -> Callable[[str], Figure]:
        return lambda w: figures.plot_vs_length(g, value, styles=styles, width=w, ylabel=ylabel,
                                                metric=METRICS[value], **kw)

    def families(frame: pd.DataFrame) -> dict[str, str]:
        return arch_families(frame["arch"].unique())

    marked = crossovers is not None and not crossovers.empty and bool(
        (crossovers["metric"].eq("time") & crossovers["vs_baseline"].astype(bool)
         & crossovers["point"].notna()).any())
    xcap = XOVER_CAPTION if marked else ""
    specs: list[FigureSpec] = []
    if preset == "paper":
        specs.append(FigureSpec(
            "paper",
            "Training time per step vs sequence length, speedup over "
            f"`{baseline}` annotated at the longest common length" + xcap,
            vs_length("time_median_s", "time per training step ({unit})",
                      annotate_speedup_over=baseline, crossovers=crossovers),
        ))
    else:  # the paper figure is this one, annotated
        specs.append(FigureSpec(
            "time",
            "Median time vs sequence length (log–log); legend: fitted "
            "exponent over the completed lengths" + xcap,
            vs_length("time_median_s", time_label(workload), families=families(g),
                      baseline=baseline, crossovers=crossovers),
        ))
    if g["peak_mem_bytes"].notna().any():
        specs.append(FigureSpec(
            "memory",
            "Peak memory vs sequence length (log–log)",
            vs_length("peak_mem_bytes", "peak memory ({unit})", families=families(g),
                      baseline=baseline),
        ))
    if sp["speedup"].notna().any() and (sp["arch"] != baseline).any():
        specs.append(FigureSpec(
            "speedup",
            f"Speedup over `{baseline}` with 95% bootstrap CI",
            lambda w: figures.plot_speedup(sp, baseline, styles=styles, width=w,
                                           families=families(sp)),
        ))
    if g["time_per_token_s"].notna().any():  # a per-token workload
        specs.append(FigureSpec(
            "latency",
            "Streaming: mean per-token latency over a stream of n tokens",
            vs_length("time_per_token_s", "time per token ({unit})"),
        ))
    return specs


def write_figures(df: pd.DataFrame, speed: pd.DataFrame, styles: dict[str, ArchStyle],
                  baseline: str, output: Output, preset: str,
                  crossovers: pd.DataFrame | None = None) -> list[str]:
    """Per workload (and other varying keys) with two lengths or more: the catalogue's
    figures at every width; returns the ``index.md`` lines."""
    vary = varying(df, GROUP_KEYS)
    group_cols = [k for k in GROUP_KEYS if k in df.columns]
    lines: list[str] = []
    for values, g in df.groupby(group_cols, sort=True, dropna=False):
        key = dict(zip(group_cols, values, strict=True))
        if g["seq_len"].nunique() < 2:
            continue
        name = slug(key["workload"], *[key[k] for k in vary if k != "workload"])
        extra = describe(key, vary)
        sp = speed
        for k, v in key.items():
            sp = sp[sp[k] == v]
        lines.append(f"### {key['workload']}" + (f" ({extra})" if extra else ""))
        lines.append("")
        xo = crossovers
        if xo is not None and not xo.empty:
            for k, v in key.items():
                xo = xo[xo[k] == v]
        for spec in figure_specs(g, sp, str(key["workload"]), styles, baseline, preset, xo):
            lines += output.figure(spec.make, f"{spec.kind}_{name}", spec.caption,
                                   f"{spec.kind} {key['workload']}")
    return lines
