"""What the every-call check (``harness.run.checks.CallCheck``) costs on each cell of a
suite, timed directly: the work it adds to one call (the sum of each floating output),
and the work it adds once per sample (reading the sums, comparing the inputs) divided by
the calls of a sample; against the cell's median time per call.

    python -m tools.check_cost --suite bench --device cpu [--max-call-s 1.0]

Timing the checked step against the plain one would hide a cost of a few microseconds in
the noise of a call of tens of milliseconds; this times the added work itself. Cells
slower than ``--max-call-s`` per call are left out (the check costs them the same
absolute time: a smaller share); the count is printed.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

from harness.measure.timing import TimingConfig
from harness.run.checks import CallCheck
from harness.run.suites import load_suite
from harness.run.worker import prepare_cell


def _seconds(fn, repeat: int = 200) -> float:
    """Median seconds of ``fn()`` over ``repeat`` calls, in batches of 10."""
    times = []
    for _ in range(max(1, repeat // 10)):
        t0 = time.perf_counter()
        for _ in range(10):
            fn()
        times.append((time.perf_counter() - t0) / 10)
    return statistics.median(times)


def check_cost(out: object, inputs: tuple, call_s: float) -> float:
    """Seconds the check adds to one call whose outputs are ``out``: their sums, plus one
    sample's verify (for the calls a sample holds at ``call_s`` each) shared by its calls."""
    k = max(1, math.ceil(TimingConfig().min_sample_s / call_s))  # calls per sample
    checked = CallCheck(lambda: out, inputs)  # a call that does no work of its own
    per_call = _seconds(checked)  # the sums of one call's outputs, and the wrapper
    sums, calls = checked.sums[:k], checked.sum_calls[:k]

    def verify() -> None:
        checked.sums, checked.sum_calls = list(sums), list(calls)
        checked.verify()

    return per_call + _seconds(verify, 50) / k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="bench")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-call-s", type=float, default=1.0)
    args = ap.parse_args()
    suite = load_suite(args.suite)
    worst, skipped = (0.0, ""), 0
    for cell in suite.cells(args.device):
        p = prepare_cell(cell, suite.settings, count=False)
        plain = p.check.run  # the workload's own step
        call_s = statistics.median(_seconds(plain, 1) for _ in range(5))
        if call_s > args.max_call_s:
            skipped += 1
            continue
        cost = check_cost(plain(), p.check.inputs, call_s)
        share = cost / call_s
        worst = max(worst, (share, f"{cell.arch} {cell.workload} n={cell.seq_len}"))
        print(f"{cell.arch:16s} {cell.workload:9s} n={cell.seq_len:<5d} b={cell.batch:<3d} "
              f"{call_s * 1e3:9.3f} ms/call  check {cost * 1e6:7.1f} us/call ({share:.3%})",
              flush=True)
    print(f"largest: {worst[0]:.3%} of a call ({worst[1]}); {skipped} cell(s) over "
          f"{args.max_call_s} s per call left out")


if __name__ == "__main__":
    main()
