"""A sweep as a plain Python call: plan cells from a suite, run them, get a DataFrame.

>>> from harness.sweep import run
>>> df = run(suite="smoke", arch=["lmu", "lmu-fft"], out="results/runs/try")
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import architectures
from harness import env as env_mod
from harness.errors import UsageError
from harness.plugins import load_plugins
from harness.records import Cell, Record
from harness.results import ResultStore
from harness.runner import run_cells
from harness.suites import RunSettings, Suite, default_device, load_suite, validate_device

RUNS_DIR = Path("results") / "runs"


@dataclass(frozen=True)
class Plan:
    suite: Suite
    settings: RunSettings
    cells: list[Cell]
    device: str
    out: Path


def plan(
    suite: str = "bench",
    *,
    arch: list[str] | None = None,
    workload: list[str] | None = None,
    seq_len: list[int] | None = None,
    batch: list[int] | None = None,
    preset: str | None = None,
    device: str | None = None,
    dtype: list[str] | None = None,
    compile: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    out: str | os.PathLike[str] | None = None,
) -> Plan:
    """Resolve a suite and command-line style options into validated cells.

    Raises UsageError (naming the bad value and valid choices) before anything is written.
    """
    s = load_suite(suite)
    run_settings = replace(s.settings, **(settings or {}))
    load_plugins(run_settings.plugins)
    device = validate_device(device or default_device())
    only: dict[str, list[Any]] = {}
    for key, values in (("arch", arch), ("workload", workload), ("seq_len", seq_len),
                        ("batch", batch), ("dtype", dtype), ("compile", compile)):
        if values:
            only[key] = list(values)
    if preset:
        only["preset"] = [preset]
    cells = s.cells(device, only=only, overrides=overrides)
    if not cells:
        raise UsageError(f"suite {s.name!r} with these options has no cells to run")
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = RUNS_DIR / f"{stamp}-{s.name}"
    return Plan(suite=s, settings=run_settings, cells=cells, device=device, out=Path(out))


def execute(
    p: Plan,
    *,
    workers: int = 1,
    devices: list[str] | None = None,
    retry_failed: bool = False,
    on_record: Callable[[Record], None] | None = None,
) -> list[Record]:
    """Run a plan into its output directory (resuming it if it has records)."""
    store = ResultStore(p.out).ensure()
    env = env_mod.capture(p.device)
    env["suite"] = {"name": p.suite.name, "source": p.suite.source,
                    "settings": p.settings.__dict__, "cells": len(p.cells)}
    env["adapters"] = {a: architectures.info(a).to_dict() for a in sorted({c.arch for c in p.cells})}
    previous = store.env()
    if previous:  # resuming: keep the first environment, note every later one
        previous.setdefault("resumed", []).append(env)
        env = previous
    store.write_env(env)
    slots, threads = worker_slots(p.device, workers, devices)
    return run_cells(
        p.cells, p.settings, store, slots=slots, threads=threads,
        retry_failed=retry_failed, on_record=on_record, run_id=p.out.name,
    )


def worker_slots(device: str, workers: int, devices: list[str] | None) -> tuple[list[str], int]:
    """Concurrent slots and torch threads per cell process.

    CPU: ``workers`` slots sharing the cores evenly. CUDA: one slot per listed device.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"--workers must be a positive integer, got {workers!r}")
    if devices:
        return [validate_device(d) for d in devices], 0
    if device.startswith("cuda"):
        return [device] * workers, 0
    cores = os.cpu_count() or 1
    threads = max(1, cores // workers) if workers > 1 else 0
    return ["cpu"] * workers, threads


def run(suite: str = "bench", *, workers: int = 1, devices: list[str] | None = None,
        retry_failed: bool = False, **options: Any):
    """Plan and execute a sweep; returns the DataFrame of its records."""
    import pandas as pd

    p = plan(suite, **options)
    recs = execute(p, workers=workers, devices=devices, retry_failed=retry_failed)
    from dataclasses import asdict

    return pd.DataFrame([asdict(r) for r in recs])
