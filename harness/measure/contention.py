"""What else used the CPUs while a cell was sampling: other processes' CPU time and steal.

Linux's ``/proc/stat`` gives the machine's busy time summed over all CPUs (user, nice,
system, irq, softirq) and the hypervisor's *steal* time (a VM's virtual CPU was ready but
the host ran something else). This process's own CPU time over the same interval
(``time.process_time``: every thread, so torch's intra-op threads too) is subtracted
from the busy time; what is left was used by other processes. Divided by the wall time:
the **cores** others used, plus the cores stolen — the sample's ``contention``.

Resolution: the kernel advances these counters in ticks (``USER_HZ``, 10 ms on most
systems) per CPU, so an interval of a few milliseconds reads either nothing or whole ticks.
Samples are therefore grouped into windows of at least ``window_s`` (0.2 s: about ±0.1
core of quantisation on two CPUs); every sample of a window gets the window's value, and a
sample longer than the window is a window of its own. Off Linux (no ``/proc/stat``) the
meter records nothing.

A sample is *contended* when others used more than the cores the cell leaves free plus
:data:`CONTENDED_CORES` (on a 2-core machine running a 2-thread cell: more than 0.2 of
a core). A cell is contended when more than :data:`CONTENDED_SHARE` of its samples were.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

PROC_STAT = "/proc/stat"
CONTENDED_CORES = 0.2  # others' use beyond the free cores that marks a sample contended
CONTENDED_SHARE = 0.25  # a cell with more contended samples than this is contended
WINDOW_S = 0.2


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative seconds: wall clock, machine busy time, steal time, this process's CPU."""

    wall: float
    busy: float
    steal: float
    own: float


def _ticks_per_s() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100.0


TICK_S = 1.0 / _ticks_per_s()


def read_cpu_times(path: str = PROC_STAT) -> CpuTimes | None:
    """Now's cumulative times, or None where ``/proc/stat`` cannot be read."""
    try:
        with open(path, "rb") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != b"cpu":
        return None
    v = [int(x) for x in fields[1:]] + [0] * 8
    user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
    # guest time is already included in user (and guest_nice in nice)
    busy = (user + nice + system + irq + softirq) * TICK_S
    return CpuTimes(time.perf_counter(), busy, steal * TICK_S, time.process_time())


def others_cores(a: CpuTimes, b: CpuTimes) -> float:
    """Cores other processes used between ``a`` and ``b``, plus cores stolen (>= 0)."""
    wall = b.wall - a.wall
    if wall <= 0:
        return 0.0
    others = (b.busy - a.busy) - (b.own - a.own)
    return max(0.0, others / wall) + max(0.0, (b.steal - a.steal) / wall)


