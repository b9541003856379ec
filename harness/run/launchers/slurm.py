"""The Slurm launcher: cells grouped into jobs submitted through submitit.

Each job runs its slice of cells with the local launcher (one isolated process per cell,
one slot per GPU of the job or ``workers_per_job`` CPU slots) and appends to the shared
store, so results land in one directory whatever node measured them (each record names
its ``host``; ``envs/<host>.json`` holds that host's environment).

- Resuming a sweep (the same ``--out``) submits only the cells that need it: no record,
  or, with ``--retry-failed``, a latest record that is not ``ok``. A job killed outright
  (``scancel``, node failure) leaves its unfinished cells without records, so the next
  resume submits them again; nothing finished is re-run.
- A job that is preempted or reaches its time limit gets submitit's signal
  (``signal_delay_s`` before the limit), and its ``checkpoint`` requeues it with only
  the cells that have no new record yet (up to ``max_num_timeout`` times for time
  limits). The cell running at that moment is killed and runs again in the requeued job.
  A job requeued by Slurm itself (``scontrol requeue``, a node failure) starts its
  pickled submission again, and runs likewise only the cells without a new record.
- Whether a job is still queued or running is read from ``squeue`` (:func:`queue_states`),
  not only from submitit, which asks ``sacct``: without accounting (a one-node or laptop
  cluster) ``sacct`` fails, and a job cancelled before writing its result would look
  unfinished forever.
- ``cluster = "local"`` or ``"debug"`` runs the same jobs with submitit's local
  (subprocess) or debug (in-process) executor: a dry run without a cluster, and the
  tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from harness.errors import Terminated, UsageError, os_errors_as_usage, terminate_as_interrupt
from harness.run.launchers.base import Batch, Launcher, OnRecord, OnRound
from harness.run.schedule import group_key
from harness.run.settings import RunSettings
from harness.store.records import Cell, Record
from harness.store.rundir import RunDir
from harness.store.status import QueuedJob

CLUSTERS = ("slurm", "local", "debug")
JOBS = "jobs.jsonl"


@dataclass(frozen=True)
class SlurmConfig:
    """The launcher config file (TOML, top-level keys). See ``slurm.example.toml``."""

    cluster: str = "slurm"  # submitit executor: slurm, or local/debug to try without one
    partition: str = ""
    gpus_per_job: int = 1  # GPUs per job; one worker per GPU (ignored for --device cpu)
    cells_per_job: int = 16  # cells per job (a length series is kept in one job if it fits)
    workers_per_job: int = 1  # concurrent cells per job on CPU
    timeout_min: int = 120  # job time limit; on reaching it the job requeues itself
    cpus_per_job: int = 0  # 0: the partition's default
    mem_gb: float = 0.0  # 0: the partition's default
    max_num_timeout: int = 3  # how often a job may time out and be requeued
    signal_delay_s: int = 90  # the job is told to requeue itself this long before its limit
    array_parallelism: int = 0  # most jobs of the array running at once (0: no limit)
    job_name: str = "seqbench"
    setup: tuple[str, ...] = ()  # shell lines run before each job (module load, venv)
    slurm: dict[str, Any] = field(default_factory=dict)  # extra sbatch options
    wait: bool = True  # wait for the jobs, showing records as they land
    poll_s: float = 5.0  # how often the waiting command looks for new records

    def __post_init__(self) -> None:
        object.__setattr__(self, "setup", tuple(self.setup))
        if self.cluster not in CLUSTERS:
            raise UsageError(f"launcher config: unknown cluster {self.cluster!r}; "
                             f"valid choices: {', '.join(CLUSTERS)}")
        for name in ("cells_per_job", "workers_per_job", "timeout_min"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UsageError(f"launcher config: {name} must be a positive integer, got {v!r}")
        for name in ("gpus_per_job", "cpus_per_job", "max_num_timeout", "array_parallelism",
                     "signal_delay_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise UsageError(f"launcher config: {name} must be an integer >= 0, got {v!r}")
        if self.mem_gb < 0 or self.poll_s <= 0:
            raise UsageError("launcher config: mem_gb must be >= 0 and poll_s > 0")

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "launcher config") -> SlurmConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UsageError(f"{where}: unknown key(s) {unknown}; valid choices: "
                             f"{', '.join(sorted(names))}")
        return cls(**d)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None) -> SlurmConfig:
        if path is None:
            return cls()
        p = Path(path)
        with os_errors_as_usage(f"read launcher config {str(p)!r}"):
            text = p.read_text()
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"launcher config {str(p)!r} is not valid TOML: {exc}") from None
        return cls.from_dict(data, where=str(p))


def make_jobs(cells: Sequence[Cell], cells_per_job: int) -> list[list[Cell]]:
    """Slices of at most ``cells_per_job`` cells. A length series (cells that differ only
    in ``seq_len``) stays in one job when it fits, shortest first, so a failure at n still
    skips the longer lengths; a longer series is split in length order."""
    series: dict[tuple, list[Cell]] = {}
    for c in cells:
        series.setdefault(group_key(c), []).append(c)
    jobs: list[list[Cell]] = []
    current: list[Cell] = []
    for group in series.values():
        group = sorted(group, key=lambda c: c.seq_len)
        if len(current) + len(group) > cells_per_job and current:
            jobs.append(current)
            current = []
        while len(group) > cells_per_job:
            jobs.append(group[:cells_per_job])
            group = group[cells_per_job:]
        current.extend(group)
    if current:
        jobs.append(current)
    return jobs


@dataclass
class CellJob:
    """One job: run ``cells`` into the store at ``out``. Picklable (submitit sends it to
    the node); ``checkpoint`` is submitit's hook for preemption and time limits."""

    out: str
    cells: list[dict[str, Any]]  # Cell.key_dict() of each cell
    settings: dict[str, Any]
    device: str  # "cpu" or "cuda"
    workers: int
    retry_failed: bool
    run_id: str
    seen: dict[str, int] = field(default_factory=dict)  # cell_id → records at submission
    about: dict[str, Any] = field(default_factory=dict)  # the run, for env.json

    def __call__(self) -> dict[str, int]:
        from harness.run.launchers.local import LocalLauncher, worker_slots
        from harness.run.plugins import load_plugins

        settings = RunSettings(**self.settings)
        load_plugins(settings.plugins)
        store = RunDir(self.out).ensure()
        left = self.remaining()  # a requeued job (checkpoint or Slurm's) runs what is left
        print(f"seqbench: job {_job_id()} runs {len(left)} of {len(self.cells)} cells "
              "(the others have a record since it was submitted)", file=sys.stderr, flush=True)
        if self.device.startswith("cuda"):
            import torch

            n = torch.cuda.device_count()
            if n == 0:
                raise RuntimeError(f"job on {os.uname().nodename} sees no GPU; "
                                   "set gpus_per_job >= 1 or run with --device cpu")
            slots, threads = [f"cuda:{i}" for i in range(n)], 0
        else:
            slots, threads = worker_slots("cpu", self.workers, None)
        batch = Batch([Cell.make(**d) for d in left], settings, store, run_id=self.run_id,
                      retry_failed=self.retry_failed, about=self.about)
        try:  # scancel and scontrol requeue send SIGTERM to every process of the job
            with terminate_as_interrupt():
                recs = LocalLauncher(slots, threads, job_id=_job_id()).launch(batch)
        except Terminated:
            print("seqbench: job stopped by SIGTERM (cancelled, requeued or preempted); "
                  "its unfinished cells have no record", file=sys.stderr, flush=True)
            raise SystemExit(143) from None
        counts: dict[str, int] = {}
        for r in recs:
            counts[r.status] = counts.get(r.status, 0) + 1
        return counts

    def remaining(self) -> list[dict[str, Any]]:
        """Cells with no record newer than this job's submission."""
        counts = RunDir(self.out).record_counts()
        return [d for d in self.cells
                if counts.get(_cell_id(d), 0) <= self.seen.get(_cell_id(d), 0)]

    def checkpoint(self, *args: Any, **kwargs: Any):
        """Requeue with only the unfinished cells (submitit calls this on USR2)."""
        from submitit.helpers import DelayedSubmission

        left = self.remaining()
        print(f"seqbench: checkpoint: {len(left)} of {len(self.cells)} cells left (their "
              "finished rounds are kept), requeuing", file=sys.stderr, flush=True)
        return DelayedSubmission(replace(self, cells=left))


