"""Timer calibration (``python -m harness calibrate``, see :mod:`harness.cli.calibrate`).

Times a few stable operations with the harness :class:`~harness.measure.timing.Timer` and with
``torch.utils.benchmark.Timer.blocked_autorange`` (plus ``triton.testing.do_bench`` on
CUDA when triton imports), and prints the medians and the ratios harness / reference.
Ratios within [0.95, 1.05] mean the harness agrees with the reference timers on this
machine (against ``do_bench`` only the upper edge counts, see :func:`within`); ratios
outside are marked, as *busy* where others' load or the hypervisor's steal contended many
of the operation's rounds. It is a report: exit 0 whatever the ratios. The judgement of
one row (:attr:`CalibrationRow.judgement`) is the one ``selftest``'s timer stage uses, so
the two commands never read one measurement differently.

The timers take turns in short paired rounds on the same tensors (:func:`run_calibration`),
so drift of a shared machine falls on both; rerun with a larger ``--seconds`` before
trusting a single outlier. ``do_bench`` flushes the L2 cache between
calls, so it reads slower than both others on small, cache-resident CUDA operations.
"""

from __future__ import annotations

import gc
import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import Enum

import torch

from harness.measure.contention import others_cores, read_cpu_times
from harness.measure.headline import threshold
from harness.measure.timing import Measurement, Timer, TimingConfig, parse_device

AGREEMENT = (0.95, 1.05)
ROUNDS = 40  # paired rounds per operation (see run_calibration)
BUSY_SHARE = 0.1  # more contended rounds than this: the machine was busy, not the timer wrong


class Judgement(Enum):
    """What one calibration row says about the harness timer."""

    AGREES = "agrees"
    BUSY = "busy"  # outside the band while others' load contended its rounds: says nothing
    OUTSIDE = "outside"  # outside the band on a quiet machine: the timer is off


def within(ratio: float | None, *, flushed: bool = False) -> bool:
    """A ratio harness / reference inside :data:`AGREEMENT` (None: no such reference).

    ``flushed``: the reference empties the L2 cache before every call (``do_bench``), so
    it reads slower than both other timers on cache-resident operations: the harness may
    be faster than it by any amount, never slower than the band allows."""
    lo, hi = AGREEMENT
    return ratio is None or (ratio <= hi and (flushed or lo <= ratio))


@dataclass(frozen=True)
class CalibrationRow:
    """One operation timed three ways; times in seconds, ratios harness / reference."""

    op: str
    device: str
    harness_s: float
    harness_n: int
    harness_rel_ci: float | None
    harness_noisy: bool
    torch_s: float
    ratio_torch: float
    triton_s: float | None = None
    ratio_triton: float | None = None
    rounds: int = 1  # paired rounds taken
    rounds_contended: int = 0  # of them, taken while others used the timers' cores

    @property
    def agrees(self) -> bool:
        """Within the band against torch.utils.benchmark, and not slower than do_bench."""
        return within(self.ratio_torch) and within(self.ratio_triton, flushed=True)

    @property
    def busy(self) -> bool:
        """Others' load or steal contended more than :data:`BUSY_SHARE` of its rounds: a
        ratio outside the band then says the machine was busy, not that a timer is off."""
        return self.rounds_contended > BUSY_SHARE * self.rounds

    @property
    def judgement(self) -> Judgement:
        """The one rule for calibrate and selftest: agrees, else busy or outside."""
        if self.agrees:
            return Judgement.AGREES
        return Judgement.BUSY if self.busy else Judgement.OUTSIDE


def operations(device: torch.device) -> dict[str, Callable[[], object]]:
    """Stable, deterministic operations: matmuls, a convolution, an FFT, an elementwise op."""
    gen = torch.Generator().manual_seed(0)
    big = device.type == "cuda"

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device)

    ops: dict[str, Callable[[], object]] = {}
    for n in (1024, 4096) if big else (512, 1024):
        a, b = rand(n, n), rand(n, n)
        ops[f"matmul {n}x{n}"] = lambda a=a, b=b: a @ b
    x, w = rand(8, 64, 4096 if big else 1024), rand(64, 64, 7)
    ops[f"conv1d {tuple(x.shape)} k7"] = lambda: torch.nn.functional.conv1d(x, w, padding=3)
    s = rand(64 if big else 16, 2**16 if big else 2**14)
    ops[f"rfft {tuple(s.shape)}"] = lambda: torch.fft.rfft(s, dim=-1)
    e1, e2 = rand(2**24 if big else 2**20), rand(2**24 if big else 2**20)
    ops[f"add {e1.numel():,}"] = lambda: torch.add(e1, e2)
    return ops


def _harness_times(fn: Callable[[], object], dev: torch.device, seconds: float) -> list[float]:
    return list(Timer(fn, dev, harness_config(seconds)).measure().samples)


