"""The headline rule: which of a cell's samples its median and interval rest on, and the
fewest samples a figure may rest on at all.

A sample is *contended* when other processes used more than the cores the cell leaves free
plus :data:`CONTENDED_CORES` (on a 2-core machine running a 2-thread cell: more than 0.2
of a core; measured by :mod:`harness.measure.contention`). A cell is contended when more
than :data:`CONTENDED_SHARE` of its samples were. A figure rests on its uncontended
samples when at least :data:`HEADLINE_MIN_SAMPLES` were taken, else on all of them (and
is flagged).

Pure: imports nothing of the package, so the Timer, the round pooling, the store and the
reports all read the one rule.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

# Fewer samples than this and a cell is ``thin``: no interval is given, because a 95%
# bootstrap interval of a ratio of medians covers the truth less than 90% of the time with
# 4 or fewer samples on a side (simulated in tests/harness/report/test_intervals.py). Not
# to be confused with ``TimingConfig.ci_stop_min_samples``, the Timer's own floor before
# its interval test may end a measurement.
HEADLINE_MIN_SAMPLES = 5
CONTENDED_CORES = 0.2  # others' use beyond the free cores that marks a sample contended
CONTENDED_SHARE = 0.25  # a cell with more contended samples than this is contended


def threshold(threads: int, cpus: int | None = None) -> float:
    """Others' cores above which a sample is contended, for a cell using ``threads``."""
    cpus = cpus or os.cpu_count() or 1
    return max(0, cpus - max(1, threads)) + CONTENDED_CORES


def contended_samples(values: Sequence[float], threads: int, cpus: int | None = None) -> list[bool]:
    limit = threshold(threads, cpus)
    return [v > limit for v in values]


def cell_contended(values: Sequence[float], threads: int, cpus: int | None = None) -> bool:
    """More than :data:`CONTENDED_SHARE` of the samples were contended."""
    if not values:
        return False
    flags = contended_samples(values, threads, cpus)
    return sum(flags) / len(flags) > CONTENDED_SHARE


def headline_mask(samples: Sequence[float], values: Sequence[float], threads: int,
                  cpus: int | None = None) -> list[bool]:
    """Which samples a cell's median and interval rest on: its uncontended samples when at
    least ``HEADLINE_MIN_SAMPLES`` of them were taken, else all of them (the cell is then
    flagged when too many were contended). The Timer takes extra samples in place of
    contended ones (``Timer.measure``), so under a bursty load a cell usually has enough
    quiet ones.

    Measured on the 2-core VM: a neighbour's burst inflates a sample 1.5-4x, and the
    median of five samples of which two or three were inflated moved a speedup by 90%."""
    if not values or len(values) != len(samples):
        return [True] * len(samples)
    quiet = [not bad for bad in contended_samples(values, threads, cpus)]
    return quiet if sum(quiet) >= HEADLINE_MIN_SAMPLES else [True] * len(samples)


def headline_samples(samples: Sequence[float], values: Sequence[float], threads: int,
                     cpus: int | None = None) -> list[float]:
    """The samples :func:`headline_mask` keeps."""
    mask = headline_mask(samples, values, threads, cpus)
    return [s for s, keep in zip(samples, mask, strict=True) if keep]


def headline_of(row: Any) -> list[float]:
    """:func:`headline_samples` of a loaded record (see :func:`headline_rounds_of`)."""
    return headline_rounds_of(row)[0]


def headline_rounds_of(row: Any) -> tuple[list[float], list[int] | None]:
    """The headline samples of a loaded record and the round of each (None where the
    record does not say). ``row``: a DataFrame row (Series or itertuples tuple) with
    ``samples``, ``contention``, ``sample_rounds``, ``threads`` and the run's
    ``cpu_count``."""
    def get(key: str) -> Any:
        return row.get(key) if hasattr(row, "get") else getattr(row, key, None)

    def listed(v: Any) -> list[float]:  # a list, tuple or array; anything else (NaN) is none
        return [float(x) for x in v] if hasattr(v, "__len__") and not isinstance(v, str) else []

    threads, cpus = get("threads"), get("cpu_count")
    samples, rounds = listed(get("samples")), listed(get("sample_rounds"))
    mask = headline_mask(samples, listed(get("contention")),
                         int(threads) if threads and threads == threads else 1,
                         int(cpus) if cpus and cpus == cpus else None)
    kept = [s for s, keep in zip(samples, mask, strict=True) if keep]
    if len(rounds) != len(samples):
        return kept, None
    return kept, [int(r) for r, keep in zip(rounds, mask, strict=True) if keep]


def uncontended(samples: Sequence[float], values: Sequence[float], threads: int,
                cpus: int | None = None) -> list[float]:
    """The samples no one contended (all of them where contention was not measured)."""
    if not values or len(values) != len(samples):
        return list(samples)
    flags = contended_samples(values, threads, cpus)
    return [s for s, bad in zip(samples, flags, strict=True) if not bad]
