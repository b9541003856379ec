"""How far a sweep has got (``python -m harness status``, see :mod:`harness.cli.status`).

Counts each planned cell once, by its latest record: *done* (ok or skipped), *failed*
(error, oom, timeout), *running* (being measured by a live worker right now), *pending*
(no record yet: queued in a live worker, in a Slurm job, or waiting for a resume). The
planned cells come from ``DIR/plan.json``, the live workers from their leases in ``DIR/running/``
(see ``harness.store.claims``) and the Slurm jobs from the caller, who read the queue
(:func:`harness.run.launchers.slurm.active_jobs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import UsageError
from harness.store.records import DONE, FAILED
from harness.store.rundir import RunDir


@dataclass
class SweepStatus:
    root: str
    total: int = 0
    planned: bool = False  # False: no plan.json, only cells with records are known
    by_status: dict[str, int] = field(default_factory=dict)  # latest record's status
    running: int = 0
    queued: int = 0  # pending cells a live worker will run
    pending: int = 0  # includes queued
    workers: int = 0  # live leases (this host) or unverifiable ones (other hosts)
    unverified_workers: int = 0  # leases from other hosts: liveness unknown
    stale_workers: int = 0  # leases whose process is gone (killed): ignored
    slurm_jobs: dict[str, int] = field(default_factory=dict)  # active jobs by queue state
    slurm_queued: int = 0  # pending cells of active Slurm jobs, not yet in a worker

    @property
    def done(self) -> int:
        return sum(self.by_status.get(s, 0) for s in DONE)

    @property
    def failed(self) -> int:
        return sum(self.by_status.get(s, 0) for s in FAILED)

    def to_dict(self) -> dict:
        return {**asdict(self), "done": self.done, "failed": self.failed}


@dataclass(frozen=True)
class QueuedJob:
    """A job of this run still in the Slurm queue (a state squeue calls active)."""

    job_id: str
    state: str  # e.g. PENDING, RUNNING
    cells: tuple[str, ...]
    records_before: int  # records in the store when it was submitted


def sweep_status(root: str | Path, slurm_jobs: Sequence[QueuedJob] = ()) -> SweepStatus:
    """The counts of one run directory (read-only), with its jobs in the Slurm queue."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"run directory {str(root)!r} does not exist")
    run = RunDir(root)
    plan = run.plan()
    dicts = run.read_dicts()
    latest: dict[str, tuple[int, str]] = {}  # cell_id → (index of its latest record, status)
    for i, d in enumerate(dicts):
        latest[str(d.get("cell_id", ""))] = (i, str(d.get("status", "")))
    cells = [d["cell_id"] for d in plan.get("cells", [])]
    cells += sorted(set(latest) - set(cells))
    st = SweepStatus(root=str(root), total=len(cells), planned=bool(plan))

    in_workers: set[str] = set()
    for lease in run.leases():
        alive = lease.owner.alive()
        if alive is False:
            st.stale_workers += 1
            continue
        st.workers += 1
        st.unverified_workers += alive is None
        unfinished = [c for c in lease.cells
                      if c not in latest or latest[c][0] < lease.records_before]
        unfinished = [c for c in unfinished if c not in in_workers]
        in_workers.update(unfinished)
        running = min(lease.slots, len(unfinished))
        st.running += running
        st.queued += len(unfinished) - running
    in_slurm: set[str] = set()
    for job in slurm_jobs:
        st.slurm_jobs[job.state] = st.slurm_jobs.get(job.state, 0) + 1
        in_slurm.update(c for c in job.cells if c not in in_workers
                        and (c not in latest or latest[c][0] < job.records_before))
    st.slurm_queued = len(in_slurm)
    st.queued += st.slurm_queued
    for cid in cells:
        if cid in in_workers or cid in in_slurm:
            continue
        if cid in latest:
            status = latest[cid][1]
            st.by_status[status] = st.by_status.get(status, 0) + 1
        else:
            st.pending += 1
    st.pending += st.queued
    return st


def format_status(st: SweepStatus) -> str:
    b = st.by_status
    plan = RunDir(st.root).plan()
    head = f"{st.root}: {st.total} cells"
    if plan.get("suite"):
        head += f" (suite {plan['suite']!r} on {plan.get('device', '?')})"
    workers = f"{st.workers} live worker(s)"
    if st.unverified_workers:
        workers += f", {st.unverified_workers} on other hosts (not verifiable from here)"
    if st.stale_workers:
        workers += f"; {st.stale_workers} stale lease(s) of killed workers ignored"
    lines = [
        head,
        f"  done    {st.done:6d}  (ok {b.get('ok', 0)}, skipped {b.get('skipped', 0)})",
        f"  failed  {st.failed:6d}  ("
        + ", ".join(f"{s} {b.get(s, 0)}" for s in FAILED) + ")",
        f"  running {st.running:6d}  ({workers})",
        f"  pending {st.pending:6d}  ({st.queued - st.slurm_queued} queued in live workers"
        + (f", {st.slurm_queued} in Slurm jobs)" if st.slurm_jobs else ")"),
    ]
    if st.slurm_jobs:
        jobs = ", ".join(f"{n} {s.lower()}" for s, n in sorted(st.slurm_jobs.items()))
        lines.append(f"  slurm   jobs in the queue: {jobs}")
    if not st.planned:
        lines.append("  (no plan.json: only cells with a record are known, pending is a floor)")
    return "\n".join(lines)
