"""Launchers: where a sweep's cells run.

- ``local`` (default): one machine, a pool of worker slots: N CPU workers
  (``--workers N``) or one per GPU (``--devices cuda:0,cuda:1`` or ``all``).
- ``slurm``: jobs on a Slurm cluster through submitit, each running a slice of the
  cells with the local launcher's per-cell isolation and writing to the shared store.

Both run exactly the cells that need it (``cells_to_run``): cells without a record,
plus, with ``retry_failed``, cells whose latest record is not ``ok``.
"""

from __future__ import annotations

from harness.errors import UsageError
from harness.store.records import cells_to_run

__all__ = ["LAUNCHERS", "cells_to_run", "validate_launcher"]

LAUNCHERS = ("local", "slurm")


def validate_launcher(name: str) -> str:
    if name not in LAUNCHERS:
        raise UsageError(f"unknown launcher {name!r}; valid choices: {', '.join(LAUNCHERS)}")
    return name
