"""What every launcher is: one ``launch(batch)`` that runs the cells of a batch that need
it into the batch's store, and returns the records of all its cells.

A launcher is made (and checks its options) before anything is written, so a bad option
is one line and an untouched directory. Whatever the launcher, the environment each
machine writes (:func:`environment`) has one shape.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from harness.run.settings import RunSettings
from harness.store.records import Cell, Record
from harness.store.rundir import RunDir

OnRecord = Callable[[Record], None]
OnRound = Callable[[Cell, int, int], None]  # (cell, round, rounds)


@dataclass
class Batch:
    """Cells to run into a store. ``about`` describes the run in env.json (its suite and
    adapters: made where the run is planned, the same for every machine of it)."""

    cells: Sequence[Cell]
    settings: RunSettings
    store: RunDir
    run_id: str = ""
    retry_failed: bool = False
    about: dict[str, Any] = field(default_factory=dict)

    def records(self) -> list[Record]:
        """The stored records of the batch's cells, in their order."""
        known = self.store.latest_by_cell()
        return [known[c.cell_id] for c in self.cells if c.cell_id in known]


class Launcher(ABC):
    """Where a sweep's cells run (see ``harness.run.launchers``)."""

    name: ClassVar[str]

    @abstractmethod
    def launch(self, batch: Batch, *, on_record: OnRecord | None = None,
               on_round: OnRound | None = None) -> list[Record]:
        """Run the cells of ``batch`` that need it (``RunDir.to_run``); return the records
        of all its cells. ``on_record`` sees each new record, ``on_round(cell, r, rounds)``
        each finished round where the launcher can see it."""


def environment(slot: str, batch: Batch, threads: int = 0) -> dict[str, Any]:
    """This machine's environment for the records it measures of ``batch`` (env.json,
    envs/<host>.json): the machine, the run's description, the kernels found here, and
    the machine's ceilings for its cells (``threads`` torch threads per cell process)."""
    from architectures.optional import kernel_status
    from harness.store import env as env_mod

    env = env_mod.capture(slot)
    env.update(batch.about)
    env["float32_policy"] = batch.settings.precision  # set explicitly in every cell process
    env["kernels"] = kernel_status()  # fused kernels importable here (each record: kernel_path)
    env.update(machine_ceilings(slot, batch, threads, env.get("device_name")))
    return env


def machine_ceilings(slot: str, batch: Batch, threads: int,
                     device_name: str | None) -> dict[str, Any]:
    """``ceilings``: the roofs of ``slot``'s device in each dtype of the batch's cells
    there (``harness.measure.ceilings``: cached per host, else measured now, before any
    cell runs: up to 5 s a dtype on a CPU); ``ceilings_note`` when some are missing."""
    from harness.measure import ceilings as ceil_mod

    kind = slot.split(":")[0]
    dtypes = sorted({c.dtype for c in batch.cells if c.device.split(":")[0] == kind})
    out: list[dict[str, Any]] = []
    notes: list[str] = []
    for dtype in dtypes:
        try:
            c = ceil_mod.ceilings(slot, dtype, threads, batch.settings.precision,
                                  device_name=device_name)
        except Exception as e:  # noqa: BLE001 - a roof never costs the run its cells
            notes.append(f"{dtype}: not measured ({type(e).__name__}: {e})")
            continue
        if c is None:
            notes.append(f"{dtype}: not measured (SEQBENCH_CEILINGS=off)")
        else:
            out.append(c.to_dict())
    return {"ceilings": out, **({"ceilings_note": "; ".join(notes)} if notes else {})}
