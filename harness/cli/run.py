"""``python -m harness run``: plan a sweep from a suite and options, run it, print a summary."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from harness.cli.args import csv_list, parse_set
from harness.errors import Terminated, UsageError, terminate_as_interrupt
from harness.store.records import Cell, Record
from harness.store.rundir import RunDir, StoreWriteError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="bench", help="suite name or path to a TOML file")
    p.add_argument("--arch", type=csv_list(str), help="architectures, comma-separated")
    p.add_argument("--workload", type=csv_list(str), help="workloads, comma-separated")
    p.add_argument("--seq-len", type=csv_list(int), help="sequence lengths, e.g. 256,1024")
    p.add_argument("--batch", type=csv_list(int), help="batch sizes, comma-separated")
    p.add_argument("--preset", help="size preset (tiny, small, base)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if present)")
    p.add_argument("--dtype", type=csv_list(str), help="float32, bfloat16, float16, float64")
    p.add_argument("--compile", type=csv_list(str), help="none or a torch.compile mode")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override an adapter configuration key (repeatable)")
    p.add_argument("--out", help="run directory (default: results/runs/<time>-<suite>); "
                                 "an existing one is resumed")
    p.add_argument("--workers", type=int, default=1, help="concurrent cells on CPU")
    p.add_argument("--threads", type=int,
                   help="torch threads per cell process (default: the usable cores shared "
                        "evenly by the workers; torch's default with one worker)")
    p.add_argument("--devices", type=csv_list(str),
                   help="GPUs to run on concurrently, e.g. cuda:0,cuda:1 or all")
    p.add_argument("--launcher", default="local", choices=["local", "slurm"],
                   help="where cells run: this machine (default) or Slurm jobs via submitit")
    p.add_argument("--launcher-config", metavar="FILE",
                   help="TOML for --launcher slurm: partition, gpus_per_job, cells_per_job, "
                        "timeout_min, ... (see harness/run/launchers/slurm.example.toml)")
    p.add_argument("--retry-failed", action="store_true",
                   help="on resume, re-run cells whose status is not ok")
    p.add_argument("--baseline", help="architecture speedups are relative to (default: the "
                                    "suite's baseline key); stored with the run")
    p.add_argument("--plugin", action="append", default=[],
                   help="module or .py file registering extra adapters (repeatable)")
    p.add_argument("--budget-s", type=float, help="timing budget per cell, seconds")
    p.add_argument("--timeout-s", type=float, help="wall-clock limit per cell, seconds")
    p.add_argument("--mem-cap-gb", type=float, help="CPU memory cap per cell, GiB")
    p.add_argument("--rounds", type=int,
                   help="interleaved rounds per cell (samples pooled; default 5, or the suite's)")
    p.add_argument("--precision", choices=["strict", "tf32"],
                   help="float32 matmul/conv precision of every cell (default strict: no TF32; "
                        "fused kernels that compute float32 in TF32 are then not used)")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run settings given as flags; their ranges are checked by ``RunSettings``."""
    s: dict[str, Any] = {}
    if args.precision:
        s["precision"] = args.precision
    for name in ("budget_s", "timeout_s", "mem_cap_gb"):
        v = getattr(args, name)
        if v is not None:
            if v <= 0:
                raise UsageError(f"--{name.replace('_', '-')} must be > 0, got {v}")
            s[name] = v
    if args.rounds is not None:
        s["rounds"] = args.rounds
    if args.plugin:
        s["plugins"] = tuple(args.plugin)
    return s


