"""Peak memory of a block of code, above what was in use just before it.

``with MemoryTracker(device) as mt: ...`` then ``mt.peak_bytes`` (and, on CUDA,
``mt.reserved_bytes``).

CUDA: the caching allocator's own counters. On entry we ``gc.collect()``, empty the cache
(so "reserved" starts close to "allocated" and its growth means something), take the
baseline of allocated and reserved bytes and reset the peak statistics; on exit
``peak_bytes = max_memory_allocated - allocated_before`` and
``reserved_bytes = max_memory_reserved - reserved_before``.

CPU: the process's peak resident set size (RSS) above the RSS just before. Two methods:

* ``"hwm"`` (preferred, Linux >= 4.0): writing ``5`` to ``/proc/self/clear_refs`` resets
  the kernel's high-water mark ``VmHWM`` to the current RSS; ``VmHWM`` read at exit is the
  exact peak, however short the spike. Nothing runs alongside the measured code.
* ``"sampling"`` (fallback, any OS): a daemon thread reads RSS with psutil every
  ``interval_s`` (1 ms). It can miss a spike shorter than the interval.

``"auto"`` uses ``"hwm"`` when clear_refs is writable, else ``"sampling"``.

Caveat for callers: RSS counts what the C allocator holds, not what Python or torch uses.
After a first call, glibc may keep freed pages mapped and reuse them, so a tracker around
a *later* call can report much less than the call needs. On entry the tracker asks glibc
to return its free pages (``malloc_trim(0)``), which removes most of that effect; still,
measure around the first call in a fresh worker, as the runner does.
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
import threading
from pathlib import Path
from types import TracebackType

import psutil
import torch

from harness.measure.timing import parse_device

CPU_METHODS = ("auto", "hwm", "sampling")
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def trim_heap() -> None:
    """Return the C allocator's free pages to the OS (glibc ``malloc_trim``), so RSS
    counts memory in use; a no-op where glibc is not the allocator."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _status_kib(key: str) -> int | None:
    """A ``kB`` field of /proc/self/status, in bytes, or None when unavailable."""
    try:
        text = _STATUS.read_text()
    except OSError:
        return None
    m = re.search(rf"^{key}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(m.group(1)) * 1024 if m else None


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM); False when not possible here."""
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
    except OSError:
        return False
    hwm, rss = _status_kib("VmHWM"), _status_kib("VmRSS")
    # the reset worked iff the mark now sits at the current RSS (allowing a page or two)
    return hwm is not None and rss is not None and hwm - rss < 64 * 1024


class _RssSampler(threading.Thread):
    """Polls RSS and keeps the maximum; stop() joins it."""

    def __init__(self, interval_s: float) -> None:
        super().__init__(daemon=True, name="seqbench-rss-sampler")
        self.interval_s = interval_s
        self.peak = 0
        self._proc = psutil.Process(os.getpid())
        self._stop_event = threading.Event()

    def run(self) -> None:
        while True:
            self.peak = max(self.peak, self._proc.memory_info().rss)
            if self._stop_event.wait(self.interval_s):
                break
        self.peak = max(self.peak, self._proc.memory_info().rss)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


class MemoryTracker:
    """Context manager measuring the peak memory of its block above the level at entry."""

    def __init__(
        self,
        device: str | torch.device = "cpu",
        method: str = "auto",
        interval_s: float = 1e-3,
        empty_cache: bool = True,
    ) -> None:
        if method not in CPU_METHODS:
            raise ValueError(
                f"unknown memory method {method!r}; valid choices: {', '.join(CPU_METHODS)}"
            )
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.device = parse_device(device)
        self.requested_method = method
        self.interval_s = interval_s
        self.empty_cache = empty_cache
        self.method: str = ""  # the method actually used: "cuda", "hwm" or "sampling"
        self.baseline_bytes = 0
        self.peak_bytes: int | None = None  # peak above baseline
        self.reserved_bytes: int | None = None  # CUDA only
        self._reserved_before = 0
        self._sampler: _RssSampler | None = None

    # -- CUDA ---------------------------------------------------------------------------
    def _enter_cuda(self) -> None:
        self.method = "cuda"
        gc.collect()
        torch.cuda.synchronize(self.device)
        if self.empty_cache:
            torch.cuda.empty_cache()
        self.baseline_bytes = torch.cuda.memory_allocated(self.device)
        self._reserved_before = torch.cuda.memory_reserved(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)

    def _exit_cuda(self) -> None:
        torch.cuda.synchronize(self.device)
        peak = torch.cuda.max_memory_allocated(self.device)
        self.peak_bytes = max(0, peak - self.baseline_bytes)
        reserved = torch.cuda.max_memory_reserved(self.device)
        self.reserved_bytes = max(0, reserved - self._reserved_before)

    # -- CPU ----------------------------------------------------------------------------
    def _enter_cpu(self) -> None:
        gc.collect()
        trim_heap()
        use_hwm = self.requested_method in ("auto", "hwm") and reset_peak_rss()
        if self.requested_method == "hwm" and not use_hwm:
            raise ValueError(
                "memory method 'hwm' needs a writable /proc/self/clear_refs (Linux >= 4.0); "
                "valid choices here: auto, sampling"
            )
        self.method = "hwm" if use_hwm else "sampling"
        if use_hwm:
            self.baseline_bytes = _status_kib("VmRSS") or 0
        else:
            self.baseline_bytes = psutil.Process(os.getpid()).memory_info().rss
            self._sampler = _RssSampler(self.interval_s)
            self._sampler.start()

    def _exit_cpu(self) -> None:
        if self._sampler is not None:
            peak = self._sampler.stop()
            self._sampler = None
        else:
            peak = _status_kib("VmHWM") or 0
        self.peak_bytes = max(0, peak - self.baseline_bytes)

    # -- protocol -----------------------------------------------------------------------
    def __enter__(self) -> MemoryTracker:
        self.peak_bytes = self.reserved_bytes = None
        if self.device.type == "cuda":
            self._enter_cuda()
        else:
            self._enter_cpu()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.device.type == "cuda":
            self._exit_cuda()
        else:
            self._exit_cpu()
