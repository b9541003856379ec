"""Bootstrap confidence intervals for ratios of medians (speedups) from stored samples.

**Rounds, then samples** (Kalibera and Jones, *Rigorous benchmarking in reasonable time*,
ISMM 2013): a cell's samples come in rounds, interleaved with the other cells' and hours
of machine state apart in a long sweep, and the machine's speed moves between rounds more
than within one. Each resample draws a cell's rounds with replacement, then samples with
replacement within each drawn round, so the interval carries the round-to-round spread
and not only the sample-to-sample one. A cell measured in one round (or whose record does
not say the rounds) is resampled over its samples alone. On six quiet runs of the bench's
train cells (2-core VM; see the README), resampling samples alone held the other runs'
median in 75-83% of cases.

An interval is only given when both sides have at least :data:`MIN_CI_SAMPLES` samples.
The percentile bootstrap of a median undercovers badly on tiny samples: in simulation
(``tests/harness/report/test_intervals.py``; lognormal, exponential-tailed and
stall-mixture timings) a nominal 95% interval of the ratio covers the true ratio about 70%
of the time with 2 samples per side, 85–91% with 3, 89–94% with 4 (4 against 40), and
94–97% from 5 on.
Below the minimum the point estimate is still given, marked "too few samples".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.measure.headline import HEADLINE_MIN_SAMPLES

# the fewest samples per side for which the 95% interval covers at least 90% in simulation
MIN_CI_SAMPLES = HEADLINE_MIN_SAMPLES
TOO_FEW = "too few samples"


@dataclass(frozen=True)
class RatioCI:
    """``median(num) / median(den)`` with a percentile-bootstrap interval.

    ``low``/``high`` are nan when undefined; ``too_few`` says the reason is a side with
    fewer than :data:`MIN_CI_SAMPLES` samples (the ratio itself is still given).
    """

    ratio: float
    low: float
    high: float
    too_few: bool = False


BATCH = 250  # resamples drawn at once (bounds memory: BATCH x rounds x largest round)


def resampled_medians(samples: np.ndarray, rounds: np.ndarray | None, n: int,
                      rng: np.random.Generator) -> np.ndarray:
    """``n`` bootstrap medians of one cell: its rounds drawn with replacement, then
    samples with replacement within each drawn round (all samples one round when
    ``rounds`` is None)."""
    labels = (np.zeros(len(samples), int) if rounds is None
              else np.unique(rounds, return_inverse=True)[1])
    sizes = np.bincount(labels)
    groups = np.full((len(sizes), sizes.max()), np.nan)
    for g, size in enumerate(sizes):
        groups[g, :size] = samples[labels == g]
    out = np.empty(n)
    for start in range(0, n, BATCH):
        b = min(BATCH, n - start)
        picked = rng.integers(len(sizes), size=(b, len(sizes)))  # rounds, with replacement
        size = sizes[picked][..., None]
        within = (rng.random((b, len(sizes), sizes.max())) * size).astype(int)
        values = groups[picked[..., None], within]
        values[np.arange(sizes.max()) >= size] = np.nan  # a smaller round draws fewer
        out[start:start + b] = np.nanmedian(values.reshape(b, -1), axis=1)
    return out


def ratio_ci(
    num: list[float] | np.ndarray,
    den: list[float] | np.ndarray,
    *,
    num_rounds: list[int] | np.ndarray | None = None,
    den_rounds: list[int] | np.ndarray | None = None,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    min_samples: int = MIN_CI_SAMPLES,
) -> RatioCI:
    """Percentile-bootstrap CI of median(num)/median(den), each side resampled on its own,
    by rounds then samples where ``*_rounds`` give each sample's round.

    Speedup of arch over baseline is ``ratio_ci(baseline_samples, arch_samples)``. The
    percentile method is used because BCa breaks down on the near-constant samples that
    fast, quiet cells produce. With fewer than ``min_samples`` on either side there is no
    interval (``too_few``): its coverage would be far below its nominal level.
    """
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    if len(num) == 0 or len(den) == 0:
        return RatioCI(float("nan"), float("nan"), float("nan"), too_few=True)
    point = float(np.median(num) / np.median(den))
    if min(len(num), len(den)) < max(2, min_samples):
        return RatioCI(point, float("nan"), float("nan"), too_few=True)
    rng = np.random.default_rng(seed)
    ratios = (resampled_medians(num, _labels(num_rounds, num), n_resamples, rng)
              / resampled_medians(den, _labels(den_rounds, den), n_resamples, rng))
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return RatioCI(point, float(low), float(high))


def _labels(rounds: list[int] | np.ndarray | None, samples: np.ndarray) -> np.ndarray | None:
    if rounds is None or len(rounds) != len(samples):
        return None
    return np.asarray(rounds)
