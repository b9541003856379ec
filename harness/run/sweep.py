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
from harness.errors import UsageError, choice
from harness.run.buildcheck import check_configs
from harness.run.devices import resolve_device
from harness.run.launchers import Batch, Launcher, make_launcher
from harness.run.launchers.local import worker_slots
from harness.run.launchers.slurm import SlurmConfig
from harness.run.plugins import load_plugins, resolved
from harness.run.settings import RunSettings
from harness.run.suites import Suite, load_suite
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

    def about(self) -> dict[str, Any]:
        """The run as each machine's env.json describes it."""
        archs = sorted({c.arch for c in self.cells})
        return {"suite": {"name": self.suite.name, "source": self.suite.source,
                          "settings": self.settings.__dict__, "cells": len(self.cells)},
                "adapters": {a: architectures.info(a).to_dict() for a in archs}}


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
    check_configs(cells, plugins=resolved(run_settings.plugins),
                  mem_cap_bytes=int(run_settings.mem_cap_gb * 2**30),
                  timeout_s=run_settings.timeout_s)
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
    launcher: str | Launcher = "local",
    launcher_config: str | os.PathLike[str] | SlurmConfig | None = None,
    on_round: Callable[[Cell, int, int], None] | None = None,
) -> list[Record]:
    """Run a plan into its output directory (resuming it if it has records).

    ``launcher="local"`` runs on this machine (``workers`` CPU slots or one per entry of
    ``devices``); ``"slurm"`` submits jobs through submitit as ``launcher_config`` (a TOML
    path or a ``SlurmConfig``) says; or a ``Launcher`` made already (``make_launcher``).
    Returns the records of the plan's cells. ``on_round(cell, round, rounds)`` reports
    each finished round (local launcher).
    """
    # everything is validated before anything is written (plan.json, env.json, records)
    if not isinstance(launcher, Launcher):
        launcher = make_launcher(launcher, p.device, workers=workers, devices=devices,
                                 config=launcher_config)
    store = RunDir(p.out).ensure()
    plugins = [x for x in store.plan().get("plugins", []) if isinstance(x, str)]
    plugins += [x for x in resolved(p.settings.plugins) if x not in plugins]
    store.write_plan(p.cells, {**p.meta(), "plugins": plugins})  # plugins: for profile --from
    batch = Batch(p.cells, p.settings, store, run_id=p.out.name, retry_failed=retry_failed,
                  about=p.about())
    return launcher.launch(batch, on_record=on_record, on_round=on_round)


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
