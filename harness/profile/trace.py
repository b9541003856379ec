"""Profile one cell with ``torch.profiler``: a TensorBoard/Chrome trace and a breakdown.

Two passes over the same prepared workload, each with a wait/warm-up/active schedule:

1. the *trace* pass records shapes, memory and Python stacks and writes through
   ``tensorboard_trace_handler`` (a ``*.pt.trace.json`` that torch-tb-profiler lists and
   that Chrome's tracing page or Perfetto open as is), then the memory timeline;
2. the *lean* pass records operators only. Shapes, stacks and memory events cost time
   per operator (several times the step for a recurrent model with thousands of small
   operators), so the category breakdown comes from this pass, not from the trace.

Nothing here writes a results store: profiled steps are never reported as timings.
"""

from __future__ import annotations

import json
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

from harness.profile.breakdown import BREAKDOWN_FILE, StepTimes, breakdown, categorize, long_rows
from harness.run.cell import enter_cell, prepare_timed
from harness.store.records import Cell
from workloads.base import Prepared

TRACE_SUFFIX = ".pt.trace.json"
MANIFEST = "profile.json"
OPS_FILE = "ops.csv"
MEMORY_TIMELINE = "memory_timeline.html"


@dataclass(frozen=True)
class ProfileConfig:
    """The profiler schedule and what the trace pass records."""

    wait: int = 1  # steps run but not recorded (lets caches and allocators settle)
    warmup: int = 1  # steps recorded and discarded (the profiler's own start-up cost)
    active: int = 2  # steps recorded and reported (times are averaged over these)
    record_shapes: bool = True
    profile_memory: bool = True
    with_stack: bool = True
    seed: int = 0
    # Above this many recorded operator events no full trace (stacks, shapes, memory) is
    # recorded; the lean trace is kept (see too_big_for_full_trace). 0: no limit.
    max_full_trace_events: int = 100_000

    def __post_init__(self) -> None:
        for name in ("wait", "warmup", "active"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "active" else 0):
                low = 1 if name == "active" else 0
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if self.max_full_trace_events < 0:
            raise ValueError("max_full_trace_events must be >= 0, "
                             f"got {self.max_full_trace_events!r}")

    @property
    def steps(self) -> int:
        return self.wait + self.warmup + self.active


@dataclass
class CellProfile:
    """What profiling one cell produced (also written as ``profile.json``)."""

    cell: dict[str, Any]
    cell_id: str
    out_dir: str
    trace_file: str | None
    trace_note: str | None  # why the trace lacks stacks/memory, if it does
    memory_timeline: str | None
    memory_timeline_skipped: str | None  # why there is none
    step_wall_ms: float
    plain_step_ms: float  # one unprofiled step, to show what profiling itself added
    device_busy_ms: float | None
    config: dict[str, Any]
    source_run: str | None
    created_at: str
    torch_version: str
    host: str


def prepare_cell(cell: Cell, seed: int) -> Prepared:
    """Build and prepare ``cell`` exactly as the runner's worker does (same seed, dtype,
    device and compile mode), so a profile shows the work that was timed."""
    # the default float32 policy, as a default run's cells
    return prepare_timed(cell, enter_cell(cell, seed), seed)[0]


def _activities(device: torch.device) -> list[ProfilerActivity]:
    acts = [ProfilerActivity.CPU]
    if device.type == "cuda":
        acts.append(ProfilerActivity.CUDA)
    return acts


def _synced(run: Callable[[], Any], device: torch.device) -> Callable[[], None]:
    """A step that ends when the device is done, so a profiler step spans its kernels."""
    if device.type != "cuda":
        return lambda: (run(), None)[1]

    def step() -> None:
        run()
        torch.cuda.synchronize(device)

    return step


def _drive(prof: profile, step: Callable[[], None], n: int) -> None:
    for _ in range(n):
        step()
        prof.step()


