"""Published figures (``published.toml``) beside what the runs measured for the same quantity.

Each published figure names its quantity (a speedup, an accuracy, or a reference
implementation's test bound on a step time), its source and the conditions it was
obtained under; ``[figure.measure]`` says which measured cells carry the same quantity.
The section prints one row per figure and device: the published value, the measured one,
and a note wherever the conditions differ (CPU vs GPU, a stand-in dataset, another n or
batch, another objective). Every name (workload, architecture, preset) comes from the
data file, never from this code.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from harness.report.tables import to_markdown
from harness.store.load import FACET_KEYS

# the language-modelling claims are measured by the suite's roles (harness.report.lm_paper)
# and handed in; the others are found in the records by [figure.measure]
LM_QUANTITIES = ("token-multiplier", "loss-gap-ratio", "loss-gain")
QUANTITIES = ("speedup", "accuracy", "test-bound", *LM_QUANTITIES)
STATISTICS = {  # what a measured row's number is, by quantity
    "speedup": ("time_median_s", "time_min_s"),
    "accuracy": ("best", "final"),
    "test-bound": ("time_min_s", "time_median_s"),
    **{q: ("median over seeds",) for q in LM_QUANTITIES},
}
REQUIRED = ("id", "quantity", "claim", "source", "seen_in", "conditions", "hardware")
PUBLISHED_KEYS = ("device", "dataset", "seq_len", "batch", "params", "objective")
MEASURE_KEYS = ("workload", "workloads", "arch", "baseline", "preset", "seq_len", "batch",
                "statistic")  # fmt: skip


@dataclass(frozen=True)
class Figure:
    """One published figure and where its measured counterpart is found."""

    id: str
    quantity: str
    claim: str
    source: str
    seen_in: str
    conditions: str
    hardware: str
    value: float | None = None  # speedup (×), accuracy (fraction), multiplier or ratio
    low: float | None = None  # test bounds (seconds)
    high: float | None = None
    qualifier: str = ""  # e.g. "up to"
    published: dict[str, Any] = field(default_factory=dict)
    measure: dict[str, Any] = field(default_factory=dict)

    @property
    def workloads(self) -> list[str]:
        m = self.measure
        return list(m.get("workloads") or ([m["workload"]] if "workload" in m else []))

    def shown(self) -> str:
        if self.quantity == "test-bound":
            return f"{self.low:g}–{self.high:g} s (test bound)"
        if self.value is None:  # a claim with a direction only (a gain: "> 0")
            return self.qualifier
        text = (f"{100 * self.value:.2f}%" if self.quantity == "accuracy"
                else f"{self.value:g}" if self.quantity == "loss-gap-ratio" else f"{self.value:g}×")
        return f"{self.qualifier} {text}".strip()


def _fail(where: str, what: str) -> ValueError:
    return ValueError(f"published figures: {where}: {what}")


def parse(data: dict[str, Any], origin: str = "published.toml") -> list[Figure]:
    """Figures from the TOML's tables; ValueError naming the entry and the bad field."""
    figures, seen = [], set()
    for i, entry in enumerate(data.get("figure") or []):
        where = f"{origin} figure {i + 1} ({entry.get('id', '?')!r})"
        for key in REQUIRED:
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise _fail(where, f"needs a non-empty string {key!r}")
        unknown = set(entry) - set(REQUIRED) - {"value", "low", "high", "qualifier",
                                                 "published", "measure"}  # fmt: skip
        if unknown:
            raise _fail(where, f"unknown field(s) {sorted(unknown)}")
        if entry["id"] in seen:
            raise _fail(where, f"duplicate id {entry['id']!r}")
        seen.add(entry["id"])
        q = entry["quantity"]
        if q not in QUANTITIES:
            raise _fail(where, f"unknown quantity {q!r}; valid choices: {', '.join(QUANTITIES)}")
        if q == "test-bound":
            lo, hi = entry.get("low"), entry.get("high")
            if not all(isinstance(v, (int, float)) for v in (lo, hi)) or not 0 < lo <= hi:
                raise _fail(where, "a test bound needs numbers 0 < low <= high (seconds)")
        elif q == "loss-gain" and "value" not in entry:
            if not entry.get("qualifier"):
                raise _fail(where, "a loss gain needs a 'value' or a 'qualifier' (e.g. '> 0')")
        else:
            v = entry.get("value")
            if not isinstance(v, (int, float)) or v <= 0 or (q == "accuracy" and v > 1):
                raise _fail(where, f"{q} needs a positive 'value'"
                            + (" (a fraction <= 1)" if q == "accuracy" else ""))
        published, measure = entry.get("published") or {}, entry.get("measure") or {}
        for name, table, keys in (("published", published, PUBLISHED_KEYS),
                                  ("measure", measure, MEASURE_KEYS)):  # fmt: skip
            bad = set(table) - set(keys)
            if bad:
                valid = ", ".join(keys)
                raise _fail(where, f"unknown [{name}] key(s) {sorted(bad)}; valid: {valid}")
        if not (measure.get("workload") or measure.get("workloads")):
            raise _fail(where, "[measure] needs 'workload' (or 'workloads')")
        if q not in LM_QUANTITIES and not measure.get("arch"):  # roles come from the suite
            raise _fail(where, "[measure] needs 'arch'")
        if q == "speedup" and not measure.get("baseline"):
            raise _fail(where, "a speedup's [measure] needs a 'baseline'")
        stat = measure.get("statistic", STATISTICS[q][0])
        if stat not in STATISTICS[q]:
            raise _fail(where, f"statistic {stat!r} for a {q}; valid: {', '.join(STATISTICS[q])}")
        figures.append(Figure(
            id=entry["id"], quantity=q, claim=entry["claim"], source=entry["source"],
            seen_in=entry["seen_in"], conditions=entry["conditions"], hardware=entry["hardware"],
            value=entry.get("value"), low=entry.get("low"), high=entry.get("high"),
            qualifier=entry.get("qualifier", ""), published=published,
            measure={**measure, "statistic": stat},
        ))  # fmt: skip
    return figures


