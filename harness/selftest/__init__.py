"""``python -m harness selftest``: does this installation measure honestly on this device?

One command, run from a checkout with nothing but the project's dependencies (no nox, no
asv, no network), that ends in a one-line verdict and exits 0 only when everything passed:

1. **environment**: what was found (torch, CUDA, device, fused kernels, float32 policy),
   and a matmul on the device;
2. **contract**: every registered adapter on the device (shapes, causality, step() ==
   forward, float32 within bounds of float64), see ``harness.selftest.contract``;
3. **kernels**: each installed fused kernel against its float64 loop reference
   (``architectures.kernel_checks``); kernels that cannot run here are listed, not failed;
4. **timer**: the harness timer against ``torch.utils.benchmark`` (and
   ``triton.testing.do_bench`` on CUDA) with ``calibrate``'s own procedure and agreement
   band. On a shared machine one reading can be pushed out by a neighbour: an operation
   passes when it agrees in any of ``attempts`` readings (a timer fault repeats, noise
   does not), and one that disagrees only in readings taken while others used the cores
   is inconclusive, not failed (``check_timer``);
5. **sweep**: the ``selftest`` suite (the LMU family and baselines, short lengths) run by
   the real runner in isolated cell processes; every cell must end ``ok``;
6. **report**: the report built from that sweep, and its speedup tables.

Everything lands in ``--out``: ``selftest.md`` (the figures), ``selftest.json``,
``env.json``, ``sweep/`` (a normal run directory) and ``report/``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

SUITE = "selftest"
# modules the stages import beyond torch/pandas/matplotlib/seaborn (what an HPC node's
# python3 typically has): pip name → module. psutil: the runner; scipy: the report's
# intervals; jinja2: pandas' Styler.to_latex for the report's tables.
NEEDS = {"psutil": "psutil", "scipy": "scipy", "jinja2": "jinja2", "pandas": "pandas",
         "matplotlib": "matplotlib", "seaborn": "seaborn"}


def missing_packages() -> list[str]:
    """Pip names of the packages the selftest needs that do not import here."""
    import importlib.util

    return [pip for pip, mod in NEEDS.items() if importlib.util.find_spec(mod) is None]


def offline_install_hint(missing: list[str]) -> str:
    """How to bring packages to a node without network: wheels carried from elsewhere."""
    names = " ".join(missing)
    return (f"missing {', '.join(missing)}: on a machine with network and the node's Python "
            f"version, `pip download -d wheels {names}`; copy wheels/ over; then "
            f"`python3 -m pip install --no-index --find-links wheels {names}`")


@dataclass
class Check:
    """One stage: passed or not, a one-line summary, and its section of selftest.md."""

    name: str
    passed: bool
    summary: str
    seconds: float = 0.0
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SelftestConfig:
    """How much to do. The defaults are the acceptance run; tests pass smaller ones."""

    calibrate_seconds: float = 0.6  # per operation and timer, split over calibrate's rounds
    calibrate_attempts: int = 3
    archs: tuple[str, ...] | None = None  # contract + sweep subset (None: all / the suite's)
    seq_len: tuple[int, ...] | None = None  # sweep lengths (None: the suite's)
    baseline: str | None = None  # None: the suite's, stored with the sweep


def _timed(name: str, fn: Callable[[], Check]) -> Check:
    t0 = time.perf_counter()
    try:
        check = fn()
    except Exception as exc:  # noqa: BLE001 - a crashing stage is a failed stage
        from harness.errors import describe

        check = Check(name, False, f"crashed: {describe(exc)}")
    check.seconds = time.perf_counter() - t0
    return check


def check_environment(device: str, out: Path) -> Check:
    from architectures.optional import float32_policy, kernel_status
    from harness.store.env import capture

    env = capture(device)
    env["kernels"] = kernel_status()
    env["float32_policy"] = float32_policy()
    (out / "env.json").write_text(json.dumps(env, indent=2, default=str))
    dev = torch.device(device)
    a = torch.ones(64, 64, device=dev)
    ok = bool(torch.allclose((a @ a).cpu(), torch.full((64, 64), 64.0)))
    kernels = ", ".join(f"{k}: {v}" for k, v in env["kernels"].items())
    lines = [f"- {k}: {env.get(k)}" for k in ("torch", "cuda", "cudnn", "device_name",
                                              "torch_threads", "git_commit", "git_dirty")]
    lines += [f"- float32 policy: {env['float32_policy']}", f"- kernels: {kernels}"]
    summary = (f"torch {env['torch']}, {env['device_name']}, float32 {env['float32_policy']}"
               + ("" if ok else "; a matmul on the device gave a wrong result"))
    return Check("environment", ok, summary, lines=lines, data=env)


def check_contract(device: str, archs: tuple[str, ...] | None) -> Check:
    import architectures
    from harness.selftest.contract import check_adapter

    names = list(archs or architectures.available())
    results = [check_adapter(n, device) for n in names]
    failed = [r for r in results if not r.passed]
    lines = ["| adapter | causal leak | forward_last − last | step − forward | "
             "float32 − float64 | result |", "|---|---|---|---|---|---|"]

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.1e}"

    for r in results:
        lines.append(f"| {r.arch} | {fmt(r.causal_leak)} | {fmt(r.last_err)} | "
                     f"{fmt(r.step_err)} | "
                     f"{fmt(r.f32_err)} | {'ok' if r.passed else '; '.join(r.failures)} |")
    summary = (f"{len(results) - len(failed)}/{len(results)} adapters keep the contract"
               + (f"; failed: {', '.join(f'{r.arch} ({r.failures[0]})' for r in failed)}"
                  if failed else ""))
    return Check("contract", not failed, summary, lines=lines,
                 data={"results": [asdict(r) for r in results]})


def check_kernels(device: str) -> Check:
    from architectures.kernel_checks import check_kernels as run

    rows = run(device)
    ran = [r for r in rows if r.rel_err is not None]
    bad = [r for r in ran if not r.passed]
    lines = ["| kernel | package | dtype | max rel. error | bound | result |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        err = "-" if r.rel_err is None else f"{r.rel_err:.2e}"
        result = f"not run: {r.skipped}" if r.rel_err is None else (
            "ok" if r.passed else "OUTSIDE")
        lines.append(f"| {r.kernel} | {r.label or '-'} | {r.dtype} | {err} | {r.bound:g} | "
                     f"{result} |")
    summary = (f"{len(ran)} fused kernel(s) checked, {len(rows) - len(ran)} not run here"
               + (f"; outside bounds: {', '.join(r.kernel for r in bad)}" if bad else ""))
    return Check("kernels", not bad, summary, lines=lines,
                 data={"rows": [asdict(r) for r in rows]})


def check_timer(device: str, seconds: float, attempts: int) -> Check:
    """calibrate's operations and agreement band, read up to ``attempts`` times.

    An operation passes when one reading agrees. One that never agrees fails, unless
    every reading of it was taken while other processes used the cores the timers needed
    (``harness.measure.contention``): then it is *inconclusive*, reported, not failed —
    a neighbour's load is not a timer fault, and a timer fault shows on a quiet reading.

    ``do_bench`` flushes the L2 cache before every call, so on cache-resident CUDA
    operations it reads slower than both other timers (calibrate's own caveat): the
    harness may be faster than it by any amount, never slower than the band allows."""
    from harness.measure.calibrate import AGREEMENT, run_calibration
    from harness.measure.contention import others_cores, read_cpu_times, threshold

    best: dict[str, Any] = {}  # op → the row closest to agreement so far
    quiet_misses: set[str] = set()  # ops that disagreed in an uncontended reading
    load: list[float] = []  # others' cores during each reading (empty off Linux)
    limit = threshold(torch.get_num_threads())
    readings = 0
    for _ in range(max(1, attempts)):
        readings += 1
        before = read_cpu_times()
        rows = run_calibration(device, seconds)
        after = read_cpu_times()
        busy = None if before is None or after is None else others_cores(before, after)
        if busy is not None:
            load.append(busy)
        for row in rows:
            if not agrees(row) and (busy is None or busy <= limit):
                quiet_misses.add(row.op)
            prev = best.get(row.op)
            if prev is None or (not agrees(prev) and (agrees(row) or _off(row) < _off(prev))):
                best[row.op] = row
        if all(agrees(r) for r in best.values()):
            break
    rows = list(best.values())
    bad = [r for r in rows if not agrees(r) and r.op in quiet_misses]
    unsure = [r for r in rows if not agrees(r) and r.op not in quiet_misses]
    lo, hi = AGREEMENT
    busy_text = ", ".join(f"{b:.1f}" for b in load) or "unknown"
    lines = [f"Agreement band [{lo}, {hi}] (the median of calibrate's paired rounds' ratios, "
             "harness / reference; the ms columns are pooled medians); "
             f"{readings} reading(s); cores used by other processes during each: "
             f"{busy_text} (contended above {limit:.1f}).", "",
             "| operation | harness ms | torch.benchmark ms | ratio | do_bench ms | ratio |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        tri = "-" if r.triton_s is None else f"{r.triton_s * 1e3:.4g}"
        rt = "-" if r.ratio_triton is None else f"{r.ratio_triton:.3f}"
        lines.append(f"| {r.op} | {r.harness_s * 1e3:.4g} | {r.torch_s * 1e3:.4g} | "
                     f"{r.ratio_torch:.3f} | {tri} | {rt} |")
    ratios = ", ".join(f"{r.op.split()[0]} {r.ratio_torch:.2f}" for r in rows)
    summary = (f"{len(rows) - len(bad) - len(unsure)}/{len(rows)} operations agree with "
               f"torch.utils.benchmark ({ratios})")
    if unsure:
        summary += (f"; inconclusive, every reading contended: "
                    f"{', '.join(r.op for r in unsure)}")
    return Check("timer", not bad, summary, lines=lines,
                 data={"rows": [dict(vars(r)) for r in rows], "readings": readings,
                       "others_cores": load, "inconclusive": [r.op for r in unsure]})


def agrees(row: Any) -> bool:
    """calibrate's band against torch.utils.benchmark; against do_bench (L2 flushed before
    each call) only its upper edge."""
    from harness.measure.calibrate import AGREEMENT

    lo, hi = AGREEMENT
    return lo <= row.ratio_torch <= hi and (row.ratio_triton is None or row.ratio_triton <= hi)


def _off(row: Any) -> float:
    """How far a calibration row's ratios are from 1 (log scale)."""
    import math

    ratios = [r for r in (row.ratio_torch, row.ratio_triton) if r is not None]
    return max(abs(math.log(r)) for r in ratios)


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
    summary = f"{len(records) - len(bad)}/{len(p.cells)} cells ok" + (
        f"; not ok: {failed}" if bad else "")
    return Check("sweep", ok, summary, lines=lines,
                 data={"cells": len(p.cells), "ok": len(records) - len(bad)})