def worker_name(device: torch.device) -> str:
    """TensorBoard's worker label: no dots (the plugin splits the file name on them)."""
    return f"{platform.node().split('.')[0] or 'host'}_{str(device).replace(':', '')}"


def too_big_for_full_trace(config: ProfileConfig, events_per_step: float) -> str | None:
    """Why the full trace (stacks, shapes, memory) is skipped, or None to record it.

    The profiler's memory grows faster than its event count (about 4 KB per event for
    the sequential LMU at n=128, 11 KB at n=512, over 24 GB at n=1024 with stacks), so
    above ``max_full_trace_events`` the breakdown pass's lean trace is kept instead."""
    recorded = int(events_per_step * (config.warmup + config.active))
    limit = config.max_full_trace_events
    if not limit or recorded <= limit:
        return None
    return (f"{recorded:,} operator events exceed --max-full-trace-events {limit:,}: kept the "
            "lean trace (no stacks, shapes or memory; raise the limit, with memory to spare, "
            "for them)")


def _fresh_trace_handler(out_dir: Path, device: torch.device):
    """TensorBoard's trace handler for ``out_dir``, after removing the traces already
    there: re-profiling a cell replaces its trace."""
    for old in out_dir.glob(f"*{TRACE_SUFFIX}"):
        old.unlink()
    return tensorboard_trace_handler(str(out_dir), worker_name=worker_name(device))


def trace_pass(step: Callable[[], None], device: torch.device, out_dir: Path,
               config: ProfileConfig) -> tuple[Path | None, str | None, str | None]:
    """Record the full trace into ``out_dir``; returns (trace file, memory timeline file,
    why the memory timeline was skipped)."""
    handler = _fresh_trace_handler(out_dir, device)
    with profile(
        activities=_activities(device),
        schedule=schedule(wait=config.wait, warmup=config.warmup, active=config.active,
                          repeat=1),
        on_trace_ready=handler,
        record_shapes=config.record_shapes,
        profile_memory=config.profile_memory,
        with_stack=config.with_stack,
    ) as prof:
        _drive(prof, step, config.steps)
    traces = sorted(out_dir.glob(f"*{TRACE_SUFFIX}"))
    mem_path, skipped = memory_timeline(prof, device, out_dir / MEMORY_TIMELINE, config)
    return (traces[-1] if traces else None), mem_path, skipped


def memory_timeline(prof: profile, device: torch.device, path: Path,
                    config: ProfileConfig) -> tuple[str | None, str | None]:
    """Export the memory timeline (HTML) where torch supports it; otherwise say why."""
    if not (config.profile_memory and config.record_shapes and config.with_stack):
        return None, "needs memory, shapes and stacks recorded (--no-memory/--no-stack given)"
    if not hasattr(prof, "export_memory_timeline"):
        return None, f"torch {torch.__version__} has no export_memory_timeline"
    dev = "cpu" if device.type == "cpu" else f"cuda:{device.index or 0}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated in favour of CUDA-only snapshots
            prof.export_memory_timeline(str(path), device=dev)
    except Exception as exc:  # noqa: BLE001 - optional output, never fatal
        return None, f"export_memory_timeline failed: {type(exc).__name__}: {exc}"[:300]
    return (str(path), None) if path.exists() else (None, "export wrote no file")


def lean_pass(step: Callable[[], None], device: torch.device, config: ProfileConfig,
              out_dir: Path | None = None) -> tuple[pd.DataFrame, StepTimes]:
    """Operators only; per-step self times of every operator and the step's wall time.
    With ``out_dir``, its (lean) trace is written there too, replacing any older one."""
    handler = _fresh_trace_handler(out_dir, device) if out_dir is not None else None
    with profile(
        activities=_activities(device),
        schedule=schedule(wait=config.wait, warmup=config.warmup, active=config.active,
                          repeat=1),
        on_trace_ready=handler,
    ) as prof:
        _drive(prof, step, config.steps)
    return op_table(prof.key_averages(), config.active, device)


