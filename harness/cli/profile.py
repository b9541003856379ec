"""``python -m harness profile``: torch.profiler traces for TensorBoard, and a time breakdown.

    python -m harness profile --arch lmu,lmu-fft,transformer --workload train --seq-len 1024
    python -m harness profile --from results/runs/RUN --cell lmu-fft/train/n1024/b8/...

What each cell's directory holds is described in :mod:`harness.profile`.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from harness.cli.args import check_run_dirs, csv_list, int_at_least, parse_set
from harness.errors import HarnessFault, UsageError, describe, os_errors_as_usage
from harness.profile import cell_dir_name, cells_from_run
from harness.profile.breakdown import breakdown_table, markdown, wide_table
from harness.profile.trace import ProfileConfig, profile_cell
from harness.report.profiles import figure
from harness.run.devices import resolve_device
from harness.store.records import Cell
from harness.store.rundir import RunDir

DEFAULT_ROOT = Path("results/profiles")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to profile (or --from/--cell)")
    g.add_argument("--arch", type=csv_list(str), help="architectures, comma-separated, or 'all'")
    g.add_argument("--workload", type=csv_list(str),
                   help="workloads (default: the one the workload registry declares default)")
    g.add_argument("--seq-len", type=csv_list(int), help="sequence lengths, e.g. 256,4096")
    g.add_argument("--batch", type=csv_list(int), default=[8], help="batch sizes (default 8)")
    g.add_argument("--preset", default="small", help="size preset (default small)")
    g.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if present)")
    g.add_argument("--dtype", default="float32", help="float32, float64, bfloat16, float16")
    g.add_argument("--compile", default="none", help="none or a torch.compile mode")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override an adapter configuration key (repeatable)")
    g.add_argument("--plugin", action="append", default=[],
                   help="module or .py file registering extra adapters (repeatable)")
    g.add_argument("--from", dest="from_run", metavar="RUN_DIR",
                   help="run directory whose cell(s) to profile (with --cell)")
    g.add_argument("--cell", action="append", default=[], metavar="ID",
                   help="cell id (or a unique prefix) from --from's records (repeatable)")
    s = p.add_argument_group("profiler")
    s.add_argument("--wait", type=int, default=1, help="steps skipped first (default 1)")
    s.add_argument("--warmup", type=int, default=1, help="steps recorded, discarded (1)")
    s.add_argument("--active", type=int, default=2, help="steps recorded and reported (2)")
    s.add_argument("--no-stack", action="store_true", help="no Python stacks in the trace")
    s.add_argument("--no-memory", action="store_true", help="no memory events in the trace")
    s.add_argument("--max-full-trace-events", type=int, default=100_000, metavar="N",
                   help="above N recorded operator events keep the lean trace, without stacks, "
                        "shapes and memory (they need many GB); 0: no limit (default 100000)")
    s.add_argument("--seed", type=int, default=0, help="input and initialisation seed")
    s.add_argument("--top", type=int_at_least(0), default=10,
                   help="operators printed per cell (default 10; 0: none)")
    p.add_argument("--out", help="profile directory (default results/profiles/<time>-<name>, "
                                 "or RUN_DIR/profiles with --from)")
    p.add_argument("--name", help="name part of the default profile directory")


def cells_from_args(args: argparse.Namespace) -> list[Cell]:
    """The grid --arch × --workload × --seq-len × --batch, validated like a run's cells."""
    import architectures
    import workloads
    from harness.run.buildcheck import check_configs
    from harness.run.plugins import resolved
    from harness.run.suites import validate_cell

    if not args.arch or not args.seq_len:
        raise UsageError("profile needs --arch and --seq-len (or --from RUN_DIR --cell ID)")
    archs = architectures.available() if args.arch == ["all"] else args.arch
    device = resolve_device(args.device)
    sets = parse_set(args.set)
    cells = []
    for arch in archs:
        if arch not in architectures.available():
            from harness.errors import choice

            raise choice("architecture", arch, architectures.available())
        own = {k: v for k, v in sets.items() if k in architectures.spec(arch).config_keys}
        for workload in args.workload or [workloads.default_workload()]:
            for n in args.seq_len:
                for b in args.batch:
                    cells.append(Cell.make(
                        overrides=own, arch=arch, workload=workload, seq_len=n, batch=b,
                        preset=args.preset, device=device, dtype=args.dtype,
                        compile=args.compile))
    for c in cells:
        validate_cell(c)
    check_configs(cells, plugins=resolved(args.plugin))
    unused = sorted(set(sets) - {k for c in cells for k, _ in c.overrides})
    if unused:
        raise UsageError(f"--set key(s) {unused} apply to none of the architectures {archs}")
    return cells