def load(path: str | Path | None = None) -> list[Figure]:
    """The figures of ``path`` (default: the packaged ``harness/report/published.toml``)."""
    if path is None:
        text = resources.files("harness.report").joinpath("published.toml").read_text()
        return parse(tomllib.loads(text))
    return parse(tomllib.loads(Path(path).read_text()), str(path))


# ---------------------------------------------------------------- measured counterparts


@dataclass(frozen=True)
class Measured:
    device_label: str
    device_kind: str
    value: float
    text: str  # the value as shown, with its cell's conditions
    conditions: dict[str, Any]  # workload, seq_len, batch, preset of the cell(s)


def _ok(df: pd.DataFrame, fig: Figure, arch: str) -> pd.DataFrame:
    m = fig.measure
    rows = df[(df["status"] == "ok") & (df["arch"] == arch) & df["workload"].isin(fig.workloads)]
    for key in ("preset", "seq_len", "batch"):
        if key in m:
            rows = rows[rows[key] == m[key]]
    return rows


def _measured(label: str, r: pd.Series, value: float, text: str, **extra: Any) -> Measured:
    """What cell row ``r`` measured on device ``label``: its device kind and conditions."""
    conditions = {"workload": r["workload"], "seq_len": r["seq_len"], "batch": r["batch"]}
    return Measured(label, str(r["device"]).split(":")[0], value, text, {**conditions, **extra})


def _thin(row: pd.Series, suffix: str = "") -> str:
    """A mark for a cell resting on too few timed samples (the report's ‡)."""
    n = row.get(f"n_samples{suffix}")
    if bool(row.get(f"thin{suffix}", False)):
        return f" ‡ thin: {n} sample(s)" if n is not None else " ‡ thin"
    return ""


def _settings(r: pd.Series) -> str:
    """The cell's compile mode and ``--set`` overrides, where it has any."""
    compiled = f"compile {r['compile']}" if r.get("compile", "none") != "none" else ""
    return "".join(f", {x}" for x in (compiled, r.get("overrides_key", "")) if x)


def _speedups(df: pd.DataFrame, fig: Figure) -> list[Measured]:
    """The best ratio per device over cells paired as the speedup tables pair them (same
    facet, :data:`FACET_KEYS`, and length): an arch at ``--set order=64`` is never set
    against its baseline at the default order, nor a compiled one against an eager one."""
    stat = fig.measure["statistic"]
    a, b = _ok(df, fig, fig.measure["arch"]), _ok(df, fig, fig.measure["baseline"])
    keys = [k for k in (*FACET_KEYS, "seq_len") if k in df.columns]
    merged = a.merge(b, on=keys, suffixes=("", "_base"))
    merged = merged[(merged[stat] > 0) & (merged[f"{stat}_base"] > 0)]
    out = []
    for label, g in merged.groupby("device_label", sort=True):
        ratio = g[f"{stat}_base"] / g[stat]
        r = g.loc[ratio.idxmax()]
        best = float(ratio.max())
        where = (f"n = {r['seq_len']}, batch {r['batch']}, preset {r['preset']}, "
                 f"{r['workload']}{_settings(r)}")
        span = (f" (over n = {g['seq_len'].min()}–{g['seq_len'].max()})"
                if g["seq_len"].nunique() > 1 else "")
        thin = _thin(r) or _thin(r, "_base")
        out.append(_measured(
            label, r, best, f"{'up to ' if len(g) > 1 else ''}{best:.3g}× at {where}{span}{thin}"))
    return out