class ContentionMeter:
    """Per-sample contention, measured over windows of at least ``window_s``.

    Call :meth:`begin` right before a sample and :meth:`end` right after it (outside the
    timed region); ``/proc/stat`` is read only when a window opens and closes (tens of
    microseconds each), not per sample. :meth:`values` closes the last window and returns
    one value per sample (empty where nothing can be read).
    """

    def __init__(
        self,
        window_s: float = WINDOW_S,
        reader: Callable[[], CpuTimes | None] = read_cpu_times,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.window_s = window_s
        self._read = reader
        self._clock = clock
        self._start: CpuTimes | None = None
        self._opened = 0.0
        self._pending = 0  # samples in the open window
        self._values: list[float] = []
        self._dead = False

    def begin(self) -> None:
        if self._dead or self._start is not None:
            return
        self._start = self._read()
        self._opened = self._clock()
        if self._start is None:
            self._dead = True

    def end(self) -> None:
        if self._dead or self._start is None:
            return
        self._pending += 1
        if self._clock() - self._opened < self.window_s:
            return
        now = self._read()
        if now is None:
            self._dead = True
            return
        self._close(now)

    def _close(self, now: CpuTimes) -> None:
        assert self._start is not None
        value = others_cores(self._start, now)
        self._values += [value] * self._pending
        self._pending, self._start = 0, None

    @property
    def pending(self) -> int:
        """Samples of the open window: not judged until it closes."""
        return self._pending if self._start is not None else 0

    def contended_so_far(self, limit: float) -> int:
        """Samples of the closed windows whose contention passed ``limit`` (cores)."""
        return sum(v > limit for v in self._values)

    def values(self) -> list[float]:
        if self._dead:
            return []
        if self._pending and self._start is not None:
            now = self._read()
            if now is None:
                return []
            self._close(now)
        return list(self._values)


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


def headline_samples(samples: Sequence[float], values: Sequence[float], threads: int,
                     cpus: int | None = None) -> list[float]:
    """The samples a cell's median and interval rest on: its uncontended samples when at
    least ``MIN_SAMPLES`` of them were taken, else all of them (the cell is then flagged
    when too many were contended). The Timer takes extra samples in place of contended ones
    (``Timer.measure``), so under a bursty load a cell usually has enough quiet ones.

    Measured on the 2-core VM: a neighbour's burst inflates a sample 1.5-4x, and the
    median of five samples of which two or three were inflated moved a speedup by 90%."""
    from harness.measure.timing import MIN_SAMPLES

    quiet = uncontended(samples, values, threads, cpus)
    return quiet if len(quiet) >= MIN_SAMPLES else list(samples)


def headline_of(row: Any) -> list[float]:
    """:func:`headline_samples` of a loaded record: a DataFrame row (Series or itertuples
    tuple) with ``samples``, ``contention``, ``threads`` and the run's ``cpu_count``."""
    def get(key: str) -> Any:
        return row.get(key) if hasattr(row, "get") else getattr(row, key, None)

    def listed(v: Any) -> list[float]:  # a list, tuple or array; anything else (NaN) is none
        return [float(x) for x in v] if hasattr(v, "__len__") and not isinstance(v, str) else []

    threads, cpus = get("threads"), get("cpu_count")
    return headline_samples(listed(get("samples")), listed(get("contention")),
                            int(threads) if threads and threads == threads else 1,
                            int(cpus) if cpus and cpus == cpus else None)


def uncontended(samples: Sequence[float], values: Sequence[float], threads: int,
                cpus: int | None = None) -> list[float]:
    """The samples no one contended (all of them where contention was not measured)."""
    if not values or len(values) != len(samples):
        return list(samples)
    flags = contended_samples(values, threads, cpus)
    return [s for s, bad in zip(samples, flags, strict=True) if not bad]


def drop_contended(df: Any) -> Any:
    """A copy of a runs DataFrame (``harness.store.load``) whose timed ``ok`` cells keep only
    their uncontended samples, with medians, throughput and ``thin`` recomputed.

    For checking what dropping every contended sample would do, however few are left
    (``speedup_drift --drop-contended``); the harness's own rule, :func:`headline_samples`,
    keeps at least ``MIN_SAMPLES``.
    A cell without per-sample contention is left as it is.
    """
    import numpy as np

    from harness.measure.timing import MIN_SAMPLES

    out = df.copy()
    for i, r in out.iterrows():
        values, samples = r.get("contention"), r.get("samples")
        if r["status"] != "ok" or not isinstance(values, list) or not isinstance(samples, list):
            continue
        if not values or len(values) != len(samples):
            continue
        cpus = r.get("cpu_count")
        cpus = int(cpus) if isinstance(cpus, (int, float)) and cpus == cpus else None
        keep = [s for s, bad in zip(samples, contended_samples(values, int(r.get("threads") or 1),
                                                                cpus), strict=True) if not bad]
        if not keep or len(keep) == len(samples):
            continue
        old, new = float(r["time_median_s"]), float(np.median(keep))
        out.at[i, "samples"] = keep
        out.at[i, "n_samples"] = len(keep)
        out.at[i, "time_median_s"] = new
        out.at[i, "thin"] = len(keep) < MIN_SAMPLES
        for col in ("tokens_per_s", "flops_per_s"):
            if col in out and r.get(col) == r.get(col) and r.get(col) is not None:
                out.at[i, col] = float(r[col]) * old / new
        if "time_per_token_s" in out and r.get("time_per_token_s") == r.get("time_per_token_s") \
                and r.get("time_per_token_s") is not None:
            out.at[i, "time_per_token_s"] = float(r["time_per_token_s"]) * new / old
    return out