def main(args: argparse.Namespace) -> int:
    from harness.run.forkserver import start_early

    start_early()  # the cell processes' server imports torch while this process does (below)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from harness.report.summary import print_summary
    from harness.run import sweep
    from harness.run.devices import parse_devices
    from harness.run.launchers import make_launcher

    settings = _settings(args)
    if args.plugin:  # plugins may register the adapters named on the command line
        from harness.run.plugins import load_plugins

        load_plugins(args.plugin)
    p = sweep.plan(
        args.suite, arch=args.arch, workload=args.workload, seq_len=args.seq_len,
        batch=args.batch, preset=args.preset, device=args.device, dtype=args.dtype,
        compile=args.compile, overrides=parse_set(args.set), settings=settings, out=args.out,
        baseline=args.baseline,
    )
    launcher = make_launcher(args.launcher, p.device, workers=args.workers,
                             devices=parse_devices(args.devices), threads=args.threads,
                             config=args.launcher_config)
    RunDir(p.out).ensure()  # a bad --out is one line before the banner, and leaves nothing
    console = Console(stderr=True)
    console.print(f"[bold]seqbench[/] suite {p.suite.name!r}: {len(p.cells)} cells on "
                  f"{p.device} → {p.out}")
    console.print(_eta(p, args), highlight=False, markup=False)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=console, transient=False,
    ) as progress:
        task = progress.add_task("running", total=len(p.cells))

        advanced: dict[str, float] = {}  # a cell's share of the bar its rounds filled

        def on_round(cell: Cell, r: int, rounds: int) -> None:
            if r + 1 < rounds:  # the last round's share comes with the record
                advanced[cell.cell_id] = advanced.get(cell.cell_id, 0.0) + 1 / rounds
                progress.advance(task, 1 / rounds)

        def on_record(rec: Record) -> None:
            progress.console.print(_line(rec), highlight=False, markup=False)
            progress.advance(task, 1 - advanced.pop(rec.cell_id, 0.0))

        try:
            with terminate_as_interrupt():
                records = sweep.execute(p, launcher=launcher, retry_failed=args.retry_failed,
                                        on_record=on_record, on_round=on_round)
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: cells were killed, none lost
            progress.stop()
            print(f"{_stopped(exc)}: {_saved(p)}; run the same command again to resume "
                  "(finished cells are kept, not measured again)", file=sys.stderr)
            return 143 if isinstance(exc, Terminated) else 130
        except StoreWriteError as exc:
            progress.stop()
            what, fix = ("disk full", "free space") if exc.full else (str(exc), "fix that")
            print(f"{what}: {_saved(p)}; {fix} and rerun the same command to resume",
                  file=sys.stderr)
            return 1
        progress.update(task, completed=len(records))
    if records:
        print_summary(p.out, baseline=p.baseline)
    print(f"\nrecords: {p.out / 'records.jsonl'}")
    missing = len(p.cells) - len(records)
    if missing:
        print(f"{missing} of {len(p.cells)} cells have no record yet: see "
              f"`python -m harness status {p.out}`; the same command resumes them")
    return 0


def _eta(p: Any, args: argparse.Namespace) -> str:
    """The run's estimated length (``harness.run.eta``), over the cells not yet stored;
    one line saying why where it cannot be estimated here."""
    from harness.errors import describe
    from harness.run.eta import estimate

    todo = RunDir(p.out).to_run(p.cells, retry_failed=args.retry_failed)
    if not todo:
        return "nothing to run: every cell is stored"
    if args.launcher != "local":
        return f"not estimated: the {args.launcher} launcher runs cells on other machines"
    slots = len(args.devices) if args.devices else args.workers
    try:
        return estimate(todo, p.settings, workers=slots).text()
    except Exception as exc:  # an estimate is advice: the cells report their own failures
        return f"not estimated: {describe(exc)}"


def _stopped(exc: BaseException) -> str:
    return "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"


def _saved(p: Any) -> str:
    """``N of M cells saved in DIR/records.jsonl``, counted from the store itself."""
    ids = {c.cell_id for c in p.cells}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            n = len(ids & set(RunDir(p.out).latest_by_cell()))
    except Exception:  # noqa: BLE001 - a count must not hide the message
        return f"records in {p.out / 'records.jsonl'}"
    return f"{n} of {len(ids)} cells saved in {p.out / 'records.jsonl'}"


def _line(rec: Record) -> str:
    head = (f"{rec.status:7s} {rec.arch:16s} {rec.workload:12s} "
            f"n={rec.seq_len:<6d} b={rec.batch:<3d}")
    if rec.status == "ok" and rec.metrics:  # a task: its outcome, not its step time
        return f"{head} {rec.message[:120]}"
    if rec.status == "ok" and rec.time_median_s is not None:
        noisy = "  NOISY" if rec.noisy else ""
        return f"{head} {rec.time_median_s * 1e3:10.3f} ms  (n={rec.n_samples}){noisy}"
    return f"{head} {rec.message[:100]}"
