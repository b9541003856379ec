"""``python -m harness selftest [--device D] [--out DIR]``: check this installation on a
device (environment, adapter contract, fused kernels, timer, a short sweep and its report)
and end in a one-line verdict that counts each stage's outcome: pass, not run (what and
why) or fail. Exit 1 when a stage failed, 0 otherwise: a stage that was not run here (no
fused kernel on a CPU, a timer read only under others' load) does not fail the command,
except an installed fused kernel that did not run, on CUDA or with ``--strict``.

It needs only the project's own dependencies, no nox, asv or network. On a node without
network whose Python lacks some of them, it names them and says how to carry wheels over
(``pip download`` elsewhere, ``pip install --no-index --find-links``)."""

from __future__ import annotations

import argparse
import tempfile
from datetime import datetime
from pathlib import Path

from harness.errors import UsageError, choice, os_errors_as_usage

DEFAULT_ROOT = Path("results") / "selftest"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if present)")
    p.add_argument("--out", help="output directory, new or empty "
                                 "(default results/selftest/<time>-<device>)")
    p.add_argument("--baseline",
                   help="architecture the sweep's speedups are relative to (default: the "
                        "selftest suite's)")
    p.add_argument("--strict", action="store_true",
                   help="fail, not just report, a fused kernel that is installed for this "
                        "device but did not run (always so on CUDA)")


def main(args: argparse.Namespace) -> int:
    from harness.selftest import missing_packages, offline_install_hint

    missing = missing_packages()
    if missing:  # before anything imports them: one line, not a traceback
        print(f"selftest FAIL: {offline_install_hint(missing)}")
        return 1
    from harness.run.devices import resolve_device
    from harness.selftest import SelftestConfig, exit_code, run_selftest, verdict

    device = resolve_device(args.device)
    archs = suite_archs(device)
    if args.baseline is not None and args.baseline not in archs:
        raise choice("baseline (not in the selftest sweep)", args.baseline, archs)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else DEFAULT_ROOT / f"{stamp}-{device.replace(':', '')}"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {str(out)!r} exists and is not an empty directory; "
                         "selftest writes a fresh one (choose a new path)")
    with os_errors_as_usage(f"create --out {str(out)!r}"):
        out.mkdir(parents=True, exist_ok=True)
    with os_errors_as_usage(f"write to --out {str(out)!r}"):  # not after the stages' minute
        tempfile.TemporaryFile(dir=out).close()
    checks = run_selftest(device, out, SelftestConfig(baseline=args.baseline,
                                                      strict=args.strict))
    print(f"\ndetails: {out / 'selftest.md'}")
    print(verdict(checks, device))
    return exit_code(checks)


def suite_archs(device: str) -> list[str]:
    """The architectures of the selftest sweep on ``device``'s kind."""
    from harness.run.suites import load_suite
    from harness.selftest import SUITE

    section = load_suite(SUITE).sections["cuda" if device.startswith("cuda") else "cpu"]
    return sorted({a for g in section["grid"] for a in (g["arch"] if isinstance(g["arch"], list)
                                                          else [g["arch"]])})
