"""A suite's language-modelling comparison in the report: its ``[report.lm]`` roles, each
role's runs at every size and seed, the claims of :mod:`harness.report.lm_claims`, and
their figures.

A role is an architecture and, optionally, configuration values its cells must have
(``match``): two roles may share an architecture (the LMU model with and without
attention). The roles' names are the claims' vocabulary: the ``subject`` is compared
with the ``reference`` for the token multiplier, ``reference`` with ``baseline`` for
the gap ratio, ``subject`` with ``improved`` for the gain of what ``improved`` adds.
Nothing here names a model; the suite does.

Sizes pair by rank: each role's distinct parameter counts (``metrics.model_params``,
the adapter's own parameters: the non-embedding count), smallest first, are sizes
1, 2, …; a suite matches its roles per size (``tests`` hold its configurations within
±5%). Seeds are a cell's ``seed`` option (runs without one: one seed per run).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import UsageError
from harness.report.lm_claims import (
    MIN_FIT_SIZES,
    Curve,
    GapRatio,
    LossGain,
    LossScaling,
    SeedInterval,
    TokenMultiplier,
    common_budget,
    count_text,
    fewer_tokens,
    gap_ratio,
    loss_gain,
    loss_scaling,
    seed_interval,
    token_multiplier,
)
from harness.report.output import Output, slug, write_csv
from harness.report.published import Measured

ROLES = ("subject", "improved", "reference", "baseline")
NEEDED = ("subject", "reference")  # the least a comparison needs: the token multiplier
ROLE_KEYS = ("label", "arch", "match")
WALL_COLUMN = "wall_s"


@dataclass(frozen=True)
class Role:
    """Which cells play a role: ``arch``'s, with every ``match`` value in their overrides
    (a key the cell does not set never matches)."""

    name: str
    label: str
    arch: str
    match: tuple[tuple[str, Any], ...] = ()

    def selects(self, arch: str, overrides: Mapping[str, Any]) -> bool:
        return arch == self.arch and all(
            k in overrides and overrides[k] == v for k, v in self.match)


def parse_roles(table: Any, source: str) -> dict[str, Role]:
    """The roles of a suite's ``[report.lm]`` table; UsageError naming the bad entry."""
    if not isinstance(table, dict):
        raise UsageError(f"{source}: [report.lm] must be a table of roles, got {table!r}")
    unknown = sorted(set(table) - set(ROLES))
    if unknown:
        raise UsageError(f"{source}: unknown [report.lm] role(s) {unknown}; valid choices: "
                         f"{', '.join(ROLES)}")
    missing = [r for r in NEEDED if r not in table]
    if missing:
        raise UsageError(f"{source}: [report.lm] needs the role(s) {', '.join(missing)}")
    roles = {}
    for name in ROLES:
        spec = table.get(name)
        if spec is None:
            continue
        where = f"{source}: [report.lm] {name}"
        if not isinstance(spec, dict) or set(spec) - set(ROLE_KEYS):
            raise UsageError(f"{where} must be a table of {', '.join(ROLE_KEYS)}, got {spec!r}")
        if not all(isinstance(spec.get(k), str) and spec[k] for k in ("label", "arch")):
            raise UsageError(f"{where} needs a non-empty label and arch, got {spec!r}")
        match = spec.get("match", {})
        if not isinstance(match, dict):
            raise UsageError(f"{where}: match must be a table of key = value, got {match!r}")
        roles[name] = Role(name, spec["label"], spec["arch"], tuple(sorted(match.items())))
    labels = [r.label for r in roles.values()]
    if len(set(labels)) != len(labels):
        raise UsageError(f"{source}: [report.lm] labels must differ, got {labels}")
    return roles


# ---------------------------------------------------------------- runs


@dataclass(frozen=True)
class LmRun:
    """One finished cell of a role: held-out loss against tokens seen and against
    training seconds."""

    role: str
    params: int
    seed: Hashable
    device_label: str
    tokens: Curve
    wall: Curve
    conditions: tuple[tuple[str, Any], ...] = ()  # device kind, workload, data, n, batch


