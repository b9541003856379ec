"""``python -m harness calibrate [--device cpu|cuda|cuda:N] [--seconds S]``.

Times a few stable operations with the harness :class:`~harness.timing.Timer` and with
``torch.utils.benchmark.Timer.blocked_autorange`` (plus ``triton.testing.do_bench`` on
CUDA when triton imports), and prints the medians and the ratios harness / reference.
Ratios within [0.9, 1.1] mean the harness agrees with the reference timers on this
machine; ratios outside are marked. It is a report: exit 0 whatever the ratios.

The reference timers are measured right after the harness on the same tensors, so a
ratio also absorbs any drift of a shared machine between the two; rerun with a larger
``--seconds`` before trusting a single outlier. ``do_bench`` flushes the L2 cache between
calls, so it reads slower than both others on small, cache-resident CUDA operations.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from harness.errors import UsageError
from harness.timing import Measurement, Timer, TimingConfig, parse_device

AGREEMENT = (0.9, 1.1)


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

    @property
    def agrees(self) -> bool:
        ratios = [r for r in (self.ratio_torch, self.ratio_triton) if r is not None]
        return all(AGREEMENT[0] <= r <= AGREEMENT[1] for r in ratios)


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
    )


def run_calibration(
    device: str | torch.device = "cpu", seconds: float = 1.0, rounds: int = 3
) -> list[CalibrationRow]:
    """Time every operation with the harness and the references (a plain Python call).

    The timers alternate over ``rounds`` rounds of ``seconds / rounds`` each and their
    samples are pooled, so a shared machine's load drifting over time hits both alike.
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds!r}")
    dev = parse_device(device)
    per_round = seconds / rounds
    rows = []
    for name, fn in operations(dev).items():
        ours: list[float] = []
        ref_times: list[float] = []
        for _ in range(rounds):
            ours += Timer(fn, dev, harness_config(per_round)).measure().samples
            ref_times += _torch_times(fn, per_round)
        m = Measurement.from_samples(ours)
        ref = statistics.median(ref_times)
        tri_ms = _triton_median(fn, seconds) if dev.type == "cuda" else None
        tri = None if tri_ms is None else tri_ms / 1e3
        rows.append(
            CalibrationRow(
                op=name, device=str(dev), harness_s=m.median, harness_n=m.n,
                harness_rel_ci=m.rel_ci, harness_noisy=m.noisy, torch_s=ref,
                ratio_torch=m.median / ref, triton_s=tri,
                ratio_triton=None if tri is None else m.median / tri,
            )
        )
    return rows


def calibration_frame(rows: list[CalibrationRow]):  # -> pandas.DataFrame
    import pandas as pd

    return pd.DataFrame([asdict(r) | {"agrees": r.agrees} for r in rows])


# -- command line ---------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument(
        "--seconds", type=float, default=1.0,
        help="measurement time per operation and timer (default 1.0)",
    )
    p.add_argument(
        "--threads", type=int, default=None,
        help="torch intra-op threads for both timers (default: torch's); 1 is the most "
        "stable on a shared machine",
    )
    p.add_argument(
        "--rounds", type=int, default=3,
        help="alternate the timers this many times, pooling samples (default 3)",
    )


def _fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    if AGREEMENT[0] <= r <= AGREEMENT[1]:
        return f"[green]{r:.3f}[/green]"
    return f"[bold red]{r:.3f} OUTSIDE[/bold red]"


def _fmt_ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.4g}"


def main(args: argparse.Namespace) -> int:
    if not args.seconds > 0:
        raise UsageError(f"--seconds must be a positive number, got {args.seconds!r}")
    if args.rounds < 1:
        raise UsageError(f"--rounds must be a positive integer, got {args.rounds!r}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be a positive integer, got {args.threads!r}")
    try:
        dev = parse_device(args.device)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = run_calibration(dev, args.seconds, args.rounds)

    from rich.console import Console
    from rich.table import Table

    has_triton = any(r.triton_s is not None for r in rows)
    table = Table(
        title=(
            f"timer calibration on {dev} (torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, {args.seconds:g} s per timer)"
        )
    )
    for col in ("operation", "harness ms", "±CI", "n", "torch.benchmark ms", "ratio vs torch"):
        table.add_column(col, justify="left" if col == "operation" else "right")
    if has_triton:
        table.add_column("do_bench ms", justify="right")
        table.add_column("ratio vs triton", justify="right")
    for r in rows:
        ci = "n/a" if r.harness_rel_ci is None else f"{100 * r.harness_rel_ci:.1f}%"
        if r.harness_noisy:
            ci += " noisy"
        cells = [r.op, _fmt_ms(r.harness_s), ci, str(r.harness_n), _fmt_ms(r.torch_s),
                 _fmt_ratio(r.ratio_torch)]
        if has_triton:
            cells += [_fmt_ms(r.triton_s), _fmt_ratio(r.ratio_triton)]
        table.add_row(*cells)
    console = Console()
    console.print(table)
    outside = [r.op for r in rows if not r.agrees]
    lo, hi = AGREEMENT
    if outside:
        console.print(
            f"[bold red]{len(outside)} of {len(rows)} ratios outside [{lo}, {hi}][/bold red]: "
            f"{', '.join(outside)} (rerun with a larger --seconds on a quiet machine)"
        )
    else:
        console.print(f"all {len(rows)} ratios within [{lo}, {hi}]")
    return 0
