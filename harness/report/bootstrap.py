"""Bootstrap confidence intervals for ratios of medians (speedups) from stored samples."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class RatioCI:
    """``median(num) / median(den)`` with a percentile-bootstrap interval (nan if undefined)."""

    ratio: float
    low: float
    high: float


def _ratio_of_medians(num: np.ndarray, den: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(num, axis=axis) / np.median(den, axis=axis)


def ratio_ci(
    num: list[float] | np.ndarray,
    den: list[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> RatioCI:
    """CI of median(num)/median(den), resampling both independently.

    Speedup of arch over baseline is ``ratio_ci(baseline_samples, arch_samples)``. The
    percentile method is used because BCa breaks down on the near-constant samples that
    fast, quiet cells produce. Fewer than two samples on either side gives a nan interval.
    """
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    if len(num) == 0 or len(den) == 0:
        return RatioCI(float("nan"), float("nan"), float("nan"))
    point = float(np.median(num) / np.median(den))
    if len(num) < 2 or len(den) < 2:
        return RatioCI(point, float("nan"), float("nan"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # degenerate (constant) samples
        res = stats.bootstrap(
            (num, den),
            _ratio_of_medians,
            vectorized=True,
            paired=False,
            confidence_level=confidence,
            n_resamples=n_resamples,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    return RatioCI(point, float(res.confidence_interval.low), float(res.confidence_interval.high))
