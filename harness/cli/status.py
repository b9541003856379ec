"""``python -m harness status DIR...``: how far a sweep has got (the counting is
:mod:`harness.store.status`; a Slurm run's jobs are read from the queue)."""

from __future__ import annotations

import argparse
import json

from harness.cli.args import check_run_dirs
from harness.run.launchers.slurm import active_jobs
from harness.store.status import format_status, sweep_status


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="+", metavar="DIR", help="run directories")
    p.add_argument("--json", action="store_true", help="one JSON object per directory")


def main(args: argparse.Namespace) -> int:
    check_run_dirs(args.dirs)
    for d in args.dirs:
        st = sweep_status(d, active_jobs(d))
        print(json.dumps(st.to_dict(), sort_keys=True) if args.json else format_status(st))
    return 0
