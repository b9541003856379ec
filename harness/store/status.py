"""How far a sweep has got (``python -m harness status``, see :mod:`harness.cli.status`).

Counts each planned cell once, by its latest record: *done* (ok or skipped), *failed*
(error, oom, timeout), *running* (being measured by a live worker right now), *pending*
(no record yet: queued in a live worker or waiting for a resume). The planned cells come
from ``DIR/plan.json`` and the live workers from ``DIR/running/`` (see
``harness.store.rundir``).
"""

from __future__ import annotations

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
    workers: int = 0  # live claims (this host) or unverifiable ones (other hosts)
    unverified_workers: int = 0  # claims from other hosts: liveness unknown
    stale_workers: int = 0  # claims whose process is gone (killed): ignored

    @property
    def done(self) -> int:
        return sum(self.by_status.get(s, 0) for s in DONE)

    @property
    def failed(self) -> int:
        return sum(self.by_status.get(s, 0) for s in FAILED)

    def to_dict(self) -> dict:
        return {**asdict(self), "done": self.done, "failed": self.failed}


def sweep_status(root: str | Path) -> SweepStatus:
    """The counts of one run directory (read-only)."""
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
    for claim in run.claims():
        alive = claim.alive()
        if alive is False:
            st.stale_workers += 1
            continue
        st.workers += 1
        st.unverified_workers += alive is None
        unfinished = [c for c in claim.cells
                      if c not in latest or latest[c][0] < claim.records_before]
        unfinished = [c for c in unfinished if c not in in_workers]
        in_workers.update(unfinished)
        running = min(claim.slots, len(unfinished))
        st.running += running
        st.queued += len(unfinished) - running
    for cid in cells:
        if cid in in_workers:
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
        workers += f"; {st.stale_workers} stale claim(s) of killed workers ignored"
    lines = [
        head,
        f"  done    {st.done:6d}  (ok {b.get('ok', 0)}, skipped {b.get('skipped', 0)})",
        f"  failed  {st.failed:6d}  ("
        + ", ".join(f"{s} {b.get(s, 0)}" for s in FAILED) + ")",
        f"  running {st.running:6d}  ({workers})",
        f"  pending {st.pending:6d}  ({st.queued} queued in live workers)",
    ]
    if not st.planned:
        lines.append("  (no plan.json: only cells with a record are known, pending is a floor)")
    return "\n".join(lines)
