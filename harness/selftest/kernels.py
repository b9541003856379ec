"""Stage 3, **kernels**: each fused kernel against its float64 loop reference
(``architectures.kernel_checks``).

A kernel that ran passes or fails on its error bound. One that did not run is "not run"
with its reason, except where it should have run: its package is installed and the
kernel is meant for this device, on CUDA or under ``--strict``. An installed mamba-ssm
whose CUDA extension did not build is then a failure, not a quiet PyTorch fallback; a
package that is not installed is "not run" either way.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import asdict

import torch

from harness.selftest.verdict import Check, Outcome, worst

NOT_INSTALLED = "not installed"
UNUSABLE = "installed, not run"


def installed(module: str) -> bool:
    """Whether the package of ``module`` is present at all, built or not: its top-level
    module is loaded or can be found (nothing is imported)."""
    top = module.split(".")[0]
    if sys.modules.get(top) is not None:
        return True
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def cause(key: str, device_type: str) -> str:
    """Why kernel ``key`` did not run, in a few words: not installed, not on this device,
    or installed but unusable (the full reason goes to selftest.md)."""
    from architectures.optional import KERNELS

    kernel = KERNELS[key]
    if not installed(kernel.module):
        return NOT_INSTALLED
    if device_type not in kernel.device_types:
        return f"not on {'/'.join(kernel.device_types)}"
    return UNUSABLE


def check_kernels(device: str, strict: bool = False) -> Check:
    """Every known kernel on ``device``; ``strict`` (always so on CUDA): an installed
    kernel for this device that did not run fails."""
    from architectures.kernel_checks import check_kernels as run

    dev_type = torch.device(device).type
    demand = strict or dev_type == "cuda"
    rows = run(device)
    ran = [r for r in rows if r.rel_err is not None]
    bad = [r.kernel for r in ran if not r.passed]
    causes = {r.kernel: cause(r.kernel, dev_type) for r in rows if r.rel_err is None}

    def outcome(kernel: str, passed: bool) -> Outcome:
        if kernel not in causes:
            return Outcome.PASS if passed else Outcome.FAIL
        return Outcome.FAIL if demand and causes[kernel] == UNUSABLE else Outcome.NOT_RUN

    outcomes = {r.kernel: outcome(r.kernel, r.passed) for r in rows}
    lines = ["| kernel | package | dtype | max rel. error | bound | result |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        err = "-" if r.rel_err is None else f"{r.rel_err:.2e}"
        if r.rel_err is None:  # the short cause, then the kernel's own reason
            why = "; ".join(dict.fromkeys([causes[r.kernel], r.skipped]))
            result = f"{outcomes[r.kernel].value}: {why}"
        else:
            result = "ok" if r.passed else "OUTSIDE"
        lines.append(f"| {r.kernel} | {r.label or '-'} | {r.dtype} | {err} | {r.bound:g} | "
                     f"{result} |")
    brief = f"{len(ran)} of {len(rows)} run"
    if bad:
        brief += f"; outside bounds: {', '.join(bad)}"
    for why in dict.fromkeys(causes.values()):
        names = ", ".join(k for k, c in causes.items() if c == why)
        brief += f"; {why}: {names}"
    return Check("kernels", worst(outcomes.values()), brief, brief=brief, lines=lines,
                 data={"rows": [asdict(r) | {"outcome": outcomes[r.kernel].value}
                                for r in rows], "strict": demand})
