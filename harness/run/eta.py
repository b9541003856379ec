"""How long a run will take, said before its first cell: a user must know whether they
start a ten-minute or a ten-hour job.

A timed cell takes about its timing budget (it stops earlier once its interval is tight)
plus a process start. A task cell's length is its step count times its step time, which
no setting says: each distinct model (architecture, preset, configuration, shape) is
built in a child process and trained for :data:`PROBE_STEPS` steps on the run's device
(nothing is allocated in the runner), and the cell's estimate is ``max_steps`` × the
median probe step (capped by its ``max_wall_s``) plus its evaluations at the probe's
cost. Data loading and process starts make short cells longer than this; the figure is an
estimate, and the progress bar refines it.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import workloads
from harness.run.cell import build_model, enter_cell
from harness.run.plugins import load_plugins
from harness.run.settings import RunSettings
from harness.store.records import Cell

PROBE_STEPS = 4  # the first is dropped (warm-up)
START_S = 4.0  # a cell's process start, imports and build (3-5 s measured on a 2-core CPU)


@dataclass(frozen=True)
class Eta:
    seconds: float
    timed_cells: int
    task_cells: int
    probed: int  # distinct task models probed
    upper_s: float  # what the cells' timeouts allow

    def text(self) -> str:
        what = [f"{n} {kind} cell(s)" for n, kind in ((self.timed_cells, "timed"),
                                                        (self.task_cells, "task")) if n]
        basis = [f"timed: their budget + {START_S:g} s start"] if self.timed_cells else []
        if self.task_cells:
            basis.append(f"tasks: max_steps × the median of {PROBE_STEPS - 1} probe steps "
                         f"of each of {self.probed} model(s) here")
        return (f"estimated {_duration(self.seconds)} for {', '.join(what)} "
                f"({'; '.join(basis)}; at most {_duration(self.upper_s)} by their timeouts)")


def _duration(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _model_key(cell: Cell, options: Any) -> tuple:
    """What fixes a task cell's step time: not its seed, rate or step count."""
    own = {k: v for k, v in cell.overrides if not hasattr(options, k)}
    return (cell.arch, cell.preset, cell.workload, cell.seq_len, cell.batch, cell.dtype,
            cell.compile, cell.device, tuple(sorted(own.items())))


def probe_step_s(cell: Cell, settings: RunSettings) -> tuple[float, float]:
    """``(median step seconds, seconds per evaluation)`` of ``cell``'s model trained here
    for :data:`PROBE_STEPS` steps (two evaluations: before and after)."""
    workload = workloads.get(cell.workload)
    opts, adapter = workload.split(dict(cell.overrides))
    short = dataclasses.replace(opts, max_steps=PROBE_STEPS, eval_log_points=0,
                                eval_every=10**9, eval_every_s=1e9, stop_at_target=False)
    at = enter_cell(cell, settings.seed)
    model, _ = build_model(cell, at, {**adapter, **workload.io(opts)})
    res, _ = workload.run_task(model, short, batch=cell.batch, seq_len=cell.seq_len,
                               device=at.device, dtype=at.dtype, seed=settings.seed,
                               clock=time.perf_counter)
    steps = res.step_times_s[1:] or res.step_times_s
    eval_s = float(res.metrics().get("eval_s") or 0.0)
    return statistics.median(steps), eval_s / 2


def _probe_all(cells: list[Cell], settings: RunSettings) -> list[tuple[float, float]]:
    """:func:`probe_step_s` of each cell, in the order given (in a child process, which
    loads the run's plugins as a cell's process does)."""
    load_plugins(settings.plugins)
    return [probe_step_s(c, settings) for c in cells]


def estimate(cells: list[Cell], settings: RunSettings, workers: int = 1) -> Eta:
    """The run's estimate (cells run ``workers`` at a time). The probes run in one child
    process on the cells' device, as cells do: nothing is allocated in the runner, and a
    probe that crashes takes only the estimate with it (an error from here)."""
    timed = [c for c in cells if workloads.kind(c.workload) != "task"]
    tasks = [c for c in cells if workloads.kind(c.workload) == "task"]
    total = len(timed) * min(settings.budget_s + START_S, settings.timeout_s)
    split = {c: workloads.get(c.workload).split(dict(c.overrides))[0] for c in tasks}
    firsts: dict[tuple, Cell] = {}
    for c in tasks:
        firsts.setdefault(_model_key(c, split[c]), c)
    probes: dict[tuple, tuple[float, float]] = {}
    if firsts:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            got = pool.submit(_probe_all, list(firsts.values()), settings).result()
        probes = dict(zip(firsts, got, strict=True))
    for cell in tasks:
        opts = split[cell]
        step_s, eval_s = probes[_model_key(cell, opts)]
        train_s = min(opts.max_steps * step_s, opts.max_wall_s)
        cell_s = START_S + train_s + workloads.get(cell.workload).evaluations(opts) * eval_s
        total += min(cell_s, settings.timeout_s)  # a cell ends at its timeout
    slots = max(workers, 1)
    return Eta(total / slots, len(timed), len(tasks), len(probes),
               len(cells) * settings.timeout_s / slots)