def _config(args: argparse.Namespace) -> ProfileConfig:
    try:
        return ProfileConfig(wait=args.wait, warmup=args.warmup, active=args.active,
                             record_shapes=True, profile_memory=not args.no_memory,
                             with_stack=not args.no_stack, seed=args.seed,
                             max_full_trace_events=args.max_full_trace_events)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _print_top(manifest, ops, top: int) -> None:
    head = ops[ops["category"] != "overhead"].head(top) if top > 0 else ops.head(0)
    ratio = manifest.step_wall_ms / manifest.plain_step_ms if manifest.plain_step_ms else 1.0
    print(f"\n{manifest.cell_id}: {manifest.step_wall_ms:.2f} ms per profiled step, "
          f"{manifest.plain_step_ms:.2f} ms unprofiled")
    if ratio > 1.5:
        print(f"  note: profiling made the step {ratio:.1f}x slower; the profiler's per-operator "
              "cost is inside these times, so trust shares over milliseconds")
    print(f"  {'operator':52s} {'calls':>7s} {'self CPU ms':>12s} {'self dev ms':>12s}  category")
    for _, r in head.iterrows():
        print(f"  {r['op'][:52]:52s} {r['calls']:7.0f} {1e3 * r['self_cpu_s']:12.3f} "
              f"{1e3 * r['self_device_s']:12.3f}  {r['category']}")


def main(args: argparse.Namespace) -> int:
    from harness.run.plugins import load_plugins, resolved

    plugins = resolved(args.plugin)
    if args.from_run:  # the run's own plugins first: its cells may need their adapters
        check_run_dirs([args.from_run])
        stored = RunDir(args.from_run).plan().get("plugins", []) if Path(
            args.from_run, "plan.json").exists() else []
        plugins = [p for p in stored if isinstance(p, str)] + plugins
    load_plugins(plugins)
    if args.from_run:
        if args.arch or args.seq_len:
            raise UsageError("--from takes its cells from the run; drop --arch/--seq-len")
        cells = cells_from_run(args.from_run, args.cell)
        for c in cells:
            resolve_device(c.device)  # a CUDA run profiled on a machine without CUDA
        default = RunDir(args.from_run).profiles_path
    else:
        if args.cell:
            raise UsageError("--cell needs --from RUN_DIR")
        cells = cells_from_args(args)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        default = DEFAULT_ROOT / f"{stamp}-{args.name or 'profile'}"
    config = _config(args)
    out = Path(args.out) if args.out else default
    with os_errors_as_usage(f"create profile directory {str(out)!r}"):
        out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for cell in cells:
        print(f"profiling {cell.cell_id} ...", flush=True)
        result = profile_isolated(cell, out / cell_dir_name(cell), config, args.from_run,
                                  plugins)
        if isinstance(result, str):  # one failing (or crashing) cell must not lose the rest
            print(f"  failed: {result}")
            failed += 1
            continue
        manifest, ops = result
        _print_top(manifest, ops, args.top)
        if manifest.memory_timeline_skipped:
            print(f"  memory timeline skipped: {manifest.memory_timeline_skipped}")
    long = breakdown_table(out)
    if not long.empty:
        write_summary(long, out)
        print("\ntime per step by category, ms (share of step):")
        print(markdown(long))
    print(f"profiles: {out}")
    print(f"open in TensorBoard: tensorboard --logdir {out}  "
          "(needs torch-tb-profiler; then the PYTORCH_PROFILER tab)")
    print("or open a *.pt.trace.json in https://ui.perfetto.dev or chrome://tracing")
    return 1 if failed else 0


def profile_isolated(cell: Cell, out_dir: Path, config: ProfileConfig,
                     source_run: str | None, plugins: list[str]):
    """``profile_cell`` in a process of its own, forked from the server ``run``'s cells
    are (``harness.run.forkserver``) and watched as they are: a segfault or abort fails
    that cell, not the command; a death that is not the cell's (the server gone, a stop
    from outside) raises HarnessFault. Returns ``(manifest, ops)`` or the failure as one
    line."""
    from harness.run import forkserver
    from harness.run.processes import death_message, end_process, not_the_cells_fault

    ctx = forkserver.context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_profile_child,
                       args=(cell, out_dir, config, source_run, plugins, child), daemon=True)
    proc.start()
    child.close()
    try:
        result = parent.recv()
    except EOFError:  # died before answering
        result = None
    except BaseException:  # interrupted: in a session of its own, no Ctrl-C reaches it
        end_process(proc, grace_s=0)
        raise
    end_process(proc, grace_s=10)
    if result is None:
        why = not_the_cells_fault(proc)
        if why:
            raise HarnessFault(f"{why} while profiling {cell.cell_id}; run the command again")
        return death_message(proc)
    return result


def _profile_child(cell, out_dir, config, source_run, plugins, conn):  # pragma: no cover
    from harness.run import forkserver
    from harness.run.plugins import load_plugins

    forkserver.isolate()
    try:
        load_plugins(plugins)
        conn.send(profile_cell(cell, out_dir, config, source_run=source_run,
                               log=lambda m: print(m, flush=True)))
    except Exception as exc:  # noqa: BLE001 - the parent prints it as this cell's failure
        conn.send(describe(exc))
    finally:
        conn.close()


def write_summary(long, out: Path) -> list[Path]:
    """The breakdown across cells: breakdown.csv (long), breakdown.md, breakdown.png/pdf."""
    long.to_csv(out / "breakdown_all.csv", index=False)
    wide_table(long).to_csv(out / "breakdown_ms.csv")
    (out / "breakdown.md").write_text(markdown(long))
    paths = [out / "breakdown_all.csv", out / "breakdown_ms.csv", out / "breakdown.md"]
    for (workload, batch, device, dtype), part in long.groupby(
            ["workload", "batch", "device", "dtype"], observed=True):
        stem = out / f"breakdown_{workload}_b{batch}_{device.replace(':', '')}_{dtype}"
        paths += figure(part, stem)
    return paths
