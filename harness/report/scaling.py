"""Fitted scaling exponents: the slope of log(time) on log(n) over the measured range."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats


@dataclass(frozen=True)
class ScalingFit:
    """``value ≈ prefactor · n**exponent`` fitted by least squares in log–log space."""

    exponent: float
    stderr: float  # standard error of the slope (nan with two points)
    prefactor: float
    n_points: int
    n_min: int
    n_max: int


def fit_exponent(n: np.ndarray | list[float], value: np.ndarray | list[float]) -> ScalingFit:
    """Fit a power law; needs at least two distinct positive lengths with positive values."""
    n = np.asarray(n, dtype=float)
    value = np.asarray(value, dtype=float)
    keep = np.isfinite(n) & np.isfinite(value) & (n > 0) & (value > 0)
    n, value = n[keep], value[keep]
    if len(np.unique(n)) < 2:
        raise ValueError(
            f"a scaling fit needs at least two distinct sequence lengths, got {sorted(set(n))}"
        )
    res = stats.linregress(np.log(n), np.log(value))
    stderr = float(res.stderr) if len(n) > 2 else float("nan")
    return ScalingFit(
        exponent=float(res.slope),
        stderr=stderr,
        prefactor=float(np.exp(res.intercept)),
        n_points=int(len(n)),
        n_min=int(n.min()),
        n_max=int(n.max()),
    )


def scaling_table(
    df: pd.DataFrame,
    value: str = "time_median_s",
    by: tuple[str, ...] = ("device_label", "workload"),
) -> pd.DataFrame:
    """One fitted exponent per (``by`` …, arch) over the ``ok`` cells with a positive ``value``."""
    ok = df[(df["status"] == "ok") & df[value].notna()]
    rows = []
    keys = [k for k in by if k in ok.columns] + ["arch"]
    for key, g in ok.groupby(keys, sort=True):
        if g["seq_len"].nunique() < 2:
            continue
        fit = fit_exponent(g["seq_len"], g[value])
        rows.append({**dict(zip(keys, key, strict=True)), **fit.__dict__})
    return pd.DataFrame(rows)