def _role_of(arch: str, overrides: Any, roles: Mapping[str, Role]) -> Role | None:
    over = overrides if isinstance(overrides, dict) else {}
    return next((x for x in roles.values() if x.selects(arch, over)), None)


def in_roles(tasks: pd.DataFrame, roles: Mapping[str, Role]) -> pd.Series:
    """Rows some role selects: the comparison's records, which its section shows."""
    return pd.Series([_role_of(a, o, roles) is not None
                      for a, o in zip(tasks["arch"], tasks["overrides"], strict=True)],
                     index=tasks.index, dtype=bool)


def lm_runs(tasks: pd.DataFrame, roles: Mapping[str, Role]) -> list[LmRun]:
    """The ok records each role selects, as curves (a record in no role is left out)."""
    out = []
    for r in tasks[tasks["status"] == "ok"].itertuples():
        over = r.overrides if isinstance(r.overrides, dict) else {}
        m = r.metrics if isinstance(r.metrics, dict) else {}
        role = _role_of(r.arch, over, roles)
        if role is None or not m.get("curve"):
            continue
        params = int(m.get("model_params") or m.get("params") or r.params)
        seed = over.get("seed", f"run {r.run_id}")
        data = m.get("data") if isinstance(m.get("data"), dict) else {}
        conditions = (("device", str(r.device).split(":")[0]), ("workload", r.workload),
                      ("dataset", str(data.get("source", r.workload))),
                      ("seq_len", r.seq_len), ("batch", r.batch))
        rows, columns = m["curve"], m.get("curve_columns")
        out.append(LmRun(role.name, params, seed, str(r.device_label),
                         Curve.from_rows(rows, columns),
                         Curve.from_rows(rows, columns, WALL_COLUMN), conditions))
    seen: dict[tuple, int] = {}
    for r in out:
        key = (r.role, r.params, r.seed, r.device_label)
        seen[key] = seen.get(key, 0) + 1
    twice = [k for k, n in seen.items() if n > 1]
    if twice:
        role, params, seed, device = twice[0]
        raise UsageError(
            f"[report.lm] role {role!r} selects {seen[twice[0]]} runs of {params:,} "
            f"parameters with seed {seed} on {device} (e.g. two learning rates): give the "
            "role a match that picks one")
    return out


# ---------------------------------------------------------------- findings


@dataclass(frozen=True)
class SizeFindings:
    """The claims at one size: losses compared at ``budget`` tokens (the common budget);
    a claim whose roles are missing, or whose computation cannot hold, says why."""

    size: int  # 1 = smallest
    params: dict[str, int]  # role → its parameter count at this size
    seeds: dict[str, int]  # role → seeds run
    budget: float
    final: dict[str, str]  # role → loss at the budget, median [interval] over seeds
    multiplier: TokenMultiplier | str  # reference's tokens to the subject's final loss
    fewer: SeedInterval | str  # subject's tokens to the reference's final loss, inverted
    gap: GapRatio | str
    gain: LossGain | str


@dataclass(frozen=True)
class LmFindings:
    device_label: str
    roles: dict[str, Role]
    sizes: list[SizeFindings]
    scaling: dict[str, LossScaling | str] = field(default_factory=dict)  # role → fit or why


def _sizes(runs: list[LmRun]) -> dict[str, list[int]]:
    """Role → its distinct parameter counts, smallest first."""
    out: dict[str, set[int]] = {}
    for r in runs:
        out.setdefault(r.role, set()).add(r.params)
    return {k: sorted(v) for k, v in out.items()}


def _try(make, *args, **kw):
    try:
        return make(*args, **kw)
    except ValueError as exc:  # e.g. seeds that do not pair, curves with no common tokens
        return f"not computed: {exc}"


