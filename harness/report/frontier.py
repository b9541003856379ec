"""Memory frontier: the longest sequence length that fits in a device's memory, from a
power law fitted to peak memory against n.

Per architecture within one facet, over at least :data:`MIN_FIT_SIZES` measured lengths:
``peak ≈ c · n**k`` is fitted on log–log (:func:`harness.report.lm_claims.fit_power_law`)
and solved for the ``n`` where it reaches the limit. The interval is the inverse
prediction (calibration) interval of that fit: every ``n`` at which the limit lies inside
the fitted line's 95% confidence band (Student t on the residuals; Fieller's solution),
so it widens with the residual scatter, the distance from the measured lengths and a
slope that is poorly determined; where the slope is not distinguishable from zero the
band never leaves the limit and the interval is open above.

The limit: on CUDA the GPU's memory (``env.json`` ``gpu_mem_bytes``, by device index); on
a CPU the run's memory cap per cell (``mem_cap_gb``) when one was set, else the host's
memory (``mem_total_bytes``; the runner's own default stops a cell at 75% of it per
worker). Peak memory is what a cell's step allocated above what it held before, so the
frontier leaves out the process's own footprint (weights, the CUDA context): it is an
upper bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from harness.report.crossover import length_text
from harness.report.lm_claims import MIN_FIT_SIZES, fit_power_law
from harness.report.output import describe, varying
from harness.store.load import FACET_KEYS
from harness.store.rundir import RunDir

CONFIDENCE = 0.95


def _exp(v: float) -> float:
    return math.exp(v) if v < 700 else math.inf  # a flat fit's frontier can lie past 1e304


def _gib(b: float) -> str:
    return f"{b / 2**30:.3g} GiB"


@dataclass(frozen=True)
class Frontier:
    """The longest ``n`` whose fitted peak memory stays within ``limit_bytes``.

    ``point``/``low``/``high``: NaN when there is no fit (``note`` says why); ``high`` is
    +∞ when the interval is open above. ``extrapolated``: the point lies outside the
    measured lengths (nearly always: a run rarely measures up to its device's limit)."""

    limit_bytes: float
    limit_source: str
    n_lengths: int
    n_measured_max: int
    peak_at_max: float
    point: float
    low: float
    high: float
    exponent: float
    r2: float
    extrapolated: bool
    oom_at: int | None = None  # the shortest length that ran out of memory
    note: str = ""
    confidence: float = CONFIDENCE

    def text(self) -> str:
        """``≈ 3.1M [2.5M, 3.9M] (extrapolated from n ≤ 2.05k)``, or why there is none."""
        if self.note:
            return self.note
        hi = "∞)" if math.isinf(self.high) else f"{length_text(self.high)}]"
        low = length_text(max(self.low, 0.0))
        how = (f"extrapolated from n ≤ {length_text(self.n_measured_max)}" if self.extrapolated
               else f"within the measured n ≤ {length_text(self.n_measured_max)}")
        return f"≈ {length_text(self.point)} [{low}, {hi} ({how})"


def inverse_prediction(lx: np.ndarray, ly: np.ndarray, slope: float, intercept: float,
                       y0: float, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Where the least-squares line ``intercept + slope·x`` of the points (lx, ly) reaches
    ``y0``, and the set of x whose confidence band for the line contains ``y0`` (Fieller):
    ``(y0 − ŷ(x))² ≤ t² s² (1/N + (x − x̄)²/Sxx)``. Returns (x0, low, high) with
    ``high = +∞`` (and ``low`` the band's lower edge, or −∞) where the band is unbounded;
    x0 is NaN when the slope is not positive."""
    n = len(lx)
    x_bar, y_bar = float(np.mean(lx)), float(np.mean(ly))
    sxx = float(np.sum((lx - x_bar) ** 2))
    resid = ly - (intercept + slope * lx)
    s2 = float(np.sum(resid**2) / (n - 2)) if n > 2 else 0.0
    t = float(stats.t.ppf(0.5 + confidence / 2, max(n - 2, 1)))
    x0 = (y0 - intercept) / slope if slope > 0 else math.nan
    d = y0 - y_bar
    g = t * t * s2 / sxx  # t² · stderr(slope)²
    a = slope * slope - g
    c = d * d - t * t * s2 / n
    disc = slope * slope * d * d - a * c  # (b d)² − a c, b: the u coefficient / −2
    if a > 0:  # a bounded interval around x0 (disc >= 0 then)
        r = math.sqrt(max(disc, 0.0))
        return x0, x_bar + (slope * d - r) / a, x_bar + (slope * d + r) / a
    if disc <= 0 or a == 0:  # the band holds y0 at every x (or the edge case a = 0)
        return x0, -math.inf, math.inf
    r = math.sqrt(disc)  # a < 0: outside the roots; the ray towards larger x is the frontier
    return x0, x_bar + (slope * d - r) / a, math.inf


def memory_frontier(n: Sequence[float], peak: Sequence[float], limit_bytes: float, *,
                    limit_source: str = "", oom_at: int | None = None,
                    confidence: float = CONFIDENCE) -> Frontier:
    """The frontier of one architecture on one device from its measured (n, peak) pairs:
    "too few lengths" with fewer than :data:`MIN_FIT_SIZES` distinct positive ones."""
    n = np.asarray(n, dtype=float)
    peak = np.asarray(peak, dtype=float)
    keep = np.isfinite(n) & np.isfinite(peak) & (n > 0) & (peak > 0)
    n, peak = n[keep], peak[keep]
    n_lengths = len(np.unique(n))
    n_max = int(n.max()) if len(n) else 0
    at_max = float(np.max(peak[n == n_max])) if len(n) else math.nan
    nan = math.nan
    base = dict(limit_bytes=float(limit_bytes), limit_source=limit_source,
                n_lengths=n_lengths, n_measured_max=n_max, peak_at_max=at_max,
                oom_at=oom_at, confidence=confidence)
    if n_lengths < MIN_FIT_SIZES:
        return Frontier(**base, point=nan, low=nan, high=nan, exponent=nan, r2=nan,
                        extrapolated=False,
                        note=f"too few lengths ({n_lengths}; a fit needs {MIN_FIT_SIZES})")
    fit = fit_power_law(n, peak, confidence=confidence)
    if not fit.exponent > 0:
        return Frontier(**base, point=nan, low=nan, high=nan, exponent=fit.exponent,
                        r2=fit.r2, extrapolated=False,
                        note=f"no frontier: peak memory does not grow with n "
                             f"(exponent {fit.exponent:.2f})")
    lx0, llo, lhi = inverse_prediction(np.log(n), np.log(peak), fit.exponent,
                                       math.log(fit.prefactor), math.log(limit_bytes),
                                       confidence)
    point = _exp(lx0)
    return Frontier(**base, point=point, low=_exp(llo), high=_exp(lhi),
                    exponent=fit.exponent, r2=fit.r2,
                    extrapolated=not n.min() <= point <= n.max())


# ---------------------------------------------------------------- records


def device_limit(env: dict[str, Any], device: str) -> tuple[float | None, str]:
    """The memory a cell on ``device`` could use, from its machine's ``env.json``, and
    what it is; None when the environment does not say."""
    if device.startswith("cuda"):
        idx = int(device.split(":")[1]) if ":" in device else 0
        gpus = env.get("gpu_mem_bytes") or []
        if idx < len(gpus) and gpus[idx]:
            return float(gpus[idx]), f"GPU memory {_gib(gpus[idx])}"
        return None, "unknown: env.json records no GPU memory (a run before it was recorded)"
    settings = (env.get("suite") or {}).get("settings") or {}
    cap = settings.get("mem_cap_gb") or 0
    if cap > 0:
        return float(cap) * 2**30, f"the run's memory cap per cell {_gib(cap * 2**30)}"
    total = env.get("mem_total_bytes")
    if total:
        return float(total), f"host memory {_gib(total)} (no cap set)"
    return None, "unknown: env.json records no memory size (a run before it was recorded)"


def _limits(g: pd.DataFrame) -> tuple[float | None, str]:
    """The smallest limit among the machines that measured ``g``'s records."""
    found = []
    for run_dir, host, device in set(zip(g["run_dir"], g["host"], g["device"], strict=True)):
        found.append(device_limit(RunDir(run_dir).host_env(host), str(device)))
    known = [f for f in found if f[0] is not None]
    if not known:
        return None, found[0][1] if found else "unknown"
    return min(known, key=lambda f: f[0])


def frontier_table(df: pd.DataFrame, *, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """One row per facet × architecture with peak memory recorded: the
    :class:`Frontier` fields and its ``text``."""
    rows = []
    keys = [k for k in FACET_KEYS if k in df.columns] + ["arch"]
    if "peak_mem_bytes" not in df.columns:
        return pd.DataFrame()
    for values, g in df.groupby(keys, sort=True, dropna=False):
        key = dict(zip(keys, values, strict=True))
        ok = g[(g["status"] == "ok") & (g["peak_mem_bytes"] > 0)]
        if ok.empty:  # no peak memory recorded (a workload that does not measure it)
            continue
        oom = g.loc[g["status"] == "oom", "seq_len"]
        limit, source = _limits(g)
        if limit is None:
            nan = math.nan
            fr = Frontier(limit_bytes=nan, limit_source=source,
                          n_lengths=ok["seq_len"].nunique(),
                          n_measured_max=int(ok["seq_len"].max()) if len(ok) else 0,
                          peak_at_max=nan, point=nan, low=nan, high=nan, exponent=nan,
                          r2=nan, extrapolated=False,
                          oom_at=int(oom.min()) if len(oom) else None,
                          note=f"no frontier: limit {source}")
        else:
            fr = memory_frontier(ok["seq_len"], ok["peak_mem_bytes"], limit,
                                 limit_source=source,
                                 oom_at=int(oom.min()) if len(oom) else None,
                                 confidence=confidence)
        rows.append({**key, **asdict(fr), "text": fr.text()})
    return pd.DataFrame(rows)


INTRO = (
    "The longest sequence length whose peak memory fits the device: peak memory against n "
    "fitted as a power law on log–log per architecture (at least {k} lengths), solved for "
    "the limit; in brackets the {conf:.0%} inverse-prediction interval of the fit (the "
    "lengths where the fit's confidence band holds the limit; open above, '∞', when the "
    "slope is not clear of zero). The limit is the GPU's memory on CUDA, and on a CPU the "
    "run's memory cap per cell when one was set, else the host's memory. Peak memory counts "
    "what the step allocated above what the cell held before it (not the weights nor the "
    "process itself), so the frontier is an upper bound; nearly always it is extrapolated "
    "far past the measured lengths, where a power law fitted on a few short lengths may "
    "not hold ([frontier.csv](frontier.csv))."
)


def frontier_markdown(table: pd.DataFrame) -> list[str]:
    """``index.md`` lines: per facet, one row per architecture."""
    from harness.report.tables import markdown_table

    if table.empty:
        return []
    conf = float(table["confidence"].iloc[0])
    lines = ["## Memory frontier", "", INTRO.format(k=MIN_FIT_SIZES, conf=conf), ""]
    facet_cols = [k for k in FACET_KEYS if k in table.columns]
    vary = varying(table, FACET_KEYS)
    for values, g in table.groupby(facet_cols, sort=True, dropna=False):
        key = dict(zip(facet_cols, values, strict=True))
        extra = describe(key, vary)
        lines += [f"**{key['workload']} — {key['device_label']}**"
                  + (f" ({extra})" if extra else ""), ""]
        rows = []
        for r in g.itertuples(index=False):
            measured = (f"{length_text(r.n_measured_max)} ({_gib(r.peak_at_max)})"
                        if r.n_measured_max and not math.isnan(r.peak_at_max) else "none")
            rows.append({
                "arch": r.arch,
                "limit": r.limit_source,
                "longest measured n (peak)": measured,
                "fitted exponent": "" if math.isnan(r.exponent) else
                f"{r.exponent:.2f} (R² {r.r2:.3f})",
                "frontier n [95% CI]": r.text,
                "out of memory at": "" if r.oom_at is None or pd.isna(r.oom_at)
                else length_text(r.oom_at),
            })
        lines += [markdown_table(pd.DataFrame(rows), left=["arch", "limit", "frontier n "
                                                          "[95% CI]"], code=["arch"]), ""]
    return lines
