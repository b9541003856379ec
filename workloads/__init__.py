"""What is done with a model: ``forward``, ``train``, ``stream`` (and task workloads).

Workloads never time anything; the harness does. ``get(name)`` returns one.
"""

from __future__ import annotations

from workloads.base import Prepared, Workload, make_inputs
from workloads.forward import Forward
from workloads.stream import Stream
from workloads.train import Train


def _all() -> dict[str, Workload]:
    return {w.name: w for w in (Forward(), Train(), Stream())}


def available() -> list[str]:
    return list(_all())


def get(name: str) -> Workload:
    table = _all()
    if name not in table:
        raise ValueError(f"unknown workload {name!r}; valid choices: {', '.join(table)}")
    return table[name]


__all__ = ["Prepared", "Workload", "make_inputs", "available", "get"]
