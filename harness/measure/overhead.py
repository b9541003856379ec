"""The harness's own cost on one cell: its timed samples against a bare loop of the same call.

The :class:`~harness.measure.timing.Timer` times a cell's step wrapped in the every-call
check (``harness.run.checks.CallCheck``), with the collector paused and the check run
after each sample; a user times the step itself in a plain loop. :func:`bare_overhead`
takes the two in pairs, with the same clock (``time.perf_counter``; on CUDA the bare side
synchronises the device before reading it, the Timer uses its events), the order swapped
every pair so a drifting machine falls on both: one harness sample (``calls_per_sample``
calls through the Timer's own sampling step, the collector paused as the Timer pauses it)
and one bare sample (as many calls of the unwrapped step, the collector as it is). The
ratio is the median of the pairs' ratios; the bare time the median of the bare samples.
A whole ``Timer.measure`` per pair would not do: it collects garbage before sampling,
which leaves the caches cold for the one sample that follows (18x on a 0.3 ms call). The
worker stores the figures in a record's ``metrics`` (``harness.run.worker.bare_metrics``).
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from harness.measure.timing import Timer, TimingConfig


@dataclass(frozen=True)
class Overhead:
    """Seconds per call of the step through the harness's sampling and in a bare loop."""

    harness_s: float  # median of the harness samples
    bare_s: float  # median of the bare samples
    ratio: float  # median of the pairs' ratios harness / bare
    pairs: int

    def metrics(self) -> dict[str, float | int]:
        """The figures as a record's ``metrics`` keys ({} when a bare sample read zero)."""
        if not (math.isfinite(self.ratio) and self.bare_s > 0):
            return {}
        return {"bare_call_s": self.bare_s, "harness_over_bare": self.ratio,
                "bare_pairs": self.pairs}


def bare_sample(fn: Callable[[], object], k: int, device: torch.device) -> float:
    """Seconds per call of ``k`` back-to-back calls of ``fn`` in a plain loop."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(k):
        fn()
    if cuda:
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / k


def bare_overhead(
    timed: Callable[[], object],
    bare: Callable[[], object],
    device: torch.device,
    *,
    calls_per_sample: int,
    pairs: int,
    config: TimingConfig | None = None,
    check: Callable[[], None] | None = None,
    budget_s: float = math.inf,
    min_pairs: int = 1,
) -> Overhead:
    """Up to ``pairs`` paired samples of ``timed`` through the harness's Timer (with
    ``config`` and ``check``, as the cell's rounds use them) and of ``bare`` in a plain
    loop, ``calls_per_sample`` calls each; see the module docstring. No pair is started
    after ``budget_s`` once ``min_pairs`` are taken (a busy machine stretches the calls).
    Both callables must be warm."""
    if not 1 <= min_pairs <= pairs or calls_per_sample < 1:
        raise ValueError(f"need 1 <= min_pairs <= pairs and calls_per_sample >= 1, got "
                         f"{min_pairs}, {pairs}, {calls_per_sample}")
    timer = Timer(timed, device, config, check=check)

    def harness_sample() -> float:  # one of the Timer's samples, the collector paused
        enabled = gc.isenabled()
        gc.disable()
        try:
            return timer._time_calls(calls_per_sample) / calls_per_sample
        finally:
            if enabled:
                gc.enable()

    ours: list[float] = []
    theirs: list[float] = []
    t0 = time.perf_counter()
    for i in range(pairs):
        if i >= min_pairs and time.perf_counter() - t0 >= budget_s:
            break
        if i % 2 == 0:
            ours.append(harness_sample())
            theirs.append(bare_sample(bare, calls_per_sample, device))
        else:
            theirs.append(bare_sample(bare, calls_per_sample, device))
            ours.append(harness_sample())
    ratios = [a / b for a, b in zip(ours, theirs, strict=True) if b > 0]
    return Overhead(harness_s=statistics.median(ours), bare_s=statistics.median(theirs),
                    ratio=statistics.median(ratios) if ratios else float("nan"), pairs=len(ours))
