"""``python -m harness calibrate [--device cpu|cuda|cuda:N] [--seconds S]``: this machine's
timer against reference timers (the measurement is :mod:`harness.measure.calibrate`)."""

from __future__ import annotations

import argparse
import math
import os

import torch

from harness.errors import UsageError
from harness.measure.calibrate import (
    AGREEMENT,
    BUSY_SHARE,
    ROUNDS,
    Judgement,
    run_calibration,
    within,
)
from harness.measure.timing import parse_device


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
        "--rounds", type=int, default=ROUNDS,
        help=f"paired rounds: the timers take turns this many times and the ratio is the "
        f"median of the rounds' ratios (default {ROUNDS})",
    )


def _fmt_ratio(r: float | None, busy: bool = False, flushed: bool = False) -> str:
    """Green within the band (:func:`within`, the rule selftest uses too), else marked."""
    if r is None:
        return "-"
    if within(r, flushed=flushed):
        return f"[green]{r:.3f}[/green]"
    if busy:
        return f"[yellow]{r:.3f} busy[/yellow]"
    return f"[bold red]{r:.3f} OUTSIDE[/bold red]"


def _fmt_ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.4g}"


def main(args: argparse.Namespace) -> int:
    if not (math.isfinite(args.seconds) and args.seconds > 0):  # inf would never end
        raise UsageError(f"--seconds must be a finite positive number, got {args.seconds!r}")
    if args.rounds < 1:
        raise UsageError(f"--rounds must be a positive integer, got {args.rounds!r}")
    cores = len(os.sched_getaffinity(0))  # more threads than cores time the contention
    if args.threads is not None and not 1 <= args.threads <= cores:
        raise UsageError(f"--threads must be between 1 and {cores} (the usable cores), "
                         f"got {args.threads!r}")
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
    for col in ("operation", "harness ms", "±CI", "n", "torch.benchmark ms", "ratio vs torch",
                "busy rounds"):
        table.add_column(col, justify="left" if col == "operation" else "right")
    if has_triton:
        table.add_column("do_bench ms", justify="right")
        table.add_column("ratio vs triton", justify="right")
    for r in rows:
        ci = "n/a" if r.harness_rel_ci is None else f"{100 * r.harness_rel_ci:.1f}%"
        if r.harness_noisy:
            ci += " noisy"
        cells = [r.op, _fmt_ms(r.harness_s), ci, str(r.harness_n), _fmt_ms(r.torch_s),
                 _fmt_ratio(r.ratio_torch, r.busy), f"{r.rounds_contended}/{r.rounds}"]
        if has_triton:
            cells += [_fmt_ms(r.triton_s), _fmt_ratio(r.ratio_triton, r.busy, flushed=True)]
        table.add_row(*cells)
    console = Console()
    console.print(table)
    console.print(f"ratio: the median of {args.rounds} paired rounds' ratios (the timers take "
                  "turns; rounds others' load contended are left out), not the ratio of the "
                  "pooled medians beside it", highlight=False)
    outside = [r.op for r in rows if r.judgement is Judgement.OUTSIDE]
    busy = [r.op for r in rows if r.judgement is Judgement.BUSY]
    lo, hi = AGREEMENT
    if outside:
        console.print(
            f"[bold red]{len(outside)} of {len(rows)} operations outside [{lo}, {hi}]"
            f"[/bold red]: "
            f"{', '.join(outside)} (rerun with a larger --seconds on a quiet machine)"
        )
    if busy:
        console.print(
            f"[yellow]{len(busy)} of {len(rows)} outside [{lo}, {hi}] while the machine was "
            f"busy[/yellow] (others' load or steal in more than {BUSY_SHARE:.0%} of their "
            f"rounds): {', '.join(busy)}; rerun when it is quiet"
        )
    if not outside and not busy:
        console.print(f"all {len(rows)} operations agree: ratios within [{lo}, {hi}]"
                      + (f" (vs do_bench, which flushes the L2 cache, at most {hi})"
                         if has_triton else ""))
    return 0