def op_table(events: Any, active: int, device: torch.device) -> tuple[pd.DataFrame, StepTimes]:
    """Per-step operator rows (host-side events) and the step times, from key_averages."""
    rows, step_wall_us, busy_us = [], 0.0, 0.0
    for e in events:
        dev_us = float(getattr(e, "self_device_time_total", 0.0) or 0.0)
        if e.key.startswith("ProfilerStep"):
            step_wall_us += float(e.cpu_time_total)
            continue
        if getattr(e, "device_type", None) not in (None, torch.autograd.DeviceType.CPU):
            busy_us += dev_us  # a kernel, memcpy or memset row: device time
            continue
        rows.append({"op": e.key, "calls": e.count / active,
                     "self_cpu_s": float(e.self_cpu_time_total) / 1e6 / active,
                     "self_device_s": dev_us / 1e6 / active})
    ops = pd.DataFrame(rows, columns=["op", "calls", "self_cpu_s", "self_device_s"])
    kind = "cuda" if device.type == "cuda" else "cpu"
    times = StepTimes(step_wall_s=step_wall_us / 1e6 / active, device_kind=kind,
                      device_busy_s=busy_us / 1e6 / active if kind == "cuda" else None)
    sort = "self_device_s" if kind == "cuda" else "self_cpu_s"
    return ops.sort_values(sort, ascending=False, ignore_index=True), times


def plain_step_s(step: Callable[[], None], repeats: int = 2) -> float:
    """The fastest of a few unprofiled steps: the profiler's own cost shows against it."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    return best


def profile_cell(cell: Cell, out_dir: Path, config: ProfileConfig,
                 source_run: str | None = None,
                 log: Callable[[str], None] = lambda _: None) -> tuple[CellProfile, pd.DataFrame]:
    """Profile ``cell`` into ``out_dir`` (trace, memory timeline, ops.csv, breakdown.csv,
    profile.json); returns the manifest and the per-step operator table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(cell.device)
    prep = prepare_cell(cell, config.seed)
    step = _synced(prep.run, device)
    step()  # first call: lazy initialisation, optimizer state, compilation
    plain_s = plain_step_s(step)
    t0 = time.perf_counter()
    ops, times = lean_pass(step, device, config, out_dir)
    log(f"  breakdown pass: {time.perf_counter() - t0:.1f} s, "
        f"{ops['calls'].sum():,.0f} operator calls per step")
    note = too_big_for_full_trace(config, float(ops["calls"].sum()))
    if note:
        log(f"  {note}")
        traces = sorted(out_dir.glob(f"*{TRACE_SUFFIX}"))
        trace, mem, mem_skipped = (traces[-1] if traces else None), None, note
    else:
        t0 = time.perf_counter()
        trace, mem, mem_skipped = trace_pass(step, device, out_dir, config)
        log(f"  trace pass: {time.perf_counter() - t0:.1f} s")
    ops["category"] = [categorize(op) or "overhead" for op in ops["op"]]
    ops.to_csv(out_dir / OPS_FILE, index=False)
    fields = cell.key_dict()
    long_rows(fields, breakdown(ops, times)).to_csv(out_dir / BREAKDOWN_FILE, index=False)
    manifest = CellProfile(
        cell=fields, cell_id=cell.cell_id, out_dir=str(out_dir),
        trace_file=trace.name if trace else None, trace_note=note,
        memory_timeline=Path(mem).name if mem else None, memory_timeline_skipped=mem_skipped,
        step_wall_ms=1e3 * times.step_wall_s, plain_step_ms=1e3 * plain_s,
        device_busy_ms=1e3 * times.device_busy_s if times.device_busy_s is not None else None,
        config=asdict(config), source_run=source_run,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        torch_version=torch.__version__, host=platform.node(),
    )
    (out_dir / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2, default=str))
    return manifest, ops
