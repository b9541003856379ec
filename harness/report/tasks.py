"""Task workloads in reports: what each architecture reaches, and how fast in wall-clock time.

A task record (``metrics.task`` set, or a workload of kind "task") carries a learning
curve (held-out metric at every evaluation against training seconds and tokens seen) and
its time-to-target: the training seconds (evaluation excluded) at the first evaluation
whose metric met the target. Evaluations are discrete, so the target was in truth crossed
somewhere after the previous evaluation: ``ttt_low_s`` is that earlier time, and the
speedup's bracket [low, high] is what the evaluation spacing allows (not a noise CI).

``task_results`` is the tidy numeric table (for CSV and notebooks); ``task_table`` its
display form, where every cell is a number or says why there is none (``not reached``,
``no baseline``, a failure status). The curves are :mod:`harness.report.task_curves`.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

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


# the task table's text columns (aligned left in Markdown and LaTeX); the rest are figures
TEXT_COLUMNS = ("device", "task", "arch", "metric")


def task_table(df: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Display table of the task cells (strings): final and best metric, parameters,
    steps, time and tokens to target, and time-to-target speedup over ``baseline`` with
    the bracket the evaluation spacing allows. No cell is blank: a target never met reads
    ``not reached``, a failed cell its status, a facet without the baseline ``no baseline``.
    """
    res = task_results(df, baseline)
    cols = [
        *TEXT_COLUMNS,
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
