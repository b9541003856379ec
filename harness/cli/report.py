"""``python -m harness report RUN_DIR [RUN_DIR ...]``: tables, figures and ``index.md`` (the
pipeline is :mod:`harness.report`)."""

from __future__ import annotations

import argparse

from harness.cli.args import check_run_dirs
from harness.errors import UsageError
from harness.report import PRESETS, build_report
from harness.report.style import WIDTHS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories to combine")
    p.add_argument("--baseline", help="architecture speedups are relative to (default: the "
                                    "one stored with the run, from its suite)")
    p.add_argument("--out", default=None, help="report directory (default RUN_DIR/report/)")
    p.add_argument(
        "--preset",
        default="default",
        choices=PRESETS,
        help="'paper': training time per step of the parallel-LMU comparison",
    )
    p.add_argument(
        "--widths",
        default="single,double",
        help=f"figure widths, comma separated ({', '.join(WIDTHS)})",
    )
    p.add_argument("--formats", default="pdf,svg,png", help="figure formats (pdf, svg, png)")
    p.add_argument("--dpi", type=int, default=300, help="PNG resolution")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per cell")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--pool", action="store_true",
                   help="the runs are repeats of one command: pool each cell measured on "
                        "one device in several of them (intervals resample runs, then "
                        "rounds, then samples) instead of showing the runs side by side")


def main(args: argparse.Namespace) -> int:
    if args.dpi <= 0 or args.resamples <= 0:
        raise UsageError(
            f"--dpi and --resamples must be positive, got {args.dpi}, {args.resamples}"
        )
    check_run_dirs(args.run_dirs)
    index = build_report(
        args.run_dirs,
        args.out,
        baseline=args.baseline,
        preset=args.preset,
        widths=tuple(w.strip() for w in args.widths.split(",") if w.strip()),
        formats=tuple(f.strip() for f in args.formats.split(",") if f.strip()),
        dpi=args.dpi,
        n_resamples=args.resamples,
        seed=args.seed,
        pool=args.pool,
    )
    print(f"report written: {index}")
    return 0