def analyse(runs: list[LmRun], roles: Mapping[str, Role]) -> list[LmFindings]:
    """The claims per device and size, and the loss-vs-parameters fit per role."""
    out = []
    for device in sorted({r.device_label for r in runs}):
        here = [r for r in runs if r.device_label == device]
        sizes = _sizes(here)
        n_sizes = max(len(v) for v in sizes.values())
        found = []
        for i in range(n_sizes):
            at = {name: {r.seed: r.tokens for r in here
                         if r.role == name and len(sizes[name]) > i
                         and r.params == sizes[name][i]}
                  for name in roles}
            at = {k: v for k, v in at.items() if v}
            found.append(_size_findings(i + 1, at, sizes, roles))
        scaling: dict[str, LossScaling | str] = {}
        for name, counts in sizes.items():
            mine = [r for r in here if r.role == name]
            if len(counts) < MIN_FIT_SIZES:
                scaling[name] = f"{len(counts)} size(s): a fit needs {MIN_FIT_SIZES}"
                continue
            scaling[name] = _try(loss_scaling, [r.params for r in mine],
                                 [r.tokens for r in mine], [r.seed for r in mine])
        out.append(LmFindings(device, dict(roles), found, scaling))
    return out


def _size_findings(size: int, at: dict[str, dict[Hashable, Curve]],
                   sizes: dict[str, list[int]], roles: Mapping[str, Role]) -> SizeFindings:
    def label(name: str) -> str:
        return roles[name].label

    def missing(*names: str) -> str:
        gone = [label(n) if n in roles else n for n in names if n not in at]
        if any(n not in roles for n in names):
            return f"not in the suite's roles: {', '.join(n for n in names if n not in roles)}"
        return f"no runs at this size: {', '.join(gone)}" if gone else ""

    params = {n: sizes[n][size - 1] for n in at}
    seeds = {n: len(cs) for n, cs in at.items()}
    budget = _try(common_budget, *at.values())
    if isinstance(budget, str):  # curves that share no token count compare nowhere
        return SizeFindings(size, params, seeds, math.nan, {}, budget, budget, budget, budget)
    final = {n: seed_interval([c.at(budget) for c in cs.values()]).text()
             for n, cs in at.items()}
    why = missing("subject", "reference")
    mult = why or _try(token_multiplier, at["subject"], at["reference"],
                       subject_label=label("subject"), reference_label=label("reference"))
    fewer = why or _try(fewer_tokens, at["subject"], at["reference"])
    why = missing("subject", "reference", "baseline")
    gap = why or _try(gap_ratio, at["subject"], at["reference"], at["baseline"],
                      tokens=budget, subject_label=label("subject"),
                      reference_label=label("reference"), baseline_label=label("baseline"))
    why = missing("subject", "improved")
    gain = why or _try(loss_gain, at["subject"], at["improved"], tokens=budget,
                       base_label=label("subject"), improved_label=label("improved"))
    return SizeFindings(size, params, seeds, budget, final, mult, fewer, gap, gain)


def _text(x: Any) -> str:
    return x if isinstance(x, str) else x.text()


# ---------------------------------------------------------------- figures


def _median_band(curves: list[Curve], grid: np.ndarray) -> tuple[np.ndarray, ...]:
    """Median, min and max over curves at each ``grid`` point all of them cover."""
    lo = max(c.tokens[0] for c in curves)
    hi = min(c.tokens[-1] for c in curves)
    g = grid[(grid >= lo) & (grid <= hi)]
    vals = np.array([[c.at(x) for x in g] for c in curves])
    return g, np.median(vals, axis=0), vals.min(axis=0), vals.max(axis=0)