def _torch_times(fn: Callable[[], object], seconds: float) -> list[float]:
    """Per-call times of torch's blocked_autorange, at the thread count the harness uses
    (torch's Timer defaults to one thread, which would compare different work)."""
    from torch.utils.benchmark import Timer as TorchTimer

    timer = TorchTimer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return list(timer.blocked_autorange(min_run_time=seconds).times)


def _triton_median(fn: Callable[[], object], seconds: float) -> float | None:
    try:
        from triton.testing import do_bench
    except Exception:  # noqa: BLE001 - triton is optional
        return None
    rep_ms = max(1, int(seconds * 1e3))
    try:
        return float(do_bench(fn, warmup=max(1, rep_ms // 4), rep=rep_ms, return_mode="median"))
    except TypeError:  # older triton: no return_mode; quantiles=[0.5] gives the median
        return float(do_bench(fn, warmup=max(1, rep_ms // 4), rep=rep_ms, quantiles=[0.5]))


def harness_config(seconds: float) -> TimingConfig:
    """The harness settings matched to a reference run of ``seconds``."""
    return TimingConfig(
        warmup_min_s=min(0.05, seconds),
        warmup_max_s=min(0.5, max(seconds, 0.05)),
        budget_s=seconds,
        max_samples=10_000,
        target_rel_ci=0.03,  # tighter than a run's: the point here is the agreement
    )


def paired_ratio(ratios: list[float], contended: list[bool]) -> float:
    """The median of the paired rounds' ratios, leaving out contended rounds.

    A round during which other processes or the hypervisor (steal) took the cores the
    timers needed is left out, both timers' halves alike, so no timer is favoured, as long
    as at least half the rounds were quiet; otherwise all rounds count (the row then says
    the machine was busy)."""
    quiet = [r for r, bad in zip(ratios, contended, strict=True) if not bad]
    return statistics.median(quiet if len(quiet) * 2 >= len(ratios) else ratios)


def run_calibration(
    device: str | torch.device = "cpu", seconds: float = 1.0, rounds: int = ROUNDS
) -> list[CalibrationRow]:
    """Time every operation with the harness and the references (a plain Python call).

    The timers take turns over ``rounds`` rounds of ``seconds / rounds`` each, the order
    swapped every round (harness first, then torch first), and ``ratio_torch`` is the
    median of the rounds' ratios (:func:`paired_ratio`). Pairing matters on a shared VM:
    its speed switches between states within a second (0.96 and 1.6 ms for one 512x512
    matmul here, with or without measured steal), which moves two timers' pooled medians
    apart whenever a slow stretch falls on one of them; within a round both see nearly
    the same machine. ``harness_s`` and ``torch_s`` are pooled medians.
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds!r}")
    dev = parse_device(device)
    gc.collect()
    gc.freeze()  # each Timer collects before sampling: 0.14 s a round over torch's objects
    try:
        return [_calibrate(name, fn, dev, seconds, rounds)
                for name, fn in operations(dev).items()]
    finally:
        gc.unfreeze()


def _calibrate(name: str, fn: Callable[[], object], dev: torch.device, seconds: float,
               rounds: int) -> CalibrationRow:
    """One operation's row: ``rounds`` paired rounds, then do_bench on CUDA."""
    per_round = seconds / rounds
    limit = threshold(torch.get_num_threads()) if dev.type == "cpu" else math.inf
    ours: list[float] = []
    ref_times: list[float] = []
    ratios: list[float] = []
    contended: list[bool] = []
    for i in range(rounds):
        before = read_cpu_times()
        if i % 2 == 0:
            mine = _harness_times(fn, dev, per_round)
            theirs = _torch_times(fn, per_round)
        else:
            theirs = _torch_times(fn, per_round)
            mine = _harness_times(fn, dev, per_round)
        after = read_cpu_times()
        ours += mine
        ref_times += theirs
        ratios.append(statistics.median(mine) / statistics.median(theirs))
        contended.append(before is not None and after is not None
                         and others_cores(before, after) > limit)
    m = Measurement.from_samples(ours)
    tri_ms = _triton_median(fn, seconds) if dev.type == "cuda" else None
    tri = None if tri_ms is None else tri_ms / 1e3
    return CalibrationRow(
        op=name, device=str(dev), harness_s=m.median, harness_n=m.n,
        harness_rel_ci=m.rel_ci, harness_noisy=m.noisy,
        torch_s=statistics.median(ref_times), ratio_torch=paired_ratio(ratios, contended),
        triton_s=tri, ratio_triton=None if tri is None else m.median / tri,
        rounds=rounds, rounds_contended=sum(contended),
    )


def calibration_frame(rows: list[CalibrationRow]):  # -> pandas.DataFrame
    import pandas as pd

    return pd.DataFrame([asdict(r) | {"agrees": r.agrees} for r in rows])


# -- command line ---------------------------------------------------------------------------
