"""Stage 4, **timer**: the harness timer against ``torch.utils.benchmark`` (and
``triton.testing.do_bench`` on CUDA), with ``calibrate``'s own procedure and its own
judgement of a reading (:attr:`~harness.measure.calibrate.CalibrationRow.judgement`), so
the two commands never read one measurement differently.

On a shared machine one reading can be pushed out by a neighbour, so each operation is
read up to ``attempts`` times: it passes when one reading agrees (a timer fault repeats,
noise does not), fails when it disagreed on a quiet reading and never agreed, and is
"not run (contended)" when every reading of it was busy: a neighbour's load hides the
timer, so nothing was checked, and nothing passes.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import TYPE_CHECKING

from harness.selftest.verdict import Check, Outcome, worst

if TYPE_CHECKING:
    from harness.measure.calibrate import CalibrationRow


def check_timer(device: str, seconds: float, attempts: int) -> Check:
    """calibrate's operations, read up to ``attempts`` times (see the module)."""
    from harness.measure.calibrate import AGREEMENT, Judgement, run_calibration

    best: dict[str, CalibrationRow] = {}  # op → the row closest to agreement so far
    heard: dict[str, list[str]] = {}  # op → its judgement in each reading
    readings = 0
    for _ in range(max(1, attempts)):
        readings += 1
        for row in run_calibration(device, seconds):
            heard.setdefault(row.op, []).append(row.judgement.value)
            prev = best.get(row.op)
            if prev is None or (not prev.agrees and (row.agrees or _off(row) < _off(prev))):
                best[row.op] = row
        if all(r.agrees for r in best.values()):
            break
    rows = list(best.values())

    def outcome(op: str) -> Outcome:
        if Judgement.AGREES.value in heard[op]:
            return Outcome.PASS
        return Outcome.FAIL if Judgement.OUTSIDE.value in heard[op] else Outcome.NOT_RUN

    outcomes = {r.op: outcome(r.op) for r in rows}
    lo, hi = AGREEMENT
    lines = [f"Agreement band [{lo}, {hi}] (the median of calibrate's paired rounds' ratios, "
             "harness / reference; against do_bench only its upper edge; the ms columns are "
             f"pooled medians); {readings} reading(s). A reading is busy when others' load "
             "contended more than calibrate's share of its rounds.", "",
             "| operation | harness ms | torch.benchmark ms | ratio | do_bench ms | ratio | "
             "contended rounds | readings | result |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tri = "-" if r.triton_s is None else f"{r.triton_s * 1e3:.4g}"
        rt = "-" if r.ratio_triton is None else f"{r.ratio_triton:.3f}"
        lines.append(f"| {r.op} | {r.harness_s * 1e3:.4g} | {r.torch_s * 1e3:.4g} | "
                     f"{r.ratio_torch:.3f} | {tri} | {rt} | {r.rounds_contended}/{r.rounds} | "
                     f"{', '.join(heard[r.op])} | {outcomes[r.op].value} |")
    agreed = sum(o is Outcome.PASS for o in outcomes.values())
    ratios = ", ".join(f"{r.op.split()[0]} {r.ratio_torch:.2f}" for r in rows)
    brief = f"{agreed} of {len(rows)} agree"
    for o, what in ((Outcome.FAIL, "outside"), (Outcome.NOT_RUN, "contended")):
        ops = [op for op, got in outcomes.items() if got is o]
        if ops:
            brief += f"; {what}: {', '.join(ops)}"
    return Check("timer", worst(outcomes.values()), f"{brief} (ratios vs torch: {ratios})",
                 brief=brief, lines=lines,
                 data={"rows": [asdict(r) for r in rows], "readings": readings,
                       "judgements": heard,
                       "outcomes": {op: o.value for op, o in outcomes.items()}})


def _off(row: CalibrationRow) -> float:
    """How far a calibration row's ratios are from 1 (log scale)."""
    ratios = [r for r in (row.ratio_torch, row.ratio_triton) if r is not None]
    return max(abs(math.log(r)) for r in ratios)