def check_report(sweep_dir: Path, out: Path, baseline: str | None) -> Check:
    from harness.report import build_report, run_baseline
    from harness.report.summary import summary_tables
    from harness.report.tables import to_markdown

    index = build_report([sweep_dir], out, baseline=baseline, formats=("png",),
                         widths=("single",), dpi=110, n_resamples=500)
    lines = [f"Full report: `{index.relative_to(out.parent)}`.", ""]
    baseline = run_baseline([sweep_dir], baseline, [])
    for title, grid in summary_tables(sweep_dir, baseline):
        lines += [f"**{title}**", "", to_markdown(grid, grid.index.name or ""), ""]
    return Check("report", index.is_file(), f"report at {index}", lines=lines)


def run_selftest(device: str, out: str | Path, config: SelftestConfig = SelftestConfig(),
                 log: Callable[[str], None] = print) -> list[Check]:
    """Run every stage (each one even when an earlier one failed, except that the report
    needs the sweep's records) and write ``selftest.md`` / ``selftest.json`` to ``out``."""
    from harness.run.devices import set_float32_policy

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    set_float32_policy("strict")  # as every cell of a default run
    stages: list[tuple[str, Callable[[], Check]]] = [
        ("environment", lambda: check_environment(device, out)),
        ("contract", lambda: check_contract(device, config.archs)),
        ("kernels", lambda: check_kernels(device)),
        ("timer", lambda: check_timer(device, config.calibrate_seconds,
                                      config.calibrate_attempts)),
        ("sweep", lambda: check_sweep(device, out / "sweep", config, log)),
        ("report", lambda: check_report(out / "sweep", out / "report", config.baseline)),
    ]
    checks: list[Check] = []
    for name, fn in stages:
        if name == "report" and not (out / "sweep" / "records.jsonl").is_file():
            checks.append(Check(name, False, "no sweep records to report on"))
            continue
        log(f"[{name}] ...")
        check = _timed(name, fn)
        log(f"[{name}] {'PASS' if check.passed else 'FAIL'} ({check.seconds:.0f} s): "
            f"{check.summary}")
        checks.append(check)
    write(checks, device, out)
    return checks


def verdict(checks: list[Check], device: str) -> str:
    """The one line a person reads: PASS/FAIL, the device, time, and what failed."""
    total = sum(c.seconds for c in checks)
    failed = [c for c in checks if not c.passed]
    head = f"selftest {'PASS' if not failed else 'FAIL'} on {device} in {total:.0f} s"
    if failed:
        return head + ": " + "; ".join(f"{c.name}: {c.summary}" for c in failed)
    return head + ": " + "; ".join(f"{c.name} ok" for c in checks)


def write(checks: list[Check], device: str, out: Path) -> None:
    lines = ["# seqbench selftest", "", f"**{verdict(checks, device)}**", ""]
    for c in checks:
        lines += [f"## {c.name}: {'PASS' if c.passed else 'FAIL'} ({c.seconds:.1f} s)", "",
                  c.summary, "", *c.lines, ""]
    (out / "selftest.md").write_text("\n".join(lines))
    payload = {"device": device, "verdict": verdict(checks, device),
               "passed": all(c.passed for c in checks),
               "checks": [{k: v for k, v in asdict(c).items() if k != "lines"} for c in checks]}
    (out / "selftest.json").write_text(json.dumps(payload, indent=2, default=str))
