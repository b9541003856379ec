"""Task workloads in reports: what each architecture reaches, and how fast in wall-clock time.

A task record (``metrics.task`` set, or a workload of kind "task") carries a learning
curve (held-out metric at every evaluation against training seconds and tokens seen) and
its time-to-target: the training seconds (evaluation excluded) at the first evaluation
whose metric met the target. Evaluations are discrete, so the target was in truth crossed
somewhere after the previous evaluation: ``ttt_low_s`` is that earlier time, and the
speedup's bracket [low, high] is what the evaluation spacing allows (not a noise CI).

``task_results`` is the tidy numeric table (for CSV and notebooks); ``task_table`` its
display form, where every cell is a number or says why there is none (``not reached``,
``no baseline``, a failure status); ``plot_task_curves`` draws metric vs training seconds
or vs tokens seen, one panel per task and device, the target as a dashed line.
"""

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

from harness.report.figures import _freeze, legend_below, legend_columns, new_figure
from harness.report.style import FAILURE_MARKERS, WIDTHS, ArchStyle, rc_for_width
from harness.report.tables import STATUS_TEXT, fmt_number
from harness.store.load import FACET_KEYS
from workloads.registry import MetricInfo

# What makes two task cells comparable: the report's facet keys, except that of a cell's
# overrides only the task's own options (budget, learning rate, target…) count; adapter
# keys (``theta``…) are each architecture's own configuration, and differ between them.
TASK_KEYS = (
    *(k for k in FACET_KEYS if k != "overrides_key"),
    "options_key",
    "seq_len",
)

NOT_REACHED = "not reached"
NO_BASELINE = "no baseline"
X_AXES = {"wall_s": "training wall-clock (s)", "tokens_seen": "tokens seen"}
NUMERIC = (
    "target",
    "final",
    "best",
    "params",
    "steps",
    "tokens_seen",
    "train_s",
    "time_to_target_s",
    "ttt_low_s",
    "steps_to_target",
    "tokens_to_target",
    "speedup",
    "speedup_low",
    "speedup_high",
)


# ---------------------------------------------------------------- which rows are tasks


def _workload_is_task(name: str) -> bool:
    import workloads

    try:
        return workloads.kind(name) == "task"
    except ValueError:  # a workload this install does not know: judged by its records only
        return False


def is_task(df: pd.DataFrame) -> pd.Series:
    """Rows of task workloads: records with ``metrics.task``, or a workload of kind "task"."""
    has = df["metrics"].map(lambda m: isinstance(m, dict) and bool(m.get("task")))
    kinds = {w: _workload_is_task(w) for w in df["workload"].unique()}
    by_name = df["workload"].map(kinds).astype(bool)
    task_names = set(df.loc[has, "workload"])
    return has | by_name | df["workload"].isin(task_names)