def _accuracies(df: pd.DataFrame, fig: Figure) -> list[Measured]:
    stat = fig.measure["statistic"]
    rows = _ok(df, fig, fig.measure["arch"])
    out = []
    for (label, workload), g in rows.groupby(["device_label", "workload"], sort=True):
        vals = [m.get(stat) for m in g["metrics"] if isinstance(m, dict)]
        vals = [float(v) for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
        if not vals:
            continue
        med = float(pd.Series(vals).median())
        spread = (f", {len(vals)} runs: {100 * min(vals):.1f}–{100 * max(vals):.1f}%"
                  if len(vals) > 1 else "")  # fmt: skip
        r = g.iloc[0]
        out.append(_measured(
            label, r, med, f"{100 * med:.1f}% ({stat}, {workload}, n = {r['seq_len']}{spread})",
            dataset=workload))
    return out


def _step_times(df: pd.DataFrame, fig: Figure) -> list[Measured]:
    stat = fig.measure["statistic"]
    rows = _ok(df, fig, fig.measure["arch"])
    out = []
    for label, g in rows.groupby("device_label", sort=True):
        r = g.loc[g[stat].idxmin()]
        v = float(r[stat])
        out.append(_measured(
            label, r, v, f"{v * 1e3:.3g} ms ({'min' if stat == 'time_min_s' else 'median'} "
            f"step, n = {r['seq_len']}, batch {r['batch']}, {r['workload']}){_thin(r)}"))
    return out


MEASURERS = {"speedup": _speedups, "accuracy": _accuracies, "test-bound": _step_times}


def differences(fig: Figure, got: Measured) -> list[str]:
    """Where the measured cell's conditions differ from the published ones."""
    pub, notes = fig.published, []
    if pub.get("device") and pub["device"] != got.device_kind:
        notes.append(f"{got.device_kind.upper()} here, {pub['device'].upper()} published: "
                     f"{fig.hardware}")  # fmt: skip
    if pub.get("dataset") and pub["dataset"] != got.conditions.get("dataset", pub["dataset"]):
        notes.append(f"{got.conditions['dataset']} stands in for {pub['dataset']}")
    for key, name in (("seq_len", "n"), ("batch", "batch")):
        if pub.get(key) is not None and pub[key] != got.conditions.get(key):
            notes.append(f"{name} {got.conditions.get(key)} here, {pub[key]} published")
    if pub.get("objective"):
        notes.append(f"objective: {_objective(got.conditions['workload'])} here, "
                     f"{pub['objective']} published")  # fmt: skip
    return notes


def _objective(workload: str) -> str:
    import workloads

    try:
        return workloads.info(workload).description
    except ValueError:
        return workload


def _verdict(fig: Figure, got: Measured) -> str:
    if fig.quantity != "test-bound":
        return ""
    if got.value < fig.low:
        return "below the bound"
    return "within the bound" if got.value <= fig.high else "above the bound"


def published_table(df: pd.DataFrame, figures: list[Figure] | None = None,
                    lm: dict[str, list[Measured]] | None = None) -> pd.DataFrame:
    """One row per figure and device that measured it (a figure nobody measured: one row).
    ``lm``: the language-modelling claims measured, by quantity (see ``LM_QUANTITIES``)."""
    figures = load() if figures is None else figures
    rows = []
    for fig in figures:
        if fig.quantity in LM_QUANTITIES:
            found = [g for g in (lm or {}).get(fig.quantity, [])
                     if g.conditions.get("workload") in fig.workloads]
        else:
            found = MEASURERS[fig.quantity](df, fig) if not df.empty else []
        base = {"figure": fig.id, "quantity": fig.quantity, "published": fig.shown(),
                "claim": fig.claim, "source": fig.source, "hardware": fig.hardware}  # fmt: skip
        if not found:
            where = ", ".join(f"{k} {v}" for k, v in fig.measure.items() if k != "statistic")
            if fig.quantity in LM_QUANTITIES:
                where += ", by a suite's [report.lm] roles (e.g. --suite lm-smoke)"
            rows.append({**base, "device": "", "measured": f"not in these runs ({where})",
                         "measured_value": None, "differs": ""})  # fmt: skip
        for got in found:
            verdict = _verdict(fig, got)
            rows.append({**base, "device": got.device_label,
                         "measured": got.text + (f": {verdict}" if verdict else ""),
                         "measured_value": got.value,
                         "differs": "; ".join(differences(fig, got))})  # fmt: skip
    return pd.DataFrame(rows)


def published_section(df: pd.DataFrame, figures: list[Figure] | None = None,
                      lm: dict[str, list[Measured]] | None = None) -> list[str]:
    """The report's Markdown section: published beside measured, with the differences."""
    table = published_table(df, figures, lm)
    if table.empty:
        return []
    show = table[["figure", "published", "device", "measured", "differs"]].rename(
        columns={"differs": "conditions that differ"}
    )
    lines = [
        "## Published beside measured",
        "",
        "Each figure of `harness/report/published.toml` is a published number for a "
        "quantity these runs also measure; 'conditions that differ' says why the two need not "
        "agree. Test bounds are a reference implementation's limits on its own step time, "
        "not speedups.",
        "",
        to_markdown(show.set_index("figure"), "figure"),
        "",
    ]
    lines += [f"- **{r.figure}**: {r.claim}. Source: {r.source}. Hardware: {r.hardware}."
              for r in table.drop_duplicates("figure").itertuples()]  # fmt: skip
    return lines + [""]
