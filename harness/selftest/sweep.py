"""Stage 5, **sweep**: the ``selftest`` suite (the LMU family and baselines, short
lengths) run by the real runner in isolated cell processes; every cell must end ``ok``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.selftest.config import SUITE, SelftestConfig
from harness.selftest.verdict import Check, Outcome


def check_sweep(device: str, out: Path, config: SelftestConfig,
                log: Callable[[str], None]) -> Check:
    from harness.run import sweep

    p = sweep.plan(SUITE, device=device, out=out,
                   arch=list(config.archs) if config.archs else None,
                   seq_len=list(config.seq_len) if config.seq_len else None)

    def on_record(rec) -> None:
        t = "" if rec.time_median_s is None else f" {rec.time_median_s * 1e3:.2f} ms"
        log(f"  {rec.status:8s} {rec.arch:14s} {rec.workload:10s} n={rec.seq_len:<6d}{t}")

    records = sweep.execute(p, on_record=on_record)
    bad = [r for r in records if r.status != "ok"]
    missing = len(p.cells) - len(records)
    present = sorted({c.workload for c in p.cells})
    lines = [f"Suite `{SUITE}` on {device}: {len(p.cells)} cells, workloads "
             f"{', '.join(present)} (run directory `{out.name}/`)."]
    lines += [f"- {r.arch} {r.workload} n={r.seq_len}: {r.status}: {r.message[:160]}"
              for r in bad]
    ok = not bad and not missing
    failed = ", ".join(f"{r.arch}/{r.workload}/n{r.seq_len} {r.status}" for r in bad[:5])
    brief = f"{len(records) - len(bad)} of {len(p.cells)} cells ok" + (
        f"; not ok: {failed}" if bad else "") + (f"; {missing} never ran" if missing else "")
    return Check("sweep", Outcome.PASS if ok else Outcome.FAIL, brief, brief=brief,
                 lines=lines, data={"cells": len(p.cells), "ok": len(records) - len(bad)})
