"""Wall-clock timing of one callable: time-based warm-up, adaptive repeats, every sample kept.

Shaped like ``torch.utils.benchmark``: a :class:`Timer` produces an immutable
:class:`Measurement`. The procedure, and why:

1. **Warm-up until times settle**, not for a fixed count: first calls pay for lazy
   initialisation, allocator growth, cache and (for ``torch.compile``) compilation, and how
   long that lasts depends on the function. Calls are timed one by one; warm-up ends once
   ``warmup_min_s`` has passed and the median of the last ``warmup_window`` times is within
   ``warmup_tol`` of the median of the window before it, or at ``warmup_max_s`` whatever
   happens. At least one call is always made.
2. **Batching of tiny calls**: when the settled call time is below ``min_sample_s``, one
   sample times ``k = ceil(min_sample_s / t)`` back-to-back calls and stores ``total / k``,
   so timer resolution and per-sample overhead (CUDA event records, synchronisation) do not
   dominate. Every stored sample is therefore *seconds per call*.
3. **Adaptive repeats**: samples are taken until the 95% confidence interval of the median
   is narrower than ``target_rel_ci`` (checked once ``ci_stop_min_samples`` exist), or
   ``max_samples`` is reached, or the measurement phase has used ``budget_s``. The budget
   wins over ``ci_stop_min_samples`` but not over ``required_samples``: a slow function gives what
   fits, but at least ``required_samples`` samples (default 1, even if that one call is
   longer than the whole budget; the runner's rounds require enough for every cell to end
   with ``HEADLINE_MIN_SAMPLES``), and the Measurement says why it stopped. A sample is not
   started when the previous one says it would overrun the budget. On CPU, a sample that
   other processes or steal contended (``harness.measure.contention``) does not count
   towards ``required_samples``: another is taken, up to three times ``required_samples`` in
   all. Worst case wall time: about ``warmup_max_s + budget_s`` plus one call (on a busy
   CPU, up to ``2 * required_samples`` more calls).

The confidence interval is the distribution-free order-statistic interval of the median
(binomial ranks, as in Hollander & Wolfe): it assumes nothing about the shape of the time
distribution, which on a shared machine is skewed with a long right tail. It needs at least
six samples for 95% coverage; with fewer, ``rel_ci`` is ``None``.

CPU samples use :func:`time.perf_counter`. CUDA samples use a pair of CUDA events on the
current stream: synchronise, record start, run the calls, record end, synchronise, read
``elapsed_time``. Because the end event is queued after the host has launched every kernel,
host launch overhead that stalls the GPU is included, as a user would see it. The Python
garbage collector is disabled while samples are taken (as :mod:`timeit` does) after one
``gc.collect()``, so a collection pause is not charged to whichever sample it lands in.

No timeout here: the runner kills a worker that hangs.
"""

from __future__ import annotations

import bisect
import gc
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from harness.measure.contention import ContentionMeter
from harness.measure.headline import threshold

DEVICE_TYPES = ("cpu", "cuda")