def plot_curves(runs: list[LmRun], roles: Mapping[str, Role], width: str):
    """Held-out loss vs tokens (left) and vs training seconds (right), one row per size:
    each role's median over seeds, its seeds' range shaded."""
    import matplotlib as mpl
    import seaborn as sns
    from matplotlib.figure import Figure

    from harness.report.figures import freeze
    from harness.report.style import WIDTHS, arch_styles, rc_for_width

    sizes = _sizes(runs)
    n_rows = max(len(v) for v in sizes.values())
    styles = arch_styles([roles[n].label for n in roles])
    with mpl.rc_context(sns.axes_style("ticks")), mpl.rc_context(rc_for_width(WIDTHS[width])):
        panel_h = 1.7 if width == "single" else 2.1
        fig = Figure(figsize=(WIDTHS[width], n_rows * panel_h + 0.5), layout="constrained")
        axes = fig.subplots(n_rows, 2, squeeze=False)
        for row in range(n_rows):
            for col, x in enumerate(("tokens", "wall")):
                ax = axes[row][col]
                for name, role in roles.items():
                    if name not in sizes or len(sizes[name]) <= row:
                        continue
                    mine = [getattr(r, x) for r in runs
                            if r.role == name and r.params == sizes[name][row]]
                    pts = np.unique(np.concatenate([c.tokens for c in mine]))
                    g, med, lo, hi = _median_band(mine, pts)
                    st = styles[role.label]
                    ax.plot(g, med, color=st.color, linestyle=st.linestyle, label=role.label)
                    if len(mine) > 1:
                        ax.fill_between(g, lo, hi, color=st.color, alpha=0.2, linewidth=0)
                ax.set_xscale("log")
                ax.grid(True, which="major", alpha=0.3)
                params = sorted(sizes[n][row] for n in sizes if len(sizes[n]) > row)
                if col == 0:
                    ax.set_ylabel("held-out loss")
                    span = f"{count_text(params[0])}–{count_text(params[-1])}"
                    ax.set_title(f"size {row + 1}: {span} params", loc="left")
                if row == n_rows - 1:
                    ax.set_xlabel("tokens seen" if x == "tokens" else "training seconds")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4))
        return freeze(fig)


def plot_scaling(findings: LmFindings, runs: list[LmRun], width: str):
    """Loss at each run's budget vs parameters (log–log), one point per run, with each
    role's fitted power law where it has one."""
    import matplotlib as mpl
    import seaborn as sns
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    from harness.report.figures import freeze
    from harness.report.style import WIDTHS, arch_styles, rc_for_width

    roles = findings.roles
    styles = arch_styles([r.label for r in roles.values()])
    with mpl.rc_context(sns.axes_style("ticks")), mpl.rc_context(rc_for_width(WIDTHS[width])):
        fig = Figure(figsize=(WIDTHS[width], 2.6 if width == "single" else 3.0),
                     layout="constrained")
        ax = fig.subplots()
        for name, role in roles.items():
            mine = [r for r in runs if r.role == name and r.device_label == findings.device_label]
            if not mine:
                continue
            st = styles[role.label]
            x = np.array([r.params for r in mine], float)
            ax.scatter(x, [r.tokens.final for r in mine], color=st.color, marker=st.marker,
                       s=14, label=role.label)
            fit = findings.scaling.get(name)
            if isinstance(fit, LossScaling):
                xs = np.geomspace(x.min(), x.max(), 20)
                ax.plot(xs, fit.prefactor * xs ** (-fit.alpha), color=st.color,
                        linestyle=st.linestyle, linewidth=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())  # 2, 3, 4: not 2 × 10^0
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("parameters (non-embedding)")
        ax.set_ylabel("held-out loss at the budget")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best")
        return freeze(fig)


# ---------------------------------------------------------------- the section


INTRO = (
    "Held-out loss (the task's metric, lower is better) of the suite's roles at each size, "
    "compared at equal tokens (interpolated on log tokens; the common budget of the runs "
    "compared). Intervals are over seeds: their range with fewer than 5 seeds, a bootstrap "
    "of the median from 5; 'more than' and 'at most' are bounds (a curve that never got "
    "there within its budget). Claim 1, read two ways: the token multiplier is the tokens "
    "{reference} needs to reach the loss {subject} reached at its budget, over "
    "{subject}'s tokens (with equal budgets, a multiplier above 1 can only be a bound); "
    "'fewer tokens' is {reference}'s budget over the tokens {subject} needed to reach "
    "{reference}'s final loss. Claim 2, the gap ratio: ({reference} − {subject}) / "
    "({baseline} − {reference}) at equal tokens, only where the denominator's interval "
    "excludes 0. Claim 3, the gain: {subject} − {improved}. Sizes pair each role's "
    "parameter counts by rank."
)


def _role_words(roles: Mapping[str, Role]) -> dict[str, str]:
    return {n: (roles[n].label if n in roles else f"({n}: not in this suite)") for n in ROLES}


