"""Memory frontier: the longest sequence length that fits in a device's memory, from a
curve fitted to peak memory against n.

Per architecture within one facet, over at least :data:`MIN_FIT_SIZES` measured lengths:
``peak ≈ c + a·n^k`` with ``k`` 1 (memory per token: activations, states) or 2 (a score
matrix), whichever fits with less residual, ``c`` the step's fixed share (workspace,
buffers). A power law ``c·n^k`` through the points, the obvious first choice, reads that
fixed share as growth too slow to matter: on the bench's CPU cells (tens of MiB, mostly
fixed, at n ≤ 4096) it put the frontier of an O(n) model at n ≈ 1e25. The fit is solved
for the ``n`` where it reaches the limit; the interval is the inverse prediction
(calibration) interval of the linear fit in ``n^k``: every ``n`` at which the limit lies
inside the fitted line's 95% confidence band (Student t on the residuals; Fieller's
solution), so it widens with the residual scatter, the distance from the measured lengths
and a slope that is poorly determined; where the slope is not clear of zero the band never
leaves the limit and the interval is open above. With three lengths the residual has one
degree of freedom (t = 12.7): the interval is honest and wide.

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
from harness.report.lm_claims import MIN_FIT_SIZES
from harness.report.output import by_facet
from harness.store.load import FACET_KEYS
from harness.store.rundir import RunDir

CONFIDENCE = 0.95
POWERS = (1, 2)  # peak ≈ c + a·n^k: memory per token, or a score matrix


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
    power: float  # k of the fitted c + a·n^k (NaN: no fit)
    r2: float
    extrapolated: bool
    oom_at: int | None = None  # the shortest length that ran out of memory
    note: str = ""
    confidence: float = CONFIDENCE

    def model(self) -> str:
        """The fitted curve, ``c + a·n`` or ``c + a·n²``; empty without a fit."""
        return "" if math.isnan(self.power) else "c + a·n" + ("" if self.power == 1 else "²")

    def text(self) -> str:
        """``≈ 3.1M [2.5M, 3.9M] (extrapolated from n ≤ 2.05k)``, or why there is none."""
        if self.note:
            return self.note
        hi = "∞)" if math.isinf(self.high) else f"{length_text(self.high)}]"
        low = length_text(max(self.low, 0.0))
        how = (f"extrapolated from n ≤ {length_text(self.n_measured_max)}" if self.extrapolated
               else f"within the measured n ≤ {length_text(self.n_measured_max)}")
        return f"≈ {length_text(self.point)} [{low}, {hi} ({how})"


@dataclass(frozen=True)
class LineFit:
    """Weighted least squares ``y ≈ c + a·x``: the coefficients, their covariance
    (residual variance times ``(XᵀWX)⁻¹``), the weighted R², the residual's degrees of
    freedom and weighted sum of squares."""

    c: float
    a: float
    cov: np.ndarray
    r2: float
    dof: int
    rss: float

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> LineFit:
        design = np.column_stack([np.ones_like(x), x])
        xtwx = design.T @ (w[:, None] * design)
        c, a = np.linalg.solve(xtwx, design.T @ (w * y))
        resid = y - (c + a * x)
        rss = float(np.sum(w * resid**2))
        dof = len(x) - 2
        mean = float(np.sum(w * y) / np.sum(w))
        tss = float(np.sum(w * (y - mean) ** 2))
        return cls(float(c), float(a), rss / max(dof, 1) * np.linalg.inv(xtwx),
                   1 - rss / tss if tss > 0 else 1.0, dof, rss)

    def inverse(self, y0: float, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
        """Where the line reaches ``y0``, and the set of x whose confidence band for the
        line holds ``y0`` (Fieller): ``(y0 − c − a·x)² ≤ t²·var(c + a·x)``. Returns
        ``(x0, low, high)``, ``high = +∞`` (and ``low`` the band's edge, or −∞) where the
        band is unbounded; x0 is NaN when the slope is not positive."""
        t2 = float(stats.t.ppf(0.5 + confidence / 2, max(self.dof, 1))) ** 2
        d = y0 - self.c
        x0 = d / self.a if self.a > 0 else math.nan
        qa = self.a**2 - t2 * self.cov[1, 1]  # the band holds y0 where qa·x² − 2·qb·x + qc ≤ 0
        qb = self.a * d + t2 * self.cov[0, 1]
        qc = d * d - t2 * self.cov[0, 0]
        disc = qb * qb - qa * qc
        if qa > 0:  # a bounded interval around x0
            r = math.sqrt(max(disc, 0.0))
            return x0, (qb - r) / qa, (qb + r) / qa
        if disc <= 0 or qa == 0:  # the band holds y0 at every x
            return x0, -math.inf, math.inf
        r = math.sqrt(disc)  # qa < 0: outside the roots; the ray towards larger x
        return x0, max((qb - r) / qa, (qb + r) / qa), math.inf


def _fit(n: np.ndarray, peak: np.ndarray) -> tuple[int, LineFit | None]:
    """The ``k`` of :data:`POWERS` and its fit ``peak ≈ c + a·n^k`` with the least
    residual among those whose ``a`` is positive (``(0, None)`` when none grows).
    Weighted by 1/peak²: a reading's error is a share of it (the residuals are relative),
    so the longest lengths do not outvote the rest. Fitted in units of the largest n^k
    and peak, where the normal equations are well conditioned."""
    best: tuple[int, LineFit] | None = None
    for k in POWERS:
        fit = LineFit.of((n / n.max()) ** k, peak / peak.max(), (peak.max() / peak) ** 2)
        if fit.a > 0 and (best is None or fit.rss < best[1].rss):
            best = (k, fit)
    return best or (0, None)


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
        return Frontier(**base, point=nan, low=nan, high=nan, power=nan, r2=nan,
                        extrapolated=False,
                        note=f"too few lengths ({n_lengths}; a fit needs {MIN_FIT_SIZES})")
    k, fit = _fit(n, peak)
    if fit is None:
        return Frontier(**base, point=nan, low=nan, high=nan, power=nan, r2=nan,
                        extrapolated=False, note="no frontier: peak memory does not grow with n")
    x0, lo, hi = fit.inverse(float(limit_bytes) / peak.max(), confidence)

    def length(x: float) -> float:  # n from the fit's x = (n / n_max)^k
        return n.max() * x ** (1 / k) if x > 0 else 0.0

    point = length(x0)
    return Frontier(**base, point=point, low=length(lo), high=length(hi), power=k, r2=fit.r2,
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
                          peak_at_max=nan, point=nan, low=nan, high=nan, power=nan,
                          r2=nan, extrapolated=False,
                          oom_at=int(oom.min()) if len(oom) else None,
                          note=f"no frontier: limit {source}")
        else:
            fr = memory_frontier(ok["seq_len"], ok["peak_mem_bytes"], limit,
                                 limit_source=source,
                                 oom_at=int(oom.min()) if len(oom) else None,
                                 confidence=confidence)
        rows.append({**key, **asdict(fr), "model": fr.model(), "text": fr.text()})
    return pd.DataFrame(rows)


INTRO = (
    "The longest sequence length whose peak memory fits the device: peak memory against n "
    "fitted per architecture (at least {k} lengths) as c + a·n or c + a·n², whichever fits "
    "better (a fixed share plus memory per token, or per pair of tokens), solved for "
    "the limit; in brackets the {conf:.0%} inverse-prediction interval of the fit (the "
    "lengths where the fit's confidence band holds the limit; open above, '∞', when the "
    "slope is not clear of zero). The limit is the GPU's memory on CUDA, and on a CPU the "
    "run's memory cap per cell when one was set, else the host's memory. Peak memory counts "
    "what the step allocated above what the cell held before it (not the weights nor the "
    "process itself), so the frontier is an upper bound; nearly always it is extrapolated "
    "far past the measured lengths, where a curve fitted on a few short lengths may "
    "not hold ([frontier.csv](frontier.csv))."
)


def frontier_markdown(table: pd.DataFrame) -> list[str]:
    """``index.md`` lines: per facet, one row per architecture."""
    from harness.report.tables import markdown_table

    if table.empty:
        return []
    conf = float(table["confidence"].iloc[0])
    lines = ["## Memory frontier", "", INTRO.format(k=MIN_FIT_SIZES, conf=conf), ""]
    for heading, g in by_facet(table):
        lines += [heading, ""]
        rows = []
        for r in g.itertuples(index=False):
            measured = (f"{length_text(r.n_measured_max)} ({_gib(r.peak_at_max)})"
                        if r.n_measured_max and not math.isnan(r.peak_at_max) else "none")
            rows.append({
                "arch": r.arch,
                "limit": r.limit_source,
                "longest measured n (peak)": measured,
                "fitted": f"{r.model} (R² {r.r2:.3f})" if r.model else "",
                "frontier n [95% CI]": r.text,
                "out of memory at": "" if r.oom_at is None or pd.isna(r.oom_at)
                else length_text(r.oom_at),
            })
        lines += [markdown_table(pd.DataFrame(rows), left=["arch", "limit", "frontier n "
                                                          "[95% CI]"], code=["arch"]), ""]
    return lines
