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

Which samples count as contended, and which a figure rests on, is the headline rule in
:mod:`harness.measure.headline`; this module only measures.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

PROC_STAT = "/proc/stat"
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
