"""Figures: metric vs sequence length (log–log, fitted exponents), speedup vs length, paper.

Figures are built on ``matplotlib.figure.Figure`` directly (Agg canvas, no pyplot, no
display, no global state) under seaborn's "ticks" style and a width-specific rc context.
Each facet (one device) is a panel with its own legend below it, so legends never cover
data. Cells that failed (OOM, timeout, error) have no value to plot: they are drawn in a
narrow "failed" strip above the panel, at the length where they failed, with the status
marker in the architecture's colour — visibly outside the data, never mistaken for a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

from harness.measure.headline import HEADLINE_MIN_SAMPLES
from harness.report.scaling import MIN_FIT_LENGTHS, fit_exponent
from harness.report.style import FAILURE_MARKERS, WIDTHS, ArchStyle, rc_for_width
from harness.report.tables import Metric, pick_unit

FORMATS = ("pdf", "svg", "png")
FAILED = tuple(FAILURE_MARKERS)


@dataclass
class Panel:
    ax: Axes  # the data
    strip: Axes | None  # failure strip above it (None when the figure has no failures)


def _fmt_len(n: float, _pos: object = None) -> str:
    n = int(round(n))
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n >= 1024 and n % 1024 == 0:
        return f"{n >> 10}k"
    return str(n)


def _layout(n_facets: int, width: str) -> tuple[int, int]:
    """Single column stacks facets; double column puts up to three side by side."""
    if width == "single":
        return n_facets, 1
    cols = min(n_facets, 3)
    return math.ceil(n_facets / cols), cols


def legend_columns(n_facets: int, width: str, n_items: int, entry_in: float = 1.6) -> int:
    """As many legend columns as fit under one panel (``entry_in`` inches per entry)."""
    _, cols = _layout(n_facets, width)
    return max(1, min(n_items, int(WIDTHS[width] / cols / entry_in)))


def legend_below(ax: Axes, handles: list, ncol: int, *, offset: float = -0.24,
                 title: str | None = None) -> None:
    """The panel's legend under its x axis, centred: every figure's legend looks alike."""
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, offset),
        ncol=ncol,
        handlelength=1.6,
        columnspacing=1.0,
        borderaxespad=0.0,
        title=title,
    )


def new_figure(
    n_facets: int, width: str, legend_rows: int, strip_rows: int
) -> tuple[Figure, list[Panel]]:
    """A figure exactly ``WIDTHS[width]`` inches wide; height grows with panels and legend."""
    if width not in WIDTHS:
        raise ValueError(f"unknown width {width!r}; valid choices: {', '.join(WIDTHS)}")
    rows, cols = _layout(n_facets, width)
    panel_h = 2.0 if width == "single" else 2.4
    strip_h = 0.0 if strip_rows == 0 else 0.08 + 0.15 * strip_rows
    legend_h = 0.15 * legend_rows + 0.12
    fig = Figure(
        figsize=(WIDTHS[width], rows * (panel_h + strip_h + legend_h)), layout="constrained"
    )
    if strip_rows:
        ratios = [strip_h, panel_h] * rows
        grid = fig.add_gridspec(2 * rows, cols, height_ratios=ratios)
    else:
        grid = fig.add_gridspec(rows, cols)
    panels = []
    for i in range(n_facets):
        r, c = divmod(i, cols)
        if strip_rows:
            ax = fig.add_subplot(grid[2 * r + 1, c])
            strip = fig.add_subplot(grid[2 * r, c], sharex=ax)
        else:
            ax, strip = fig.add_subplot(grid[r, c]), None
        panels.append(Panel(ax, strip))
    return fig, panels


def _style_len_axis(ax: Axes, lens: Iterable[int]) -> None:
    lens = sorted({int(n) for n in lens})
    ax.set_xscale("log", base=2)
    # label every length if few, else every other one so labels never collide
    step = 1 if len(lens) <= 7 else 2
    ax.xaxis.set_major_locator(FixedLocator(lens[::step]))
    ax.xaxis.set_major_formatter(FuncFormatter(_fmt_len))
    ax.xaxis.set_minor_locator(FixedLocator(lens))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(lens[0] / 1.3, lens[-1] * 1.3)
    ax.set_xlabel("sequence length $n$")


def _set_value_axis(ax: Axes, lo: float, hi: float) -> None:
    """Log y with plain-number ticks (the unit is in the label).

    A range under about two decades gets 1-2-5 ticks, so it is never left with a single
    labelled tick nor crowded with minor labels.
    """
    lo, hi = lo / 1.5, hi * 1.5
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    subs = (1.0, 2.0, 5.0) if math.log10(hi / lo) < 2.2 else (1.0,)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(1, 10))))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _p: f"{y:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _strip_rows(d: pd.DataFrame) -> int:
    """How many failure markers share one length at most (rows the strip needs)."""
    fails = d[d["status"].isin(FAILED)]
    if fails.empty:
        return 0
    return int(fails.groupby(["device_label", "seq_len"]).size().max())


def _draw_strip(panel: Panel, d: pd.DataFrame, styles: dict[str, ArchStyle], rows: int) -> set[str]:
    """Failure markers at their lengths in the strip above the panel; returns statuses shown."""
    shown: set[str] = set()
    strip = panel.strip
    if strip is None:
        return shown
    fails = d[d["status"].isin(FAILED)]
    size = mpl.rcParams["lines.markersize"] + 1.5
    for n, g in fails.groupby("seq_len"):
        for k, r in enumerate(g.sort_values("arch").itertuples(index=False)):
            st = styles[r.arch]
            strip.plot(
                [n],
                [k],
                linestyle="none",
                marker=FAILURE_MARKERS[r.status][0],
                color=st.color,
                markersize=size,
                markeredgewidth=0.3,
                clip_on=False,
            )
            shown.add(r.status)
    strip.set_ylim(-0.7, rows - 0.3)
    strip.yaxis.set_major_locator(NullLocator())
    strip.yaxis.set_minor_locator(NullLocator())
    strip.set_ylabel("failed", rotation=0, ha="right", va="center", fontsize="small", color="0.35")
    strip.tick_params(axis="x", which="both", bottom=False, labelbottom=False)
    strip.set_facecolor("0.95")
    for side in ("top", "right", "left", "bottom"):
        strip.spines[side].set_visible(False)
    return shown


def _mark_noisy(ax: Axes, g: pd.DataFrame, x: str, y: str, st: ArchStyle) -> bool:
    """Hollow markers over the points whose samples were noisy; True if any were drawn."""
    noisy = g[g["noisy"].fillna(False).astype(bool)]
    if noisy.empty:
        return False
    ax.plot(
        noisy[x],
        noisy[y],
        linestyle="none",
        marker=st.marker,
        markerfacecolor="white",
        markeredgecolor=st.color,
        markeredgewidth=1.0,
        zorder=4,
    )
    return True


def _mark_thin(ax: Axes, g: pd.DataFrame, x: str, y: str) -> bool:
    """A cross over the points of thin cells (too few samples); True if any were drawn."""
    if "thin" not in g:
        return False
    thin = g[g["thin"].fillna(False).astype(bool)]
    if thin.empty:
        return False
    ax.plot(thin[x], thin[y], linestyle="none", marker="x", color="0.1",
            markersize=mpl.rcParams["lines.markersize"] + 1, markeredgewidth=0.9, zorder=5)
    return True


def _any_thin(d: pd.DataFrame) -> bool:
    return "thin" in d and bool(d.loc[d["status"] == "ok", "thin"].fillna(False).astype(bool).any())


def _thin_handle() -> Line2D:
    return Line2D([], [], linestyle="none", marker="x", color="0.1", markeredgewidth=0.9,
                  label=f"thin (< {HEADLINE_MIN_SAMPLES} samples)")


def _noisy_handle() -> Line2D:
    return Line2D(
        [],
        [],
        linestyle="none",
        marker="o",
        markerfacecolor="white",
        markeredgecolor="0.3",
        markeredgewidth=1.0,
        label="noisy samples",
    )


def _failure_handles(statuses: set[str]) -> list[Line2D]:
    return [
        Line2D(
            [],
            [],
            linestyle="none",
            marker=FAILURE_MARKERS[s][0],
            color="0.3",
            markersize=mpl.rcParams["lines.markersize"] + 1.5,
            markeredgewidth=0.3,
            label=FAILURE_MARKERS[s][1],
        )
        for s in FAILED
        if s in statuses
    ]


def _arch_handle(st: ArchStyle, label: str) -> Line2D:
    return Line2D(
        [],
        [],
        color=st.color,
        marker=st.marker,
        linestyle=st.linestyle,
        markeredgecolor="white",
        markeredgewidth=0.4,
        label=label,
    )


def _finish_panel(
    panel: Panel,
    title: str,
    ylabel: str,
    lens,
    handles: list,
    ncol: int,
    legend_title: str | None = None,
) -> None:
    ax = panel.ax
    _style_len_axis(ax, lens)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", axis="both")
    sns.despine(ax=ax)
    (panel.strip or ax).set_title(title, loc="left")
    if handles:
        legend_below(ax, handles, ncol, title=legend_title)


def freeze(fig: Figure) -> Figure:
    """Lay out once, inside the plot's rc context, then fix the positions.

    Sizes are in inches, so the layout holds for every format and dpi; each save is then
    one plain draw instead of a constrained-layout solve, and ticks made at draw time get
    this figure's font sizes rather than the global defaults.
    """
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    return fig


def _title(dev: str, devices: list[str]) -> str:
    return dev if len(devices) > 1 or dev != "cpu" else ""


def plot_vs_length(
    df: pd.DataFrame,
    value: str,
    *,
    styles: dict[str, ArchStyle],
    width: str = "double",
    ylabel: str,
    fit: bool = True,
    annotate_speedup_over: str | None = None,
    metric: Metric | None = None,
    families: dict[str, str] | None = None,
    baseline: str | None = None,
    crossovers: pd.DataFrame | None = None,
) -> Figure:
    """``value`` vs sequence length on log–log axes, one panel per device label.

    With many architectures and ``families``, one panel per device and family (as in
    :func:`plot_speedup`), each with ``baseline``'s line for reference, on one y scale.

    With ``fit`` each legend entry carries the arch's fitted exponent over the lengths it
    completed. ``annotate_speedup_over`` writes, at each arch's longest length where it and
    that baseline both finished, how many times faster it is than the baseline there.
    With ``metric`` the values are shown in one unit picked for the data (``{unit}`` in
    ``ylabel`` is replaced by it), so ticks read "10 ms" rather than "10^-2 s".

    ``crossovers`` (rows of :func:`~harness.report.crossover.crossover_table`): each
    architecture's time crossover with the baseline is marked where the curves cross (◆),
    with its bootstrap interval as a bar (an arrowhead where it is open).
    """
    if metric is not None:
        unit, div = pick_unit(df.loc[df["status"] == "ok", value].astype(float), metric)
        df = df.assign(**{value: df[value] / div})
        ylabel = ylabel.format(unit=unit)
    devices = sorted(df["device_label"].unique())
    archs = [a for a in styles if a in set(df["arch"])]
    others = [a for a in archs if a != baseline]
    specs = speedup_panels(devices, others, families)
    if len(specs) > len(devices) and baseline in archs:  # family panels: baseline in each
        specs = [(t, dev, [baseline, *members]) for t, dev, members in specs]
    elif len(specs) == len(devices):
        specs = [(t, dev, archs) for t, dev, _ in specs]
    statuses = set(df["status"]) & set(FAILED)
    marks = _crossover_marks(crossovers, value)
    extra_items = (len(statuses) + bool(df["noisy"].fillna(False).astype(bool).any())
                   + _any_thin(df) + (not marks.empty))
    n_items = max(len(members) for _, _, members in specs) + extra_items
    ncol = legend_columns(len(specs), width, n_items)
    rows = _strip_rows(df)
    all_ok = df[(df["status"] == "ok") & df[value].notna() & (df[value] > 0)]
    with mpl.rc_context(sns.axes_style("ticks")), mpl.rc_context(rc_for_width(WIDTHS[width])):
        legend_rows = math.ceil(n_items / ncol) + bool(annotate_speedup_over)
        fig, panels = new_figure(len(specs), width, legend_rows, rows)
        for panel, (title, dev, members) in zip(panels, specs, strict=True):
            ax = panel.ax
            d = df[(df["device_label"] == dev) & df["arch"].isin(members)]
            ok = d[(d["status"] == "ok") & d[value].notna() & (d[value] > 0)]
            handles = []
            any_noisy = any_thin = False
            for arch in members:
                if not (d["arch"] == arch).any():
                    continue
                st = styles[arch]
                g = ok[ok["arch"] == arch].sort_values("seq_len")
                label = arch
                if fit and g["seq_len"].nunique() >= MIN_FIT_LENGTHS:
                    e = fit_exponent(g["seq_len"], g[value]).exponent
                    label = f"{arch} ($n^{{{e:.2f}}}$)"
                ax.plot(
                    g["seq_len"],
                    g[value],
                    color=st.color,
                    marker=st.marker,
                    linestyle=st.linestyle,
                    markeredgecolor="white",
                    markeredgewidth=0.4,
                )
                any_noisy |= _mark_noisy(ax, g, "seq_len", value, st)
                any_thin |= _mark_thin(ax, g, "seq_len", value)
                handles.append(_arch_handle(st, label))
            scale = all_ok if len(specs) > len(devices) else ok  # family panels: one scale
            if not scale.empty:
                _set_value_axis(ax, scale[value].min(), scale[value].max())
            shown = _draw_strip(panel, d, styles, rows)
            here = marks[(marks["device_label"] == dev) & marks["a"].isin(members)
                         & marks["b"].isin(members)]
            note = (
                f"N× = speedup over {annotate_speedup_over} at the longest common length"
                if annotate_speedup_over
                else None
            )
            _finish_panel(
                panel,
                title,
                ylabel,
                df.loc[df["device_label"] == dev, "seq_len"],
                handles + [_noisy_handle()] * any_noisy + [_thin_handle()] * any_thin
                + _failure_handles(shown) + [_crossover_handle()] * (not here.empty),
                ncol,
                note,
            )
            _mark_crossovers(ax, ok, value, here, styles)
            if annotate_speedup_over:
                _annotate_speedups(ax, ok, value, annotate_speedup_over, styles)
        return freeze(fig)


def _crossover_marks(crossovers: pd.DataFrame | None, value: str) -> pd.DataFrame:
    """The time crossovers with the baseline that have a point to mark."""
    cols = ["device_label", "a", "b", "point", "low", "high"]
    if crossovers is None or crossovers.empty or value != "time_median_s":
        return pd.DataFrame(columns=cols)
    c = crossovers
    return c[(c["metric"] == "time") & c["vs_baseline"].astype(bool) & c["point"].notna()][cols]


def _crossover_handle() -> Line2D:
    return Line2D([], [], color="0.3", marker="D", markeredgecolor="white",
                  markeredgewidth=0.5, linewidth=1.4,
                  label="crossover with baseline (95% CI)")


def _mark_crossovers(ax: Axes, ok: pd.DataFrame, value: str, marks: pd.DataFrame,
                     styles: dict[str, ArchStyle]) -> None:
    """◆ at each crossover, on the baseline's curve (both curves meet there), in the
    architecture's colour, with a bar over its interval clipped to the axis (an arrowhead
    where the interval is open or runs past it)."""
    x_lo, x_hi = ax.get_xlim()
    size = mpl.rcParams["lines.markersize"]
    for r in marks.itertuples(index=False):
        base = ok[ok["arch"] == r.b].sort_values("seq_len")
        if base.empty or r.a not in styles:
            continue
        point, low, high = float(r.point), float(r.low), float(r.high)
        y = float(np.exp(np.interp(np.log(point), np.log(base["seq_len"].astype(float)),
                                   np.log(base[value].astype(float)))))
        color = styles[r.a].color
        if not math.isnan(low):  # an interval: a bar, clipped to the axis
            lo, hi = max(low, x_lo), min(high, x_hi)
            ax.plot([lo, hi], [y, y], color=color, linewidth=1.4, alpha=0.9, zorder=6,
                    solid_capstyle="butt", gid="crossover interval")
            for end, cut, m in ((lo, low < x_lo, "<"), (hi, high > x_hi, ">")):
                ax.plot([end], [y], color=color, linestyle="none", zorder=6,
                        marker=m if cut else "|", markersize=size * (0.9 if cut else 1.1))
        ax.plot([point], [y], linestyle="none", marker="D", color=color, zorder=7,
                markeredgecolor="white", markeredgewidth=0.5, markersize=size + 0.5,
                gid="crossover")


def _annotate_speedups(ax: Axes, ok: pd.DataFrame, value: str, baseline: str, styles) -> None:
    base = ok[ok["arch"] == baseline].set_index("seq_len")[value]
    for arch, g in ok[ok["arch"] != baseline].groupby("arch"):
        common = g[g["seq_len"].isin(base.index)]
        if common.empty or arch not in styles:
            continue
        last = common.loc[common["seq_len"].idxmax()]
        s = base[last["seq_len"]] / last[value]
        text = f"{s:.0f}×" if s >= 10 else f"{s:.1f}×"
        ax.annotate(
            text,
            (last["seq_len"], last[value]),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            ha="left",
            color=styles[arch].color,
            fontsize=mpl.rcParams["font.size"] - 1,
            bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.85},
        )
    lo, hi = ax.get_xlim()
    ax.set_xlim(lo, hi * 1.6)  # room for the labels right of the last points


MAX_LINES_PER_PANEL = 6  # more lines than this in one panel cannot be told apart


def speedup_panels(
    devices: list[str], archs: list[str], families: dict[str, str] | None
) -> list[tuple[str, str, list[str]]]:
    """(title, device, archs) per panel: one per device, or — when a device would hold more
    than :data:`MAX_LINES_PER_PANEL` lines and families are known — one per device and
    family, families in the order their first architecture appears in ``archs``."""
    if len(archs) <= MAX_LINES_PER_PANEL or not families:
        return [(_title(dev, devices), dev, archs) for dev in devices]
    groups: dict[str, list[str]] = {}
    for a in archs:
        groups.setdefault(families.get(a, "other"), []).append(a)
    out = []
    for dev in devices:
        # one device: the family alone (a CPU model name beside it overran the panel);
        # the report's caption and tables name the device
        prefix = f"{dev} · " if len(devices) > 1 else ""
        out += [(f"{prefix}{fam}", dev, members) for fam, members in groups.items()]
    return out


def plot_speedup(
    speed: pd.DataFrame,
    baseline: str,
    *,
    styles: dict[str, ArchStyle],
    width: str = "double",
    families: dict[str, str] | None = None,
) -> Figure:
    """Speedup over ``baseline`` vs length with bootstrap CI bars; 1× drawn as a reference.

    With many architectures and ``families`` (arch → family), each family gets its own
    panel, all on one y scale so panels compare at a glance.
    """
    devices = sorted(speed["device_label"].unique())
    others = speed[speed["arch"] != baseline]
    archs = [a for a in styles if a in set(others["arch"])]
    specs = speedup_panels(devices, archs, families)
    statuses = set(others["status"]) & set(FAILED)
    with_value = others[others["speedup"].notna()]
    extra_items = (len(statuses) + bool(with_value["noisy"].astype(bool).any())
                   + _any_thin(with_value))
    n_items = max(len(members) for _, _, members in specs) + extra_items
    ncol = legend_columns(len(specs), width, n_items)
    rows = _strip_rows(others)
    ok_all = others[others["speedup"].notna()]
    with mpl.rc_context(sns.axes_style("ticks")), mpl.rc_context(rc_for_width(WIDTHS[width])):
        fig, panels = new_figure(len(specs), width, math.ceil(n_items / ncol), rows)
        for panel, (title, dev, members) in zip(panels, specs, strict=True):
            ax = panel.ax
            d = others[(others["device_label"] == dev) & others["arch"].isin(members)]
            ok = d[d["speedup"].notna()]
            handles = []
            any_noisy = any_thin = False
            ax.axhline(1.0, color="0.5", linewidth=0.8, linestyle="--", zorder=1)
            for arch in members:
                if not (d["arch"] == arch).any():
                    continue
                st = styles[arch]
                g = ok[ok["arch"] == arch].sort_values("seq_len")
                lo = (g["speedup"] - g["ci_low"]).clip(lower=0).fillna(0)
                hi = (g["ci_high"] - g["speedup"]).clip(lower=0).fillna(0)
                ax.errorbar(
                    g["seq_len"],
                    g["speedup"],
                    yerr=[lo, hi],
                    color=st.color,
                    marker=st.marker,
                    linestyle=st.linestyle,
                    markeredgecolor="white",
                    markeredgewidth=0.4,
                    capsize=1.5,
                    elinewidth=0.7,
                )
                any_noisy |= _mark_noisy(ax, g, "seq_len", "speedup", st)
                any_thin |= _mark_thin(ax, g, "seq_len", "speedup")
                handles.append(_arch_handle(st, arch))
            scale = ok_all if len(specs) > len(devices) else ok  # family panels share a scale
            if not scale.empty:
                _set_value_axis(
                    ax,
                    # cells without an interval (nan): the points alone set the range
                    float(np.nanmin([*scale["ci_low"], *scale["speedup"], 1.0])),
                    float(np.nanmax([*scale["ci_high"], *scale["speedup"], 1.0])),
                )
                ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _p: f"{y:g}×"))
            shown = _draw_strip(panel, d, styles, rows)
            _finish_panel(
                panel,
                title,
                f"speedup over {baseline}",
                speed.loc[speed["device_label"] == dev, "seq_len"],
                handles + [_noisy_handle()] * any_noisy + [_thin_handle()] * any_thin
                + _failure_handles(shown),
                ncol,
            )
        return freeze(fig)


def save(fig: Figure, stem: Path, formats: Sequence[str] = FORMATS, dpi: int = 300) -> list[Path]:
    """Write ``stem.{pdf,svg,png}`` at the figure's exact size (no tight-bbox cropping).

    TrueType fonts are embedded in PDF (fonttype 42; journals reject Type 3), SVG keeps
    text as text, and volatile metadata (dates, versions) is dropped so reruns are identical.
    """
    out = []
    rc = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none", "svg.hashsalt": "seqbench"}
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown figure format {fmt!r}; valid choices: {', '.join(FORMATS)}")
        path = stem.with_suffix(f".{fmt}")
        with mpl.rc_context(rc):
            fig.savefig(path, dpi=dpi, format=fmt, metadata=_metadata(fmt))
        out.append(path)
    return out


def _metadata(fmt: str) -> dict[str, str | None]:
    if fmt == "png":
        return {"Software": None}
    if fmt == "pdf":
        return {"Creator": "seqbench", "Producer": None, "CreationDate": None}
    if fmt == "svg":
        return {"Date": None, "Creator": None}
    return {}
