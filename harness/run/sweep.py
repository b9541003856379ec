"""A sweep as a plain Python call: plan cells from a suite, run them, get a DataFrame.

>>> from harness.run.sweep import run
>>> df = run(suite="smoke", arch=["lmu", "lmu-fft"], out="results/runs/try")
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import architectures
from architectures.optional import kernel_status
from harness.errors import UsageError, choice
from harness.run.devices import resolve_device
from harness.run.launchers import validate_launcher
from harness.run.launchers.local import cap_workers, run_local, worker_slots
from harness.run.launchers.slurm import SlurmConfig, run_slurm
from harness.run.plugins import load_plugins, resolved
from harness.run.settings import RunSettings
from harness.run.suites import Suite, load_suite
from harness.store import env as env_mod
from harness.store.records import Cell, Record
from harness.store.rundir import RunDir

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Plan", "execute", "plan", "run", "worker_slots"]

RUNS_DIR = Path("results") / "runs"


@dataclass(frozen=True)
class Plan:
    suite: Suite
    settings: RunSettings
    cells: list[Cell]
    device: str
    out: Path
    baseline: str | None = None  # --baseline, else the suite's; stored in plan.json

    def meta(self) -> dict[str, Any]:
        """What plan.json records about the run besides its cells (readers take the
        baseline and the report's settings from here, not from code)."""
        meta = {"suite": self.suite.name, "source": self.suite.source, "device": self.device,
                "baseline": self.baseline, "report": self.suite.report}
        return {k: v for k, v in meta.items() if v not in (None, {})}  # resumes keep them


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
    baseline: str | None = None,
) -> Plan:
    """Resolve a suite and command-line style options into validated cells.

    Raises UsageError (naming the bad value and valid choices) before anything is written.
    """
    s = load_suite(suite)
    run_settings = replace(s.settings, **(settings or {}))
    load_plugins(run_settings.plugins)
    device = resolve_device(device)
    only: dict[str, list[Any]] = {}
    for key, values in (("arch", arch), ("workload", workload), ("seq_len", seq_len),
                        ("batch", batch), ("dtype", dtype), ("compile", compile)):
        if values:
            only[key] = list(values)
    if preset:
        only["preset"] = [preset]
    baseline = baseline or s.baseline
    if baseline is not None and baseline not in architectures.available():
        raise choice("baseline architecture", baseline, architectures.available())
    cells = s.cells(device, only=only, overrides=overrides)
    if not cells:
        raise UsageError(f"suite {s.name!r} with these options has no cells to run")
    if out is not None and not str(out).strip():
        raise UsageError("--out is empty; give a run directory (or leave --out out for "
                         "results/runs/<time>-<suite>)")
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = RUNS_DIR / f"{stamp}-{s.name}"
    return Plan(suite=s, settings=run_settings, cells=cells, device=device, out=Path(out),
                baseline=baseline)


def execute(
    p: Plan,
    *,
    workers: int = 1,
    devices: list[str] | None = None,
    retry_failed: bool = False,
    on_record: Callable[[Record], None] | None = None,
    launcher: str = "local",
    launcher_config: str | os.PathLike[str] | SlurmConfig | None = None,
    on_round: Callable[[Cell, int, int], None] | None = None,
) -> list[Record]:
    """Run a plan into its output directory (resuming it if it has records).

    ``launcher="local"`` runs on this machine (``workers`` CPU slots or one per entry of
    ``devices``); ``"slurm"`` submits jobs through submitit as ``launcher_config`` (a TOML
    path or a ``SlurmConfig``) says. Returns the records of the plan's cells.
    ``on_round(cell, round, rounds)`` reports each finished round (local launcher).
    """
    validate_launcher(launcher)
    # everything is validated before anything is written (plan.json, env.json, records)
    if launcher == "slurm":
        cfg = (launcher_config if isinstance(launcher_config, SlurmConfig)
               else SlurmConfig.load(launcher_config))
    elif launcher_config is not None:
        raise UsageError("--launcher-config applies to --launcher slurm only")
    else:
        slots, threads = worker_slots(p.device, workers, devices)
    store = RunDir(p.out).ensure()
    if launcher == "local":
        slots, threads = cap_workers(slots, threads, p.cells, store, retry_failed)
    plugins = [x for x in store.plan().get("plugins", []) if isinstance(x, str)]
    plugins += [x for x in resolved(p.settings.plugins) if x not in plugins]
    store.write_plan(p.cells, {**p.meta(), "plugins": plugins})  # plugins: for profile --from
    if launcher == "slurm":
        return run_slurm(p.cells, p.settings, store, device=p.device, config=cfg,
                         retry_failed=retry_failed, on_record=on_record, run_id=p.out.name)
    env = env_mod.capture(slots[0])
    env["suite"] = {"name": p.suite.name, "source": p.suite.source,
                    "settings": p.settings.__dict__, "cells": len(p.cells)}
    archs = sorted({c.arch for c in p.cells})
    env["adapters"] = {a: architectures.info(a).to_dict() for a in archs}
    env["float32_policy"] = p.settings.precision  # set explicitly in every cell process
    env["kernels"] = kernel_status()  # fused kernels importable here (each record: kernel_path)
    store.note_env(env)
    return run_local(
        p.cells, p.settings, store, slots=slots, threads=threads,
        retry_failed=retry_failed, on_record=on_record, run_id=p.out.name, on_round=on_round,
    )


def run(suite: str = "bench", *, workers: int = 1, devices: list[str] | None = None,
        retry_failed: bool = False, launcher: str = "local",
        launcher_config: str | os.PathLike[str] | SlurmConfig | None = None,
        **options: Any) -> pd.DataFrame:
    """Plan and execute a sweep; returns the DataFrame of its records (with the columns
    :func:`harness.store.load.load_run` gives)."""
    from harness.store.load import records_frame

    p = plan(suite, **options)
    recs = execute(p, workers=workers, devices=devices, retry_failed=retry_failed,
                   launcher=launcher, launcher_config=launcher_config)
    return records_frame(recs, p.out)
