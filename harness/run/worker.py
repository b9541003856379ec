"""What runs inside a cell's own process: build, prepare, measure, return a Record.

Each cell gets a fresh process (forked from a server that has torch imported, so it
starts in tens of milliseconds): one cell's crash, leak or allocator state never touches
another's, and CPU memory is measured against a clean baseline.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import torch

import architectures
import workloads
from harness.errors import describe
from harness.measure.flops import count_flops
from harness.measure.memory import MemoryTracker
from harness.measure.timing import Timer
from harness.run.plugins import load_plugins
from harness.run.settings import RunSettings
from harness.store.records import Cell, Record

OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in OOM_MARKERS)


def measure_cell(cell: Cell, settings: RunSettings) -> dict[str, Any]:
    """Measure ``cell`` in this process and return the Record fields (status ok)."""
    device = torch.device(cell.device)
    dtype = getattr(torch, cell.dtype)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(settings.seed)
    workload = workloads.get(cell.workload)
    if getattr(workload, "kind", "timed") == "task":
        return measure_task(cell, settings, workload)
    with MemoryTracker(device) as mem:
        model = architectures.build(cell.arch, preset=cell.preset, **dict(cell.overrides))
        params = model.num_params()
        model = model.to(device=device, dtype=dtype)
        if cell.compile != "none":
            model = torch.compile(model, mode=cell.compile)
            model.info = architectures.info(cell.arch)  # type: ignore[attr-defined]
        prep = workload.prepare(
            model, batch=cell.batch, seq_len=cell.seq_len, device=device, dtype=dtype,
            seed=settings.seed,
        )
        # the first call, inside the tracker (activations, grads, optimizer state), with
        # its FLOPs counted: no extra call is spent on counting
        flops = count_flops(prep.run) if settings.count_flops and prep.count_flops else None
        if flops is None:
            prep.run()  # not counted (or counting failed part-way): the plain first call
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    config = settings.timing()
    m = Timer(prep.run, device, config).measure()
    out: dict[str, Any] = dict(
        params=params,
        time_median_s=m.median,
        time_iqr_s=m.iqr,
        time_min_s=m.min,
        samples=list(m.samples),
        n_samples=m.n,
        noisy=m.noisy,
        rel_ci=m.rel_ci,
        warmup_s=m.warmup_s,
        stop_reason=m.stop_reason,
        calls_per_sample=m.calls_per_sample,
        peak_mem_bytes=mem.peak_bytes,
        peak_reserved_bytes=mem.reserved_bytes,
        tokens_per_s=prep.tokens / m.median if m.median > 0 else None,
        time_per_token_s=m.median / cell.seq_len if cell.workload == "stream" else None,
        flops=flops,
        flops_per_s=flops / m.median if flops and m.median > 0 else None,
        message=m.summary(),
    )
    if "state_bytes" in prep.extras:
        out["state_bytes"] = int(prep.extras["state_bytes"])
    return out


def measure_task(cell: Cell, settings: RunSettings, workload: Any) -> dict[str, Any]:
    """Train ``cell``'s model on a task workload; Record fields with its ``metrics``.

    ``time_median_s`` is the median training step (its samples are every step's time)."""
    device, dtype = torch.device(cell.device), getattr(torch, cell.dtype)
    opts, adapter_overrides = workload.split(dict(cell.overrides))

    def clock() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    with MemoryTracker(device) as mem:
        model = architectures.build(cell.arch, preset=cell.preset,
                                    **{**adapter_overrides, **workload.io(opts)})
        model = model.to(device=device, dtype=dtype)
        if cell.compile != "none":
            info = model.info
            model = torch.compile(model, mode=cell.compile)
            model.info = info  # type: ignore[attr-defined]
        res, params = workload.run_task(model, opts, batch=cell.batch, seq_len=cell.seq_len,
                                        device=device, dtype=dtype, seed=settings.seed,
                                        clock=clock)
    t = res.step_times_s
    median = statistics.median(t) if t else None
    q1, _, q3 = statistics.quantiles(t, n=4) if len(t) > 1 else (None, None, None)
    return dict(
        params=params,
        time_median_s=median,
        time_iqr_s=q3 - q1 if q1 is not None else None,
        time_min_s=min(t) if t else None,
        samples=list(t),
        n_samples=res.steps,
        peak_mem_bytes=mem.peak_bytes,
        peak_reserved_bytes=mem.reserved_bytes,
        tokens_per_s=cell.batch * cell.seq_len / median if median else None,
        metrics={**res.metrics(), "params": params},
        message=res.summary(),
    )


def run_cell(cell: Cell, settings: RunSettings) -> Record:
    """Measure one cell; any Python-level failure becomes the record's status."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    try:
        fields = measure_cell(cell, settings)
        status = "ok"
    except Exception as exc:  # noqa: BLE001 - every failure is a result to record
        status = "oom" if is_oom(exc) else "error"
        fields = {"message": describe(exc)}
    rec = Record.for_cell(cell, status, started_at=started, **fields)
    rec.wall_s = time.perf_counter() - t0
    rec.threads = torch.get_num_threads()
    return rec


def process_main(cell_dict: dict[str, Any], settings_dict: dict[str, Any], threads: int,
                 conn: Any) -> None:
    """Entry point of a cell process: own session (so the runner can kill its whole group),
    thread count, then one record sent back over ``conn``."""
    os.setsid()
    if threads > 0:
        torch.set_num_threads(threads)
    settings = RunSettings(**settings_dict)
    overrides = cell_dict.pop("overrides")
    cell = Cell.make(overrides=overrides, **cell_dict)
    try:
        load_plugins(settings.plugins)
    except Exception as exc:  # noqa: BLE001
        conn.send(asdict(Record.for_cell(cell, "error", describe(exc))))
        return
    rec = run_cell(cell, settings)
    conn.send(asdict(rec))
    conn.close()
