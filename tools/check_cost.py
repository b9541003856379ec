"""What the every-call check (``harness.run.checks.CallCheck``) costs on each cell of a
suite: the same prepared step timed plain and checked, alternating, in one process.

    python -m tools.check_cost --suite bench --device cpu [--max-call-s 0.5]

Prints, per cell, the median plain time per call, the median extra time per call of the
checked step, and their ratio; last the largest ratio. Cells slower than
``--max-call-s`` per call are left out (their check costs the same absolute time, a
smaller share); the count left out is printed.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

from harness.run.checks import CallCheck
from harness.run.suites import load_suite
from harness.run.worker import prepare_cell


def _per_call(run, k: int, check=None) -> float:
    t0 = time.perf_counter()
    for _ in range(k):
        run()
    if check is not None:
        check()  # once per sample, as the timer calls it
    return (time.perf_counter() - t0) / k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="bench")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-call-s", type=float, default=0.5)
    ap.add_argument("--pairs", type=int, default=15)
    args = ap.parse_args()
    suite = load_suite(args.suite)
    settings = suite.settings
    worst, skipped = 0.0, 0
    for cell in suite.cells(args.device):
        p = prepare_cell(cell, settings, count=False)
        plain = p.run.run  # prepare_cell wraps the workload's step in a CallCheck
        first = _per_call(plain, 1)
        if first > args.max_call_s:
            skipped += 1
            continue
        k = max(1, math.ceil(0.02 / max(first, 1e-7)))
        checked = CallCheck(plain, p.run.inputs)
        extra, base = [], []
        for _ in range(args.pairs):
            a = _per_call(plain, k)
            b = _per_call(checked, k, checked.verify)
            base.append(a)
            extra.append(b - a)
        med, add = statistics.median(base), statistics.median(extra)
        worst = max(worst, add / med)
        print(f"{cell.arch:14s} {cell.workload:9s} n={cell.seq_len:<5d} b={cell.batch:<3d} "
              f"{med * 1e3:9.3f} ms/call  check {add * 1e6:+8.1f} us ({add / med:+.2%})",
              flush=True)
        del p, plain, checked
    print(f"largest: {worst:+.2%} of a call; {skipped} cell(s) over {args.max_call_s} s per "
          "call left out")


if __name__ == "__main__":
    main()
