"""What is done with a model: ``forward``, ``train``, ``stream`` and the task workloads.

Workloads never time anything; the harness does. ``get(name)`` returns one. Timed
workloads (``kind`` "timed", the default) return a ``Prepared`` unit of work; task
workloads (``kind`` "task": ``psdigits``, ``psmnist``, ``mackey-glass``, ``copy``,
``adding``, ``textlm``) train a model and report what it reaches (``workloads.tasks``).
"""

from __future__ import annotations

from typing import Any

from workloads.base import Prepared, Workload, make_inputs
from workloads.forward import Forward
from workloads.stream import Stream
from workloads.tasks import TaskWorkload, task_workloads
from workloads.train import Train


def _all() -> dict[str, Workload | TaskWorkload]:
    return {w.name: w for w in (Forward(), Train(), Stream(), *task_workloads())}


def available() -> list[str]:
    return list(_all())


def get(name: str) -> Workload | TaskWorkload:
    table = _all()
    if name not in table:
        raise ValueError(f"unknown workload {name!r}; valid choices: {', '.join(table)}")
    return table[name]


def kind(name: str) -> str:
    """"timed" (time one unit of work) or "task" (train to a metric)."""
    return getattr(get(name), "kind", "timed")


def option_keys(name: str) -> tuple[str, ...]:
    """Keys a cell's overrides may carry for this workload (beside the adapter's own)."""
    return tuple(getattr(get(name), "option_keys", ()))


def check(name: str, *, seq_len: int, batch: int, options: dict[str, Any]) -> None:
    """Raise ValueError for a cell this workload cannot run (before anything runs)."""
    w = get(name)
    if hasattr(w, "check"):
        keys = option_keys(name)
        w.check(seq_len=seq_len, batch=batch, options={k: v for k, v in options.items()
                                                       if k in keys})


__all__ = ["Prepared", "Workload", "make_inputs", "available", "get", "kind", "option_keys",
           "check"]
