"""Honest intervals: coverage of the speedup interval in simulation, none below the minimum.

Timings are drawn from three shapes seen on shared machines: lognormal spread, an
exponential right tail, and a mixture where 15% of samples stall 1.2–3× (a busy
neighbour). Both sides share the shape with a known ratio of population medians (2), so
coverage is how often the interval contains 2.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.measure.headline import HEADLINE_MIN_SAMPLES
from harness.report.bootstrap import MIN_CI_SAMPLES, ratio_ci

TRUE_RATIO = 2.0


def draw(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """Samples whose population median is exactly 1 (so scaling by 2 fixes the ratio)."""
    if kind == "lognormal":
        return rng.lognormal(0.0, 0.2, size)
    if kind == "exp-tail":
        x = 1 + rng.exponential(0.2, size)
        return x / (1 + 0.2 * np.log(2))  # median of 1 + Exp(scale) is 1 + scale·ln 2
    if kind == "stalls":
        # 15% of samples stalled 1.2–3×: the population median is found numerically
        x = rng.lognormal(0.0, 0.03, size)
        stalled = rng.random(size) < 0.15
        return np.where(stalled, x * rng.uniform(1.2, 3.0, size), x) / STALL_MEDIAN
    raise ValueError(kind)


def _stall_median() -> float:
    rng = np.random.default_rng(12345)
    n = 4_000_000
    x = rng.lognormal(0.0, 0.03, n)
    stalled = rng.random(n) < 0.15
    return float(np.median(np.where(stalled, x * rng.uniform(1.2, 3.0, n), x)))


STALL_MEDIAN = _stall_median()


def coverage(kind: str, n_num: int, n_den: int, trials: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for t in range(trials):
        num = TRUE_RATIO * draw(kind, rng, n_num)  # e.g. the baseline: twice as slow
        den = draw(kind, rng, n_den)
        ci = ratio_ci(num, den, n_resamples=1000, seed=t)
        hits += bool(ci.low <= TRUE_RATIO <= ci.high)
    return hits / trials


def test_the_minimum_is_the_timers_minimum():
    assert MIN_CI_SAMPLES == HEADLINE_MIN_SAMPLES == 5


@pytest.mark.parametrize("kind", ["lognormal", "exp-tail", "stalls"])
@pytest.mark.parametrize("n_other", [MIN_CI_SAMPLES, 40])
def test_interval_covers_at_least_90_percent_from_the_minimum(kind, n_other):
    # 300 trials: the standard error of a coverage near 0.95 is 0.013, so a true
    # coverage below 0.90 would fail this with overwhelming probability
    cov = coverage(kind, MIN_CI_SAMPLES, n_other, trials=300, seed=7)
    assert cov >= 0.90, f"{kind}: coverage {cov:.3f} with {MIN_CI_SAMPLES} vs {n_other}"


def test_below_the_minimum_coverage_would_be_false():
    # why the minimum exists: the same bootstrap forced on 2 samples per side
    rng = np.random.default_rng(1)
    hits = 0
    trials = 300
    for t in range(trials):
        num, den = TRUE_RATIO * draw("lognormal", rng, 2), draw("lognormal", rng, 2)
        ci = ratio_ci(num, den, n_resamples=1000, seed=t, min_samples=2)
        hits += bool(ci.low <= TRUE_RATIO <= ci.high)
    assert hits / trials < 0.80


@pytest.mark.parametrize("n_num,n_den", [(4, 40), (40, 4), (1, 1), (2, 9)])
def test_no_interval_below_the_minimum(n_num, n_den):
    rng = np.random.default_rng(0)
    num, den = 2 * rng.lognormal(0, 0.1, n_num), rng.lognormal(0, 0.1, n_den)
    ci = ratio_ci(num, den)
    assert ci.too_few
    assert np.isnan(ci.low) and np.isnan(ci.high)
    assert ci.ratio == pytest.approx(np.median(num) / np.median(den))  # the point stays


def test_interval_at_the_minimum_is_given():
    rng = np.random.default_rng(0)
    ci = ratio_ci(2 * rng.lognormal(0, 0.1, 5), rng.lognormal(0, 0.1, 5))
    assert not ci.too_few and ci.low < ci.ratio < ci.high
