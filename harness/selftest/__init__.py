"""``python -m harness selftest``: does this installation measure honestly on this device?

One command, run from a checkout with nothing but the project's dependencies (no nox, no
asv, no network), that ends in a one-line verdict. Each stage, one module here, ends in
one of three outcomes (:mod:`harness.selftest.verdict`): **pass**, **not run** (what was
not checked here and why) or **fail**; the command exits non-zero only when one failed.

1. **environment** (``environment``): what was found (torch, CUDA, device, fused kernels,
   float32 policy), and a matmul on the device;
2. **contract** (``contract``): every registered adapter on the device (shapes,
   causality, step() == forward, float32 within bounds of float64);
3. **kernels** (``kernels``): each fused kernel against its float64 loop reference; one
   that cannot run here is not run, unless it is installed for this device and the
   device is CUDA or ``--strict`` was given: then it fails;
4. **timer** (``timer``): the harness timer against ``torch.utils.benchmark`` (and
   ``triton.testing.do_bench`` on CUDA), judged by ``calibrate``'s own rule; an operation
   read only while others used the cores is not run (contended), not passed;
5. **sweep** (``sweep``): the ``selftest`` suite run by the real runner in isolated cell
   processes; every cell must end ``ok``;
6. **report** (``report``): the report built from that sweep must hold a finite speedup
   over the baseline for every timed cell.

Everything lands in ``--out``: ``selftest.md`` (the figures), ``selftest.json``,
``env.json``, ``sweep/`` (a normal run directory) and ``report/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from harness.selftest.config import SUITE, SelftestConfig
from harness.selftest.verdict import Check, Outcome, exit_code, verdict, write

# The stage modules are imported by run_selftest, not here: the command line imports this
# package to name missing packages before anything (architectures, the runner) needs them.
__all__ = ["NEEDS", "SUITE", "Check", "Outcome", "SelftestConfig", "exit_code",
           "missing_packages", "offline_install_hint", "run_selftest", "verdict"]

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




def _timed(name: str, fn: Callable[[], Check]) -> Check:
    t0 = time.perf_counter()
    try:
        check = fn()
    except Exception as exc:  # noqa: BLE001 - a crashing stage is a failed stage
        from harness.errors import describe

        check = Check(name, Outcome.FAIL, f"crashed: {describe(exc)}",
                      brief=f"crashed: {describe(exc)}")
    check.seconds = time.perf_counter() - t0
    return check


def run_selftest(device: str, out: str | Path, config: SelftestConfig | None = None,
                 log: Callable[[str], None] = print) -> list[Check]:
    """Run every stage (each one even when an earlier one failed, except that the report
    needs the sweep's records) and write ``selftest.md`` / ``selftest.json`` to ``out``."""
    from harness.run.devices import set_float32_policy
    from harness.selftest.contract import check_contract
    from harness.selftest.environment import check_environment
    from harness.selftest.kernels import check_kernels
    from harness.selftest.report import check_report
    from harness.selftest.sweep import check_sweep
    from harness.selftest.timer import check_timer

    out, config = Path(out), config or SelftestConfig()
    out.mkdir(parents=True, exist_ok=True)
    set_float32_policy("strict")  # as every cell of a default run
    stages: list[tuple[str, Callable[[], Check]]] = [
        ("environment", lambda: check_environment(device, out)),
        ("contract", lambda: check_contract(device, config.archs)),
        ("kernels", lambda: check_kernels(device, config.strict)),
        ("timer", lambda: check_timer(device, config.calibrate_seconds,
                                      config.calibrate_attempts)),
        ("sweep", lambda: check_sweep(device, out / "sweep", config, log)),
        ("report", lambda: check_report(out / "sweep", out / "report", config.baseline)),
    ]
    checks: list[Check] = []
    for name, fn in stages:
        if name == "report" and not (out / "sweep" / "records.jsonl").is_file():
            checks.append(Check(name, Outcome.NOT_RUN, "no sweep records to report on",
                                brief="no sweep records"))
            continue
        log(f"[{name}] ...")
        check = _timed(name, fn)
        log(f"[{name}] {check.outcome.value.upper()} ({check.seconds:.0f} s): {check.summary}")
        checks.append(check)
    write(checks, device, out)
    return checks
