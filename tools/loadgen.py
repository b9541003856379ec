"""A bursty background load, to repeat the quiet-vs-loaded check on any machine.

``python -m tools.loadgen --seconds 120`` (from the repository root) keeps ``--workers``
processes (default: every core) busy together for a random 0.5–3 s, then idle for a random
0.5–3 s, and so on, and stops by itself after ``--seconds``. The bursts are drawn from
``--seed``, so a rerun repeats the same pattern. Start it, then the benchmark in another
shell (or ``... & python -m harness run ...``).

In tests: ``with BurstyLoad(seconds=5): ...`` (stops at the end of the block, or at its
deadline, whichever comes first; the child processes also stop at the deadline if their
parent dies).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Burst:
    start: float  # seconds after the load began
    end: float


def schedule(seconds: float, seed: int = 0, busy=(0.5, 3.0), idle=(0.5, 3.0)) -> list[Burst]:
    """Busy intervals within ``seconds``: busy for U(busy) s, idle for U(idle) s, repeat."""
    rng = random.Random(seed)
    out, t = [], 0.0
    while t < seconds:
        b = rng.uniform(*busy)
        out.append(Burst(t, min(seconds, t + b)))
        t += b + rng.uniform(*idle)
    return out


def _spin(t0: float, bursts: list[Burst], deadline: float) -> None:  # pragma: no cover - child
    for b in bursts:
        now = time.monotonic()
        if now >= deadline:
            return
        if t0 + b.start > now:
            time.sleep(t0 + b.start - now)
        end = min(t0 + b.end, deadline)
        x = 0
        while time.monotonic() < end:
            x += 1  # pure Python: one core busy, no memory traffic


class BurstyLoad:
    """``workers`` processes sharing one burst schedule, bounded by ``seconds``."""

    def __init__(self, seconds: float, workers: int | None = None, seed: int = 0,
                 busy: tuple[float, float] = (0.5, 3.0),
                 idle: tuple[float, float] = (0.5, 3.0)) -> None:
        if not seconds > 0:
            raise ValueError(f"seconds must be > 0, got {seconds!r}")
        self.seconds = seconds
        self.workers = workers or os.cpu_count() or 1
        self.bursts = schedule(seconds, seed, busy, idle)
        self._procs: list[mp.process.BaseProcess] = []

    def start(self) -> BurstyLoad:
        ctx = mp.get_context("spawn")  # no inherited state (torch threads, locks)
        t0 = time.monotonic() + 0.2  # every worker starts the schedule together
        deadline = t0 + self.seconds
        self._procs = [
            ctx.Process(target=_spin, args=(t0, self.bursts, deadline), daemon=True)
            for _ in range(self.workers)
        ]
        for p in self._procs:
            p.start()
        return self

    def wait(self) -> None:
        for p in self._procs:
            p.join()

    def stop(self) -> None:
        for p in self._procs:
            if p.is_alive():
                p.terminate()
        for p in self._procs:
            p.join(timeout=5)

    def busy_share(self) -> float:
        return sum(b.end - b.start for b in self.bursts) / self.seconds

    def __enter__(self) -> BurstyLoad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.loadgen",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=120.0, help="total duration (default 120)")
    p.add_argument("--workers", type=int, default=None, help="busy processes (default: cores)")
    p.add_argument("--seed", type=int, default=0, help="burst pattern seed (default 0)")
    args = p.parse_args(argv)
    if not args.seconds > 0 or (args.workers is not None and args.workers < 1):
        print(f"error: --seconds must be > 0 and --workers >= 1, got {args.seconds}, "
              f"{args.workers}", file=sys.stderr)
        return 2
    load = BurstyLoad(args.seconds, args.workers, args.seed)
    print(f"bursty load: {load.workers} processes, {len(load.bursts)} bursts, busy "
          f"{100 * load.busy_share():.0f}% of {args.seconds:g} s", flush=True)
    load.start()
    try:
        load.wait()
    except KeyboardInterrupt:
        load.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
