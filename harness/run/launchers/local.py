"""The local launcher: this machine's CPU cores or GPUs as a pool of worker slots.

A thin layer over ``harness.run.runner.run_cells`` (which does the scheduling and
per-cell isolation): it turns ``--workers`` / ``--devices`` into slots, writes this
machine's environment, and holds a worker lease on its cells for ``harness status``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from harness.errors import UsageError
from harness.run.devices import index_of, parse_devices
from harness.run.launchers.base import Batch, Launcher, OnRecord, OnRound, environment
from harness.run.runner import run_cells
from harness.store.records import Cell, Record
from harness.store.rundir import RunDir


def usable_cores() -> int:
    """Cores this process may run on (a Slurm or taskset allocation, not the whole node)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def worker_slots(device: str, workers: int, devices: list[str] | None) -> tuple[list[str], int]:
    """Concurrent slots and torch threads per cell process (0: torch's default).

    One cell per GPU at a time, since concurrent cells on one GPU time each other:
    ``--device cuda`` with ``--workers N`` takes the first min(N, GPU count) GPUs (the
    plain ``cuda`` slot when that is one), ``cuda:K`` is one slot whatever N, and a GPU
    listed twice in ``--devices`` is refused. CPU slots, from ``--workers`` or from
    ``--devices cpu,cpu``, share the usable cores evenly: threads = cores / CPU slots.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"--workers must be a positive integer, got {workers!r}")
    if devices:
        slots = parse_devices(devices)
        seen: dict[str, str] = {}
        for s in slots:
            if s.startswith("cuda"):
                gpu = str(index_of(s))
                if gpu in seen:
                    raise UsageError(f"--devices lists {gpu} twice ({seen[gpu]!r} and {s!r}); "
                                     "one cell runs on a GPU at a time")
                seen[gpu] = s
    elif device == "cuda":
        n = min(workers, torch.cuda.device_count())
        slots = ["cuda"] if n <= 1 else [f"cuda:{i}" for i in range(n)]
    elif device.startswith("cuda"):
        slots = [device]
    else:
        cores = usable_cores()
        if workers > cores:
            warnings.warn(f"--workers {workers} capped to {cores}: this process may use "
                          f"{cores} core(s), and more workers would only share them",
                          stacklevel=2)
            workers = cores
        slots = ["cpu"] * workers
    return slots, _threads(sum(s == "cpu" for s in slots))


def _threads(workers: int) -> int:
    """torch threads per cell process: the usable cores shared evenly (0: torch's default)."""
    return max(1, usable_cores() // workers) if workers > 1 else 0


def cap_workers(slots: list[str], threads: int, cells: Sequence[Cell], store: RunDir,
                retry_failed: bool) -> tuple[list[str], int]:
    """No more slots than cells to run: a phantom worker would still divide the memory cap
    and the cores. Says so when it caps."""
    todo = len(store.to_run(cells, retry_failed))
    if len(slots) <= max(1, todo):
        return slots, threads
    keep = max(1, todo)
    warnings.warn(f"{len(slots)} workers capped to {keep}: only {todo} cell(s) to run",
                  stacklevel=2)
    cpu = all(s == "cpu" for s in slots)
    return slots[:keep], _threads(keep) if cpu else threads


@dataclass
class LocalLauncher(Launcher):
    """Cells on this machine's ``slots`` (see :func:`worker_slots`), ``threads`` torch
    threads per cell process (0: torch's default). ``job_id``: the Slurm job it runs in."""

    slots: list[str]
    threads: int = 0
    job_id: str = ""
    fixed_threads: bool = False  # --threads: kept when the workers are capped
    name = "local"

    @classmethod
    def for_device(cls, device: str, workers: int = 1, devices: list[str] | None = None,
                   threads: int | None = None) -> LocalLauncher:
        """``threads``: torch threads per cell process instead of the usable cores shared
        by the workers (``--threads``; 1..usable cores)."""
        slots, shared = worker_slots(device, workers, devices)
        if threads is None:
            return cls(slots, shared)
        cores = usable_cores()
        if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= cores:
            raise UsageError(f"--threads must be between 1 and {cores} (the usable cores), "
                             f"got {threads!r}")
        return cls(slots, threads, fixed_threads=True)

    def launch(self, batch: Batch, *, on_record: OnRecord | None = None,
               on_round: OnRound | None = None) -> list[Record]:
        store = batch.store.ensure()
        slots, threads = cap_workers(self.slots, self.threads, batch.cells, store,
                                     batch.retry_failed)
        threads = self.threads if self.fixed_threads else threads
        store.note_env(environment(slots[0], batch, threads))
        todo = store.to_run(batch.cells, batch.retry_failed)
        with store.lease([c.cell_id for c in todo], slots=len(slots), job_id=self.job_id):
            return run_cells(batch.cells, batch.settings, store, slots=slots, threads=threads,
                             retry_failed=batch.retry_failed, on_record=on_record,
                             run_id=batch.run_id, on_round=on_round)
