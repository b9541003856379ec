"""Does this machine's speed have states that outlast a run? Two or more cells' calls
alternated in one process for minutes, each one's median per window.

    python -m tools.machine_states [--arch lmu,lmu-fft] [--workload train]
                                   [--seq-len 1024] [--batch 16] [--minutes 5] [--window-s 5]

Each cell is set up as the worker sets it up (``prepare_cell``: the workload's call in the
every-call check) and called in turn, so a state of the machine falls on all of them at
the same moments; printed per window: each cell's median call and the first's over each
other's. On the 2-core VM (2026-12-07, nothing else running, the defaults) ``lmu``'s
train step took 329-361 ms in some windows and 455-497 ms in others, a slow spell lasting
from 20 s to over two minutes, while ``lmu-fft``'s held 170-233 ms: the speedup moved
between 1.6 and 2.7, and a run of a minute or two inside one state cannot see the other
(README, "How far to trust a speedup"). CPU only.
"""

from __future__ import annotations

import argparse
import statistics
import time

from harness.run.settings import RunSettings
from harness.run.worker import prepare_cell
from harness.store.records import Cell

WARMUP_CALLS = 3


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tools.machine_states",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="lmu,lmu-fft", help="comma separated, at least two")
    ap.add_argument("--workload", default="train")
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--window-s", type=float, default=5.0)
    args = ap.parse_args(argv)
    archs = [a.strip() for a in args.arch.split(",") if a.strip()]
    if len(archs) < 2:
        ap.error(f"--arch {args.arch!r}: give at least two architectures")

    settings = RunSettings(count_flops=False)
    calls = {}
    for arch in archs:
        cell = Cell.make(arch=arch, workload=args.workload, seq_len=args.seq_len,
                         batch=args.batch, preset=args.preset, device="cpu")
        calls[arch] = prepare_cell(cell, settings, count=False).run
        for _ in range(WARMUP_CALLS):
            calls[arch]()
    first, *rest = archs
    end = time.monotonic() + 60 * args.minutes
    while time.monotonic() < end:
        opened = time.monotonic()
        times: dict[str, list[float]] = {a: [] for a in archs}
        while time.monotonic() - opened < args.window_s:
            for arch, call in calls.items():
                t0 = time.perf_counter()
                call()
                times[arch].append(time.perf_counter() - t0)
        med = {a: statistics.median(v) for a, v in times.items()}
        print(time.strftime("%H:%M:%S"),
              "  ".join(f"{a} {med[a] * 1e3:.4g} ms" for a in archs),
              "  ".join(f"{first}/{a} {med[first] / med[a]:.2f}" for a in rest), sep="  ",
              flush=True)


if __name__ == "__main__":
    main()