def _cell_id(d: dict[str, Any]) -> str:
    return Cell.make(**d).cell_id


def _job_id() -> str:
    try:
        import submitit

        return str(submitit.JobEnvironment().job_id)
    except Exception:  # noqa: BLE001 - not inside a submitit job
        return ""


def _executor(cfg: SlurmConfig, folder: Path, device: str):
    try:
        import submitit
    except ImportError:
        raise UsageError("--launcher slurm needs submitit: pip install 'seqbench[slurm]'") from None
    kwargs = {}
    if cfg.cluster != "debug":
        kwargs[f"{cfg.cluster}_max_num_timeout"] = cfg.max_num_timeout
    try:
        ex = submitit.AutoExecutor(folder=folder / "%j", cluster=cfg.cluster, **kwargs)
    except RuntimeError as exc:  # no srun/sbatch here
        raise UsageError(f"cannot use cluster {cfg.cluster!r}: {exc} (set cluster = \"local\" "
                         "in the launcher config to run the jobs on this machine)") from None
    params: dict[str, Any] = dict(name=cfg.job_name, timeout_min=cfg.timeout_min,
                                  nodes=1, tasks_per_node=1)
    if cfg.cluster == "slurm":
        params["slurm_signal_delay_s"] = cfg.signal_delay_s
    if device.startswith("cuda"):
        params["gpus_per_node"] = cfg.gpus_per_job
    if cfg.cpus_per_job:
        params["cpus_per_task"] = cfg.cpus_per_job
    if cfg.mem_gb:
        params["mem_gb"] = cfg.mem_gb
    if cfg.partition:
        params["slurm_partition"] = cfg.partition
    if cfg.slurm:
        params["slurm_additional_parameters"] = dict(cfg.slurm)
    if cfg.setup:
        params["slurm_setup"] = list(cfg.setup)
    if cfg.array_parallelism:
        params["slurm_array_parallelism"] = cfg.array_parallelism
    ex.update_parameters(**params)
    return ex


