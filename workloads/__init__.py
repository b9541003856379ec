"""What is done with a model: ``forward``, ``train``, ``classify``, ``stream`` and tasks.

Workloads never time anything; the harness does. Each is registered with what it is
(``info(name)``: kind, per-token, last-position, a task's metric), so the harness reads
declarations, never names. Timed workloads (kind "timed") return a ``Prepared`` unit of
work; task workloads (kind "task": ``psdigits``, ``psmnist``, ``mackey-glass``, ``copy``,
``adding``, ``textlm``) train a model and report what it reaches (``workloads.tasks``).
Plugins add workloads with ``@workloads.register(...)`` or ``workloads.register_task``.
"""

from __future__ import annotations

from typing import Any

from workloads.base import Prepared, Workload, make_inputs
from workloads.registry import (
    KINDS,
    MetricInfo,
    WorkloadInfo,
    available,
    default_workload,
    get,
    info,
    register,
    register_task,
)

# Importing the timed workload modules registers them; the tasks are registered here.
from workloads import forward, train, stream, classify  # noqa: E402,F401  isort: skip
from workloads.tasks import TASKS  # noqa: E402  isort: skip

for _task in TASKS:
    register_task(_task)


def kind(name: str) -> str:
    """"timed" (time one unit of work) or "task" (train to a metric)."""
    return info(name).kind


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


__all__ = ["KINDS", "MetricInfo", "Prepared", "Workload", "WorkloadInfo", "available", "check",
           "default_workload", "get", "info", "kind", "make_inputs", "option_keys", "register",
           "register_task"]