def split_tasks(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(timed rows, task rows)``."""
    mask = is_task(df)
    return df[~mask], df[mask]


# ---------------------------------------------------------------- the table


def _task_defaults(workload: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Metric, direction and target from the task itself, for a failed cell with no metrics."""
    import workloads

    try:
        w = workloads.get(workload)
        opts, _ = w.split(dict(overrides or {}))
        return {
            "metric": w.task.metric,
            "higher_is_better": w.task.higher_is_better,
            "target": opts.target,
        }
    except (ValueError, AttributeError, TypeError):
        return {}


def _options_key(workload: str, overrides: dict[str, Any] | None) -> str:
    """The task options among a cell's overrides, as ``k=v,…`` (all of them if unknown)."""
    import workloads

    try:
        keys = set(workloads.option_keys(workload))
    except ValueError:
        keys = None
    items = sorted((overrides or {}).items())
    return ",".join(f"{k}={v}" for k, v in items if keys is None or k in keys)


def _previous_eval(m: dict[str, Any], column: str) -> float:
    """``column`` at the last evaluation before the one that met the target (0 if none)."""
    cols = m.get("curve_columns") or []
    step = m.get("steps_to_target")
    if step is None or "step" not in cols or column not in cols:
        return math.nan
    i, j = cols.index("step"), cols.index(column)
    before = [row[j] for row in m.get("curve") or [] if row[i] < step]
    return float(before[-1]) if before else 0.0


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def _row(r: pd.Series) -> dict[str, Any]:
    m = r["metrics"] if isinstance(r["metrics"], dict) else {}
    info = {} if m.get("metric") else _task_defaults(r["workload"], r["overrides"])
    return {
        **{k: r[k] for k in FACET_KEYS if k in r.index and k != "overrides_key"},
        "options_key": _options_key(r["workload"], r["overrides"]),
        "task": m.get("task") or r["workload"],
        "arch": r["arch"],
        "seq_len": int(r["seq_len"]),
        "status": r["status"],
        "message": r["message"],
        "metric": m.get("metric") or info.get("metric", ""),
        "higher_is_better": m.get("higher_is_better", info.get("higher_is_better")),
        "target": _num(m.get("target", info.get("target"))),
        "final": _num(m.get("final")),
        "best": _num(m.get("best")),
        "params": _num(m.get("params", r.get("params"))),
        "steps": _num(m.get("steps")),
        "tokens_seen": _num(m.get("tokens_seen")),
        "train_s": _num(m.get("train_s")),
        "stopped_by": m.get("stopped_by", ""),
        "time_to_target_s": _num(m.get("time_to_target_s")),
        "ttt_low_s": _previous_eval(m, "wall_s"),
        "steps_to_target": _num(m.get("steps_to_target")),
        "tokens_to_target": _num(m.get("tokens_to_target")),
    }


def _speedup(row: dict[str, Any], base: dict[str, Any] | None, baseline: str) -> dict[str, Any]:
    """Baseline time-to-target / arch time-to-target, its bracket, and why it may be absent."""
    out = {"speedup": math.nan, "speedup_low": math.nan, "speedup_high": math.nan}
    t, lo = row["time_to_target_s"], row["ttt_low_s"]
    if row["status"] != "ok":
        return {**out, "speedup_note": STATUS_TEXT.get(row["status"], row["status"])}
    if math.isnan(t):
        return {**out, "speedup_note": NOT_REACHED}
    if base is None:
        return {**out, "speedup_note": NO_BASELINE}
    if base["status"] != "ok":
        return {**out, "speedup_note": f"baseline {STATUS_TEXT.get(base['status'], 'failed')}"}
    bt, blo = base["time_to_target_s"], base["ttt_low_s"]
    if math.isnan(bt):
        # the baseline trained train_s seconds without reaching: its time-to-target is longer
        bound = base["train_s"] / t if t > 0 else math.inf
        return {**out, "speedup_low": bound, "speedup_note": "baseline not reached"}
    if row["arch"] == baseline:
        return {"speedup": 1.0, "speedup_low": 1.0, "speedup_high": 1.0, "speedup_note": ""}
    if t <= 0:
        return {**out, "speedup_note": "reached at start"}
    return {
        "speedup": bt / t,
        "speedup_low": blo / t,
        "speedup_high": bt / lo if lo > 0 else math.inf,
        "speedup_note": "",
    }


def _order(frame: pd.DataFrame, baseline: str) -> pd.DataFrame:
    import workloads

    rank = {t: i for i, t in enumerate(workloads.available())}  # registration order
    return (
        frame.assign(
            _t=frame["task"].map(lambda t: rank.get(t, len(rank))),
            _b=frame["arch"] != baseline,
        )
        .sort_values(["device_label", "_t", "task", "seq_len", "_b", "arch"], kind="stable")
        .drop(columns=["_t", "_b"])
        .reset_index(drop=True)
    )


def task_results(df: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Tidy numeric table: one row per task cell, with time-to-target speedup over ``baseline``.

    The baseline is the cell of ``baseline`` with the same facet (device, task, preset,
    batch, dtype, compile, task options) and sequence length. ``speedup_note`` says why a
    speedup is missing; ``speedup_low`` alone is set when the baseline never reached the
    target (the arch is at least that many times faster).
    """
    _, tasks = split_tasks(df)
    rows = [_row(r) for _, r in tasks.iterrows()]
    if not rows:
        return pd.DataFrame(columns=["task", "arch", *NUMERIC, "speedup_note"])
    keys = [k for k in TASK_KEYS if k in rows[0]]
    bases = {tuple(r[k] for k in keys): r for r in rows if r["arch"] == baseline}
    for r in rows:
        r.update(_speedup(r, bases.get(tuple(r[k] for k in keys)), baseline))
    return _order(pd.DataFrame(rows), baseline)


def metric_info(task: str, metric: str) -> MetricInfo:
    """How ``task`` shows its ``metric``, as the task declares it (label, scale, direction,
    log axis); a task this process does not know (a plugin's) shows it by name, as is."""
    import workloads

    try:
        declared = workloads.info(task).metric
    except ValueError:
        declared = None
    if declared is not None and declared.name == metric:
        return declared
    return MetricInfo(name=metric, label=metric)


def _percent(info: MetricInfo) -> bool:
    return info.scale == 100.0  # a fraction shown ×100 is a percentage


def _fmt_metric(v: float, info: MetricInfo) -> str:
    if math.isnan(v):
        return "n/a"
    return f"{info.show(v):.1f}%" if _percent(info) else fmt_number(info.show(v))


def _fmt_target(v: float, info: MetricInfo) -> str:
    """Targets are round numbers a user typed: ``80%``, ``0.01``."""
    if math.isnan(v):
        return "n/a"
    return f"{info.show(v):g}%" if _percent(info) else f"{info.show(v):g}"


def _fmt_count(v: float) -> str:
    """Tokens: ``577k``, ``1.00M`` (three significant figures)."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return fmt_number(v / div) + suffix
    return f"{v:.0f}"


def _fmt_speedup(r: pd.Series) -> str:
    if r["speedup_note"] == "baseline not reached" and math.isfinite(r["speedup_low"]):
        return f"> {fmt_number(r['speedup_low'])} (baseline not reached)"
    if r["speedup_note"]:
        return r["speedup_note"]
    s = fmt_number(r["speedup"])
    lo, hi = r["speedup_low"], r["speedup_high"]
    if lo != hi:
        hi_t = "∞" if math.isinf(hi) else fmt_number(hi)
        s += f" [{fmt_number(lo)}, {hi_t}]"
    return s


def _display_row(r: pd.Series, baseline: str) -> dict[str, str]:
    failed = r["status"] != "ok"
    status = STATUS_TEXT.get(r["status"], r["status"])
    info = metric_info(r["task"], r["metric"])
    arrow = {True: " ↑", False: " ↓"}.get(r["higher_is_better"], "")
    reached = not math.isnan(r["time_to_target_s"])

    def value(text: str) -> str:
        return status if failed else text

    return {
        "device": r["device_label"],
        "task": f"{r['task']} (n={r['seq_len']})",
        "arch": r["arch"],
        "metric": f"{r['metric']}{arrow}",
        "target": _fmt_target(r["target"], info),
        "final": value(_fmt_metric(r["final"], info)),
        "best": value(_fmt_metric(r["best"], info)),
        "params": "n/a" if math.isnan(r["params"]) else f"{int(r['params']):,}",
        "steps": value("n/a" if math.isnan(r["steps"]) else f"{int(r['steps']):,}"),
        "time to target": value(
            f"{fmt_number(r['time_to_target_s'])} s" if reached else NOT_REACHED
        ),
        "tokens to target": value(_fmt_count(r["tokens_to_target"]) if reached else NOT_REACHED),
        f"speedup vs {baseline}": _fmt_speedup(r),
    }


def task_table(df: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Display table of the task cells (strings): final and best metric, parameters,
    steps, time and tokens to target, and time-to-target speedup over ``baseline`` with
    the bracket the evaluation spacing allows. No cell is blank: a target never met reads
    ``not reached``, a failed cell its status, a facet without the baseline ``no baseline``.
    """
    res = task_results(df, baseline)
    cols = [
        "device",
        "task",
        "arch",
        "metric",
        "target",
        "final",
        "best",
        "params",
        "steps",
        "time to target",
        "tokens to target",
        f"speedup vs {baseline}",
    ]
    if res.empty:
        return pd.DataFrame(columns=cols)
    return pd.DataFrame([_display_row(r, baseline) for _, r in res.iterrows()], columns=cols)


def task_markdown(table: pd.DataFrame) -> str:
    """GitHub Markdown of ``task_table``: text columns left, numbers right, arch in code."""
    left = {"device", "task", "arch", "metric"}
    lines = [
        "| " + " | ".join(table.columns) + " |",
        "|" + "|".join(":---" if c in left else "---:" for c in table.columns) + "|",
    ]
    for _, r in table.iterrows():
        cells = [f"`{v}`" if c == "arch" else str(v) for c, v in r.items()]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def task_latex(table: pd.DataFrame, comment: str = "") -> str:
    """A bare booktabs ``tabular`` of ``task_table`` to ``\\input`` in your own table."""
    from harness.report.tables import latex_escape

    t = table.map(
        lambda v: (
            latex_escape(str(v))
            .replace("↑", r"$\uparrow$")
            .replace("↓", r"$\downarrow$")
            .replace("∞", r"$\infty$")
            .replace(">", r"$>$")
        )
    )
    t.columns = [latex_escape(c) for c in t.columns]
    left = sum(c in ("device", "task", "arch", "metric") for c in table.columns)
    body = t.style.hide(axis="index").to_latex(
        hrules=True, column_format="l" * left + "r" * (len(t.columns) - left)
    )
    head = "% generated by seqbench (python -m harness report); needs \\usepackage{booktabs}\n"
    head += "".join(f"% {line}\n" for line in comment.splitlines())
    return head + body


# ---------------------------------------------------------------- curves


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
        return _freeze(fig)


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


__all__ = [
    "is_task",
    "split_tasks",
    "task_results",
    "task_table",
    "task_curves",
    "plot_task_curves",
    "NOT_REACHED",
    "NO_BASELINE",
]