@dataclass
class SlurmLauncher(Launcher):
    """Cells as Slurm jobs (see the module docstring); ``device`` is ``cpu`` or ``cuda``
    (each job runs on the GPUs Slurm gives it)."""

    config: SlurmConfig
    device: str
    log: Callable[[str], None] = field(default=lambda s: print(s, file=sys.stderr),
                                       repr=False)
    name = "slurm"

    def __post_init__(self) -> None:
        if self.device.startswith("cuda:"):
            raise UsageError(f"--device {self.device} names one GPU of this machine; with "
                             "--launcher slurm use --device cuda (each job runs on the GPUs "
                             "Slurm gives it)")
        if self.device.startswith("cuda") and self.config.gpus_per_job < 1:
            raise UsageError("launcher config: gpus_per_job must be >= 1 for --device cuda")

    def launch(self, batch: Batch, *, on_record: OnRecord | None = None,
               on_round: OnRound | None = None) -> list[Record]:
        """Submit the cells that need it as jobs; with ``config.wait``, wait for them,
        passing each new record to ``on_record`` (rounds run on the nodes: no
        ``on_round``). Returns the records the store has of the batch's cells then."""
        config, store = self.config, batch.store.ensure()
        todo = store.to_run(batch.cells, batch.retry_failed)
        if not todo:
            self.log("every cell already has a record; nothing to submit")
            return batch.records()
        counts = store.record_counts()
        folder = store.root / "slurm"
        folder.mkdir(exist_ok=True)
        ex = _executor(config, folder, self.device)
        jobs_cells = make_jobs(todo, config.cells_per_job)
        fns = [CellJob(out=str(store.root.resolve()), cells=[c.key_dict() for c in chunk],
                       settings=asdict(batch.settings), device=self.device,
                       workers=config.workers_per_job, retry_failed=batch.retry_failed,
                       run_id=batch.run_id, about=batch.about,
                       seen={c.cell_id: counts.get(c.cell_id, 0) for c in chunk})
               for chunk in jobs_cells]
        try:
            jobs = ex.submit_array(fns)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise UsageError(f"job submission failed: {exc}") from None
        with open(folder / JOBS, "a") as f:
            for job, chunk in zip(jobs, jobs_cells, strict=True):
                f.write(json.dumps({"job_id": str(job.job_id), "submitted": time.time(),
                                    "cells": [c.cell_id for c in chunk],
                                    "records_before": sum(counts.values())}) + "\n")
        self.log(f"submitted {len(jobs)} job(s) for {len(todo)} cells through submitit "
                 f"({config.cluster}); logs in {folder}")
        if not config.wait:
            self.log(f"not waiting; follow with: python -m harness status {store.root}")
            return batch.records()
        states = _wait(jobs, batch.cells, store, config, on_record, counts)
        after = store.record_counts()
        for job, chunk in zip(jobs, jobs_cells, strict=True):
            missing = [c for c in chunk if after.get(c.cell_id, 0) <= counts.get(c.cell_id, 0)]
            if missing:
                self.log(f"job {job.job_id} ended ({states.get(str(job.job_id), 'state unknown')})"
                         f" leaving {len(missing)} cell(s) without a record (the same command "
                         f"resubmits them); its log: {job.paths.stderr}")
        return batch.records()


