"""Task learning curves in reports: held-out metric vs training seconds or vs tokens
seen, one panel per task and device, the target as a dashed line (the tables are
:mod:`harness.report.tasks`)."""

from __future__ import annotations

import math
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, FuncFormatter

from harness.report.figures import freeze, legend_below, legend_columns, new_figure
from harness.report.style import FAILURE_MARKERS, WIDTHS, ArchStyle, rc_for_width
from harness.report.tables import STATUS_TEXT
from harness.report.tasks import (
    TASK_KEYS,
    X_AXES,
    _fmt_target,
    _options_key,
    _percent,
    metric_info,
    split_tasks,
    task_results,
)
from harness.store.load import FACET_KEYS
from workloads.registry import MetricInfo


def task_curves(df: pd.DataFrame) -> pd.DataFrame:
    """Long table of every evaluation of every task cell (facet keys, arch, curve columns)."""
    _, tasks = split_tasks(df)
    frames = []
    for _, r in tasks.iterrows():
        m = r["metrics"] if isinstance(r["metrics"], dict) else {}
        if not m.get("curve"):
            continue
        c = pd.DataFrame(m["curve"], columns=m["curve_columns"])
        for k in (*[k for k in FACET_KEYS if k in r.index], "arch", "seq_len"):
            c[k] = r[k]
        c["options_key"] = _options_key(r["workload"], r["overrides"])
        c["task"] = m.get("task", r["workload"])
        frames.append(c)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _panels(res: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """One panel per task facet (device, task and whatever else differs), in task order."""
    keys = [k for k in TASK_KEYS if k in res.columns]
    # ``res`` is already in device, task order; groupby keeps it with sort=False
    return [
        (dict(zip(keys, key, strict=True)), g)
        for key, g in res.groupby(keys, sort=False, dropna=False)
    ]


def _parse_key(key: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in key.split(",") if "=" in kv)


def _panel_title(key: dict[str, Any], res: pd.DataFrame) -> str:
    """Task and length; the device only when several share the figure (else the suptitle);
    of the other keys only what differs between this task's panels (``lr=0.01``)."""
    parts = [f"{key['workload']} (n={key['seq_len']})"]
    same_task = res[res["workload"] == key["workload"]]
    for k in ("preset", "batch", "dtype", "compile"):
        if k in res.columns and same_task[k].nunique(dropna=False) > 1:
            parts.append(f"{k} {key[k]}")
    opts = [_parse_key(o) for o in same_task["options_key"].unique()]
    mine = _parse_key(key["options_key"])
    for k in sorted({k for o in opts for k in o}):
        if len({o.get(k) for o in opts}) > 1:
            parts.append(f"{k}={mine.get(k, 'default')}")
    title = " · ".join(parts)
    if res["device_label"].nunique() > 1:
        title += f"\n{key['device_label']}"
    return title


def _target_handle(target: float, metric: MetricInfo) -> Line2D:
    return Line2D(
        [],
        [],
        color="0.35",
        linestyle="--",
        linewidth=0.8,
        label=f"target {_fmt_target(target, metric)}",
    )


def _failed_handle(st: ArchStyle, arch: str, status: str) -> Line2D:
    marker, text = FAILURE_MARKERS.get(status, ("x", STATUS_TEXT.get(status, status)))
    return Line2D(
        [],
        [],
        linestyle="none",
        marker=marker,
        color=st.color,
        markersize=mpl.rcParams["lines.markersize"] + 1.5,
        markeredgewidth=0.3,
        label=f"{arch}: {text}",
    )


def plot_task_curves(
    df: pd.DataFrame,
    x: str = "wall_s",
    *,
    styles: dict[str, ArchStyle],
    width: str = "double",
    baseline: str,
) -> Figure:
    """Held-out metric vs ``x`` ("wall_s": training seconds, "tokens_seen"), per arch.

    One panel per task and device; the target is a dashed line, the point where each arch
    first met it is ringed, and failed cells appear in the legend with their status.
    """
    if x not in X_AXES:
        raise ValueError(f"unknown x axis {x!r}; valid choices: {', '.join(X_AXES)}")
    res = task_results(df, baseline)
    curves = task_curves(df)
    panels = _panels(res)
    if not panels:
        raise ValueError("no task records to plot")
    n_items = max(len(g) + 1 for _, g in panels)  # archs + the target line
    ncol = legend_columns(len(panels), width, n_items, entry_in=1.1)  # short arch names
    with mpl.rc_context(sns.axes_style("ticks")), mpl.rc_context(rc_for_width(WIDTHS[width])):
        fig, axes = new_figure(len(panels), width, math.ceil(n_items / ncol), 0)
        for panel, (key, g) in zip(axes, panels, strict=True):
            _draw_panel(panel.ax, key, g, curves, x, styles, ncol)
            panel.ax.set_title(_panel_title(key, res), loc="left")
        devices = res["device_label"].unique()
        if len(devices) == 1 and devices[0] != "cpu":
            fig.suptitle(str(devices[0]), x=0.01, ha="left", fontsize="medium")
        return freeze(fig)


def _same_curve(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    """Two curves with the same points (two implementations of one model, vs tokens)."""
    return all(
        len(p) == len(q) and np.allclose(p, q, rtol=1e-6, atol=0) for p, q in zip(a, b, strict=True)
    )


def _look(st: ArchStyle, *, hollow: bool) -> dict[str, Any]:
    """An arch's line; a curve lying on an earlier one is dashed with larger open markers,
    so both stay visible and the legend can say they coincide."""
    if not hollow:
        return {
            "color": st.color,
            "marker": st.marker,
            "linestyle": st.linestyle,
            "markeredgecolor": "white",
            "markeredgewidth": 0.4,
        }
    return {
        "color": st.color,
        "marker": st.marker,
        "linestyle": (0, (3, 2)),
        "markerfacecolor": "none",
        "markeredgecolor": st.color,
        "markeredgewidth": 0.9,
        "markersize": mpl.rcParams["lines.markersize"] + 2.5,
    }


def _draw_panel(ax, key, g: pd.DataFrame, curves: pd.DataFrame, x: str, styles, ncol) -> None:
    metric = metric_info(g["task"].iloc[0], g["metric"].iloc[0])
    scale = metric.scale
    sel = curves
    for k, v in key.items():
        if not sel.empty and k in sel.columns:
            sel = sel[sel[k] == v]
    handles = []
    drawn: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for r in g.itertuples(index=False):
        st = styles[r.arch]
        if r.status != "ok":
            handles.append(_failed_handle(st, r.arch, r.status))
            continue
        c = sel[sel["arch"] == r.arch].sort_values("step") if not sel.empty else sel
        c = c[c["metric"].notna()] if not c.empty else c
        if c.empty:
            continue
        xy = (c[x].to_numpy(float), (c["metric"] * scale).to_numpy(float))
        same = next((a for a, d in drawn.items() if _same_curve(d, xy)), None)
        drawn[r.arch] = xy
        look = _look(st, hollow=same is not None)
        ax.plot(*xy, **look, zorder=3)
        hit = c[c["step"] == r.steps_to_target] if not math.isnan(r.steps_to_target) else c[:0]
        if not hit.empty:
            ax.plot(
                hit[x],
                hit["metric"] * scale,
                linestyle="none",
                marker="o",
                markersize=mpl.rcParams["lines.markersize"] + 4,
                markerfacecolor="none",
                markeredgecolor=st.color,
                markeredgewidth=0.9,
                zorder=4,
            )
        label = r.arch if same is None else f"{r.arch} (= {same})"
        handles.append(Line2D([], [], **look, label=label))
    target = float(g["target"].iloc[0])
    if math.isfinite(target):
        ax.axhline(target * scale, color="0.35", linestyle="--", linewidth=0.8, zorder=2)
        handles.append(_target_handle(target, metric))
    if metric.log_scale:
        ax.set_yscale("log")
    if _percent(metric):
        ax.set_ylim(0, 100)
    ax.set_ylabel(metric.label)
    ax.set_xlabel(X_AXES[x])
    ax.set_xlim(left=0)
    if x == "tokens_seen":
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.grid(True, which="major", axis="both")
    sns.despine(ax=ax)
    if handles:
        legend_below(ax, handles, ncol, offset=-0.26)


__all__ = ["plot_task_curves", "task_curves"]
