"""Fitted scaling exponents: the slope of log(time) on log(n) over the measured range.

A fit is made per architecture within one whole facet (device, workload, preset, batch,
dtype, compile mode, overrides): mixing batch sizes or presets in one line would fit the
grid, not the architecture (a linear series with one batch-64 point added fits 0.45).
It needs at least :data:`MIN_FIT_LENGTHS` distinct lengths: two points always fit a line
exactly and say nothing about whether a power law holds. Each fit carries its quality:
R² and the exponent's 95% interval (Student t on n − 2 degrees of freedom).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from harness.store.load import FACET_KEYS

MIN_FIT_LENGTHS = 3


@dataclass(frozen=True)
class ScalingFit:
    """``value ≈ prefactor · n**exponent`` fitted by least squares in log–log space."""

    exponent: float
    stderr: float  # standard error of the slope
    ci_low: float  # 95% interval of the exponent
    ci_high: float
    r2: float  # coefficient of determination of the log–log fit
    prefactor: float
    n_points: int
    n_min: int
    n_max: int

    def text(self) -> str:
        """``1.02 [0.95, 1.09], R² 0.998`` — the exponent with its quality."""
        return (
            f"{self.exponent:.2f} [{self.ci_low:.2f}, {self.ci_high:.2f}], R² {self.r2:.3f}"
        )


def too_few_lengths(n_lengths: int) -> str:
    return f"too few lengths ({n_lengths}; a fit needs {MIN_FIT_LENGTHS})"


def fit_exponent(
    n: np.ndarray | list[float], value: np.ndarray | list[float], *, confidence: float = 0.95
) -> ScalingFit:
    """Fit a power law over at least three distinct positive lengths with positive values."""
    n = np.asarray(n, dtype=float)
    value = np.asarray(value, dtype=float)
    keep = np.isfinite(n) & np.isfinite(value) & (n > 0) & (value > 0)
    n, value = n[keep], value[keep]
    if len(np.unique(n)) < MIN_FIT_LENGTHS:
        raise ValueError(
            f"a scaling fit needs at least {MIN_FIT_LENGTHS} distinct sequence lengths, "
            f"got {sorted(set(n.tolist()))}"
        )
    res = stats.linregress(np.log(n), np.log(value))
    stderr = float(res.stderr)
    t = float(stats.t.ppf(0.5 + confidence / 2, len(n) - 2))
    return ScalingFit(
        exponent=float(res.slope),
        stderr=stderr,
        ci_low=float(res.slope - t * stderr),
        ci_high=float(res.slope + t * stderr),
        r2=float(res.rvalue**2),
        prefactor=float(np.exp(res.intercept)),
        n_points=int(len(n)),
        n_min=int(n.min()),
        n_max=int(n.max()),
    )


def scaling_table(
    df: pd.DataFrame,
    value: str = "time_median_s",
    by: tuple[str, ...] = FACET_KEYS,
) -> pd.DataFrame:
    """One row per (facet …, arch) with ``ok`` cells: the fit, or ``note`` saying why not.

    ``by`` defaults to the whole facet; columns missing from ``df`` are left out.
    """
    ok = df[(df["status"] == "ok") & df[value].notna() & (df[value] > 0)]
    rows = []
    keys = [k for k in by if k in ok.columns] + ["arch"]
    for key, g in ok.groupby(keys, sort=True, dropna=False):
        row = dict(zip(keys, key, strict=True))
        lengths = g["seq_len"].nunique()
        if lengths < MIN_FIT_LENGTHS:
            rows.append({**row, "n_points": lengths, "note": too_few_lengths(lengths)})
            continue
        fit = fit_exponent(g["seq_len"], g[value])
        rows.append({**row, **asdict(fit), "note": ""})
    return pd.DataFrame(rows)