@dataclass(frozen=True)
class TimingConfig:
    """How long to warm up and how many samples to take.

    Defaults suit a 2-core CPU bench that must finish dozens of cells in minutes: about
    0.5 s of warm-up at most and 2 s of measurement per cell; a cell of 10 ms gets up to
    ~200 samples, a cell of 1 s gets two. Raise ``budget_s`` for paper-quality runs.
    """

    warmup_min_s: float = 0.05  # always warm up at least this long (unless one call is longer)
    warmup_max_s: float = 0.5  # stop warming up here even if times have not settled
    warmup_window: int = 5  # settled = median of last `window` vs the window before ...
    warmup_tol: float = 0.05  # ... differ by less than this fraction
    ci_stop_min_samples: int = 7  # the CI test may stop the measurement only from here on
    required_samples: int = 1  # the budget may stop the measurement only from here on
    max_samples: int = 1000
    target_rel_ci: float = 0.05  # stop once the median's 95% CI half-width / median is below
    budget_s: float = 2.0  # seconds of measurement per cell (warm-up not included)
    noise_threshold: float = 0.1  # IQR / median above this flags the cell as noisy
    min_sample_s: float = 1e-3  # calls shorter than this are batched into one sample
    confidence: float = 0.95
    rewarm_s: float = 0.05  # a "brief" warm-up (a later round of a warm cell) lasts this long

    def __post_init__(self) -> None:
        checks = {
            "warmup_min_s": self.warmup_min_s >= 0,
            "warmup_max_s": self.warmup_max_s >= self.warmup_min_s,
            "warmup_window": self.warmup_window >= 1,
            "warmup_tol": self.warmup_tol > 0,
            "ci_stop_min_samples": self.ci_stop_min_samples >= 1,
            "max_samples": self.max_samples >= max(self.ci_stop_min_samples, self.required_samples),
            "required_samples": self.required_samples >= 1,
            "rewarm_s": self.rewarm_s >= 0,
            "target_rel_ci": self.target_rel_ci > 0,
            "budget_s": self.budget_s > 0,
            "noise_threshold": self.noise_threshold > 0,
            "min_sample_s": self.min_sample_s >= 0,
            "confidence": 0 < self.confidence < 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{n}={getattr(self, n)!r}" for n in bad)
            raise ValueError(
                f"invalid TimingConfig: {values} (need warmup_max_s >= warmup_min_s >= 0, "
                "max_samples >= ci_stop_min_samples >= 1, 0 < confidence < 1, other values > 0)"
            )


STOP_REASONS = ("ci", "budget", "max_samples")
WARMUPS = ("full", "brief", "none")


@dataclass(frozen=True)
class Measurement:
    """Every timed sample (seconds per call) and the statistics derived from them."""

    samples: tuple[float, ...]
    median: float
    iqr: float
    min: float
    mean: float
    n: int
    rel_ci: float | None  # half-width of the median's CI / median; None if n too small
    noisy: bool  # iqr / median > noise_threshold
    warmup_s: float = 0.0
    warmup_iters: int = 0
    calls_per_sample: int = 1
    stop_reason: str = "ci"  # one of STOP_REASONS
    measure_s: float = 0.0  # wall time of the measurement phase
    device: str = "cpu"
    noise_threshold: float = field(default=0.1, repr=False)
    contention: tuple[float, ...] = ()  # others' CPU use (cores) per sample; () if unmeasured

    @classmethod
    def from_samples(
        cls,
        samples: list[float] | tuple[float, ...],
        *,
        noise_threshold: float = 0.1,
        confidence: float = 0.95,
        **meta: object,
    ) -> Measurement:
        """Statistics of ``samples``; ``meta`` fills the bookkeeping fields."""
        if len(samples) == 0:
            raise ValueError("a Measurement needs at least one sample, got 0")
        arr = np.asarray(samples, dtype=float)
        median = float(np.median(arr))
        q1, q3 = np.percentile(arr, [25, 75])
        iqr = float(q3 - q1)
        return cls(
            samples=tuple(float(s) for s in samples),
            median=median,
            iqr=iqr,
            min=float(arr.min()),
            mean=float(arr.mean()),
            n=len(arr),
            rel_ci=median_rel_ci(sorted(arr.tolist()), confidence),
            noisy=bool(median > 0 and iqr / median > noise_threshold),
            noise_threshold=noise_threshold,
            **meta,  # type: ignore[arg-type]
        )

    def summary(self) -> str:
        ci = "n/a" if self.rel_ci is None else f"±{100 * self.rel_ci:.1f}%"
        text = (
            f"median {format_seconds(self.median)} (IQR {format_seconds(self.iqr)}, "
            f"min {format_seconds(self.min)}, "
            f"n={self.n}, CI {ci}, stop={self.stop_reason})"
        )
        if self.noisy:
            rel = self.iqr / self.median
            text += f" NOISY: IQR/median {rel:.2f} > {self.noise_threshold:.2f}"
        return text


def format_seconds(seconds: float) -> str:
    """A duration with three significant figures in s, ms, µs or ns (the harness's one
    time formatter: record messages, compare's table, the profile figure)."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


@lru_cache(maxsize=4096)
def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """0-based ranks (lo, hi) of the order statistics bounding the median's CI.

    ``[x_(r), x_(n+1-r)]`` (1-based) covers the median with probability
    ``1 - 2 P(B <= r-1)``, ``B ~ Binomial(n, 1/2)``; take the largest ``r`` with coverage
    at least ``confidence``. ``None`` when even ``[min, max]`` covers less (n <= 5 at 95%).
    """
    alpha_half = (1.0 - confidence) / 2.0
    total = 2**n
    cdf = 0
    r = 0  # number of ranks we may cut from each end
    for k in range(n):
        cdf += math.comb(n, k)
        if cdf / total > alpha_half:
            break
        r = k + 1
    if r == 0:
        return None
    return r - 1, n - r


def median_rel_ci(sorted_samples: list[float], confidence: float = 0.95) -> float | None:
    """Half-width of the median's distribution-free CI divided by the median."""
    ranks = median_ci_ranks(len(sorted_samples), confidence)
    if ranks is None:
        return None
    median = statistics.median(sorted_samples)
    if median <= 0:
        return None
    lo, hi = ranks
    return (sorted_samples[hi] - sorted_samples[lo]) / 2.0 / median


def parse_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in DEVICE_TYPES:
        raise ValueError(f"unknown device {device!r}; valid choices: cpu, cuda, cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use cpu")
    return dev


class Timer:
    """Time ``fn()`` on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``)."""

    def __init__(
        self,
        fn: Callable[[], object],
        device: str | torch.device = "cpu",
        config: TimingConfig | None = None,
        check: Callable[[], None] | None = None,
    ) -> None:
        """``check``: called after every batch of timed calls (warm-up included), outside
        the timed region; it raises to stop a measurement whose calls went wrong."""
        if not callable(fn):
            raise ValueError(f"fn must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.device = parse_device(device)
        self.config = config or TimingConfig()
        self.check = check

    # -- one sample ---------------------------------------------------------------------
    def _time_calls(self, k: int) -> float:
        """Seconds for ``k`` back-to-back calls (not divided), then ``check``."""
        seconds = self._timed(k)
        if self.check is not None:
            self.check()
        return seconds

    def _timed(self, k: int) -> float:
        fn = self.fn
        if self.device.type == "cuda":
            with torch.cuda.device(self.device):
                stream = torch.cuda.current_stream()
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                start.record(stream)
                for _ in range(k):
                    fn()
                end.record(stream)
                end.synchronize()
                torch.cuda.synchronize()  # work fn queued on other streams counts too
                return start.elapsed_time(end) / 1e3
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        return time.perf_counter() - t0

    # -- phases -------------------------------------------------------------------------
    def _warmup(self) -> tuple[list[float], float]:
        cfg = self.config
        w = cfg.warmup_window
        times: list[float] = []
        t0 = time.perf_counter()
        while True:
            times.append(self._time_calls(1))
            elapsed = time.perf_counter() - t0
            if elapsed >= cfg.warmup_max_s:
                break
            if elapsed >= cfg.warmup_min_s and len(times) >= 2 * w:
                last = statistics.median(times[-w:])
                prev = statistics.median(times[-2 * w : -w])
                if prev > 0 and abs(last - prev) / prev < cfg.warmup_tol:
                    break
        return times, time.perf_counter() - t0

    def _rewarm(self, k: int) -> tuple[list[float], float]:
        """A brief warm-up for a cell that was already warm (a later round): at least one
        sample's worth of calls, until ``rewarm_s`` has passed, to bring its data back into
        the caches another cell used meanwhile."""
        times: list[float] = []
        t0 = time.perf_counter()
        while True:
            times.append(self._time_calls(k) / k)
            if time.perf_counter() - t0 >= self.config.rewarm_s:
                break
        return times, time.perf_counter() - t0

    def _calls_per_sample(self, warm_times: list[float]) -> int:
        recent = statistics.median(warm_times[-self.config.warmup_window :])
        if recent <= 0:
            return max(1, int(self.config.min_sample_s / 1e-7))
        return max(1, math.ceil(self.config.min_sample_s / recent))

    def measure(
        self,
        *,
        warmup: str = "full",
        calls_per_sample: int | None = None,
        contention: bool = True,
    ) -> Measurement:
        """Warm up, then sample adaptively; see the module docstring for the rules.

        ``warmup="brief"`` (a later round of a cell whose process stayed warm) runs only
        :meth:`_rewarm`; ``"none"`` skips it (a sample longer than ``rewarm_s`` refills the
        caches within its first milliseconds); ``calls_per_sample`` keeps a previous
        round's batching, so samples of all rounds time the same number of calls.
        ``contention`` measures what else used the CPUs during each sample
        (``harness.measure.contention``).
        """

        if warmup not in WARMUPS:
            raise ValueError(f"unknown warmup {warmup!r}; valid choices: {', '.join(WARMUPS)}")
        cfg = self.config
        if warmup == "none" and calls_per_sample:
            warm_times, warmup_s = [], 0.0
        elif warmup == "brief" and calls_per_sample:
            warm_times, warmup_s = self._rewarm(calls_per_sample)
        else:
            warm_times, warmup_s = self._warmup()
        k = calls_per_sample or self._calls_per_sample(warm_times)
        meter = ContentionMeter() if contention else None
        # on CPU a contended sample does not count towards required_samples: another is
        # taken in its place, up to 3x required_samples in all (headline_samples then rests
        # on the quiet ones). A sample is judged when its window (>= 0.2 s) closes, so with
        # samples shorter than that the timer samples on until the open window closes
        # before it decides that it has enough quiet ones.
        limit = threshold(torch.get_num_threads()) if self.device.type == "cpu" else None
        samples: list[float] = []
        ordered: list[float] = []
        gc.collect()
        gc_was_enabled = gc.isenabled()
        gc.disable()
        t0 = time.perf_counter()
        try:
            stop = "max_samples"
            last_wall = 0.0
            while len(samples) < cfg.max_samples:
                elapsed = time.perf_counter() - t0
                over = elapsed >= cfg.budget_s or elapsed + last_wall > cfg.budget_s
                judging = meter is not None and limit is not None
                spoilt = meter.contended_so_far(limit) if judging else 0
                unjudged = meter.pending if judging else 0
                enough = (len(samples) - spoilt - unjudged >= cfg.required_samples
                          or len(samples) >= 3 * cfg.required_samples)
                if over and len(samples) >= cfg.required_samples and enough:
                    stop = "budget"
                    break
                if meter:
                    meter.begin()
                s0 = time.perf_counter()
                per_call = self._time_calls(k) / k
                last_wall = time.perf_counter() - s0
                if meter:
                    meter.end()
                samples.append(per_call)
                bisect.insort(ordered, per_call)
                if len(samples) >= cfg.ci_stop_min_samples:
                    rel = median_rel_ci(ordered, cfg.confidence)
                    if rel is not None and rel < cfg.target_rel_ci:
                        stop = "ci"
                        break
            measure_s = time.perf_counter() - t0
            others = meter.values() if meter else []
        finally:
            if gc_was_enabled:
                gc.enable()
        return Measurement.from_samples(
            samples,
            noise_threshold=cfg.noise_threshold,
            confidence=cfg.confidence,
            warmup_s=warmup_s,
            warmup_iters=len(warm_times),
            calls_per_sample=k,
            stop_reason=stop,
            measure_s=measure_s,
            device=str(self.device),
            contention=tuple(others) if len(others) == len(samples) else (),
        )