def lm_table(findings: LmFindings) -> pd.DataFrame:
    """One row per size: each role's parameters and loss at the budget."""
    rows = []
    for s in findings.sizes:
        row: dict[str, Any] = {"size": str(s.size), "tokens": count_text(s.budget)}
        for n, role in findings.roles.items():
            row[role.label] = (f"{s.final[n]}; {s.params[n]:,} params" if n in s.final
                               else "no runs")
        rows.append(row)
    return pd.DataFrame(rows)


def _fewer_text(fewer: SeedInterval | str, roles: Mapping[str, Role]) -> str:
    sub, ref = roles["subject"].label, roles["reference"].label
    head = f"{sub} reached {ref}'s final loss with "
    if isinstance(fewer, str):
        return head + f"?x fewer tokens ({fewer})"
    return head + f"{fewer.text('x')} fewer tokens"


def claim_lines(findings: LmFindings) -> list[str]:
    """A bullet per size with its three claims, then the loss-vs-parameters fits."""
    lines = []
    for s in findings.sizes:
        lines += [f"- **size {s.size}** at {count_text(s.budget)} tokens: token multiplier "
                  f"{_text(s.multiplier)}; {_fewer_text(s.fewer, findings.roles)}; gap ratio "
                  f"{_text(s.gap)}; gain {_text(s.gain)}."]
    for n, r in findings.roles.items():
        if n in findings.scaling:
            lines += [f"- loss vs parameters, {r.label}: {_text(findings.scaling[n])}."]
    return lines


def lm_section(runs: list[LmRun], findings: list[LmFindings], output: Output) -> list[str]:
    """The report's Markdown lines (and its figures and CSV); [] without runs."""
    from harness.report.tables import markdown_table

    if not runs:
        return []
    roles = findings[0].roles
    lines = ["## Language modelling: data efficiency, loss gaps, scaling", "",
             INTRO.format(**_role_words(roles)), ""]
    for f in findings:
        mine = [r for r in runs if r.device_label == f.device_label]
        name = slug("lm", f.device_label)
        table = lm_table(f)
        claims = claim_lines(f)
        write_csv(table.assign(claims=[c for c in claims[:len(table)]]),
                  output.out / "tables" / f"{name}.csv")
        lines += [f"### {f.device_label}", "",
                  "Held-out loss at the budget, median [interval] over seeds "
                  f"([{name}.csv](tables/{name}.csv)):", "",
                  markdown_table(table, left=table.columns), "", *claims, ""]
        lines += output.figure(lambda w, m=mine: plot_curves(m, roles, w), f"{name}_curves",
                               "Held-out loss vs tokens and vs training seconds (median over "
                               "seeds, their range shaded)", "learning curves")
        if any(isinstance(v, LossScaling) for v in f.scaling.values()):
            lines += output.figure(lambda w, f=f, m=mine: plot_scaling(f, m, w),
                                   f"{name}_scaling", "Held-out loss at the budget vs "
                                   "parameters, with the fitted power laws", "loss vs parameters")
    return lines


def measured_claims(runs: list[LmRun], findings: list[LmFindings]) -> dict[str, list[Measured]]:
    """Per published quantity ("token-multiplier", "loss-gap-ratio", "loss-gain"), one
    :class:`Measured` per device: the value at the largest size, the text of every size."""
    out: dict[str, list[Measured]] = {}
    for f in findings:
        cond = dict(next(r.conditions for r in runs if r.device_label == f.device_label))
        kind_of_device = str(cond.pop("device", "cpu"))
        for kind, attr in (("token-multiplier", "fewer"), ("loss-gap-ratio", "gap"),
                           ("loss-gain", "gain")):
            shown = [s for s in f.sizes if not isinstance(getattr(s, attr), str)]
            if not shown:
                continue
            if attr == "fewer":
                texts = [_fewer_text(s.fewer, f.roles) for s in shown]
            else:
                texts = [getattr(s, attr).text() for s in shown]
            text = "; ".join(f"size {s.size} ({count_text(max(s.params.values()))} params): {t}"
                             for s, t in zip(shown, texts, strict=True))
            last = getattr(shown[-1], attr)
            v = last.ratio if attr == "gap" else last.value
            out.setdefault(kind, []).append(Measured(
                f.device_label, kind_of_device, float(v) if v is not None else math.nan, text,
                cond))
    return out
