"""``python -m harness COMMAND ...``: one module per command, imported only when used.

Each command module defines ``add_arguments(parser)`` and ``main(args) -> int``. Bad
input raises ``UsageError`` and becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from typing import NoReturn

from harness.errors import HarnessFault, UsageError

# command → (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("harness.cli.listing", "list the registered architectures"),
    "run": ("harness.cli.run", "run a sweep of cells and store the records"),
    "calibrate": ("harness.cli.calibrate", "check this machine's timer against reference timers"),
    "report": ("harness.cli.report", "speedup tables and figures from run directories"),
    "compare": ("harness.cli.compare", "compare two runs cell by cell, flag regressions"),
    "profile": ("harness.cli.profile", "torch.profiler traces for TensorBoard, time breakdown"),
    "status": ("harness.cli.status", "done / running / failed / pending counts of a sweep"),
    "selftest": ("harness.cli.selftest", "check this installation on a device, end in a verdict"),
}

EPILOG = """\
`python -m harness COMMAND --help` for a command's options. The code, by concept:
  harness/cli/       one module per command (+ args.py: list and --set parsing)
  harness/report/    tables, figures, compare, summary   harness/profile/  torch.profiler
  harness/run/       settings, suites, devices, cell setup, sweep, runner, worker, forkserver,
                     launchers
  harness/measure/   timing, memory, FLOPs, calibration  harness/store/    run dirs, loading
  harness/selftest/  the selftest command's stages"""


class _Parser(argparse.ArgumentParser):
    """A bad option value (``--batch 0``, ``--top x``, an unknown choice) is one line and
    exit 2 like a ``UsageError``, not argparse's usage dump; other parse errors keep it."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("argument "):  # argparse's form for one argument's value
            self.exit(2, f"error: {message}\n")
        super().error(message)


def _parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = _Parser(
        prog="python -m harness",
        description="seqbench: benchmark and profile sequence architectures in PyTorch.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser, sub


class _OneLineWarnings:
    """Warnings (a skipped damaged line, a run given twice) as one plain line on stderr,
    each message once (several readers may meet the same damaged line)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message)
        if text not in self.seen:
            self.seen.add(text)
            print(f"warning: {text}", file=sys.stderr)


def _print_paths_as_given() -> None:
    """A path that is not UTF-8 (Linux allows any bytes) reaches Python with surrogates
    for its bad bytes; printed under a strict UTF-8 locale that raises after the work is
    done. Written back as the same bytes, it prints as the user typed it."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _print_paths_as_given()
    parser, sub = _parser()
    name = next((a for a in argv if not a.startswith("-")), None)
    if name is None or name not in COMMANDS:
        for cmd, (_, help_) in COMMANDS.items():
            sub.add_parser(cmd, help=help_)
        if name is not None:
            print(
                f"error: unknown command {name!r}; valid choices: {', '.join(COMMANDS)}",
                file=sys.stderr,
            )
            return 2
        parser.print_help()
        return 0 if ("-h" in argv or "--help" in argv) else 2
    module_name, help_ = COMMANDS[name]
    module = importlib.import_module(module_name)
    module.add_arguments(sub.add_parser(name, help=help_, description=help_))
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _OneLineWarnings()
        return _call(module, args)


def _call(module, args: argparse.Namespace) -> int:
    try:
        return int(module.main(args) or 0)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except HarnessFault as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