def _wait(jobs, cells, store, config: SlurmConfig, on_record,
          counts_before) -> dict[str, str]:
    """Until every job has ended, pass each new record of ``cells`` to ``on_record``.

    Returns the last state seen of each job (``ENDED`` where the queue no longer lists
    it). On Slurm a job has ended when it left the queue's active states: submitit alone
    asks ``sacct``, and without accounting would wait forever for a cancelled job."""
    wanted = {c.cell_id for c in cells}
    reported = dict(counts_before)
    states: dict[str, str] = {}
    while True:
        queue = queue_states([str(j.job_id) for j in jobs]) if config.cluster == "slurm" else None
        if queue is not None:
            states = {str(j.job_id): queue.get(str(j.job_id), "ENDED") for j in jobs}
            finished = not ACTIVE & set(states.values())
        else:  # submitit's local executors, or a queue that cannot be read
            finished = all(j.done() for j in jobs)
            states = {str(j.job_id): j.state for j in jobs}
        if on_record:
            seen: dict[str, int] = {}
            for d in store.read_dicts():
                cid = d.get("cell_id", "")
                seen[cid] = seen.get(cid, 0) + 1
                if cid in wanted and seen[cid] > reported.get(cid, 0):
                    reported[cid] = seen[cid]
                    on_record(Record.from_dict(d))
        if finished:
            return states
        time.sleep(config.poll_s)


# Slurm job states in which a job may still run cells (squeue --states)
ACTIVE = frozenset({"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED",
                    "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT",
                    "SUSPENDED", "STOPPED", "PREEMPTED"})


def queue_states(job_ids: Sequence[str]) -> dict[str, str] | None:
    """Each listed job's state as ``squeue`` sees it (array tasks as ``ID_TASK``); jobs
    that left the queue are absent. None when the queue cannot be read (no squeue)."""
    if not job_ids:
        return {}
    try:
        res = subprocess.run(["squeue", "--noheader", "--array", "--states=all",
                              "--format=%i|%T", "--jobs", ",".join(job_ids)],
                             capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode:
        # every id purged from the controller's memory: nothing of them is queued
        return {} if "Invalid job id" in res.stderr else None
    states = {}
    for line in res.stdout.splitlines():
        job, _, state = line.strip().partition("|")
        states[job] = state.split()[0] if state else "UNKNOWN"
    return {j: states[j] for j in job_ids if j in states}


def active_jobs(root: str | Path) -> list[QueuedJob]:
    """The jobs of the run at ``root`` that the Slurm queue lists as active (none when
    the run submitted none, or the queue cannot be read here)."""
    try:
        lines = (Path(root) / "slurm" / JOBS).read_text().splitlines()
    except OSError:
        return []
    jobs = {}
    for line in lines:
        try:
            d = json.loads(line)
            jobs[str(d["job_id"])] = d
        except (ValueError, KeyError, TypeError):
            continue  # a damaged line: that job is not shown
    queue = queue_states(list(jobs)) or {}
    return [QueuedJob(job_id=j, state=state, cells=tuple(map(str, jobs[j].get("cells", []))),
                      records_before=int(jobs[j].get("records_before", 0) or 0))
            for j, state in queue.items() if state in ACTIVE]
