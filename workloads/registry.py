"""Name → workload, each declaring what it is, so the harness never needs its name.

Symmetric to the architecture registry: built-ins and plugins register the same way.
``@register("forward", description=...)`` adds a timed workload class (built with no
arguments); ``register_task(TaskClass)`` adds a task, whose declaration comes from the
task's own class attributes. ``info(name)`` is the declaration the harness reads:

* ``kind``: "timed" (one unit of work is timed) or "task" (train to a metric);
* ``per_token``: one unit of work is a stream of ``seq_len`` tokens, so time per token is
  meaningful (``stream``);
* ``last_position``: the workload reads only the model's last output (``forward_last``);
* for tasks, ``metric``: its name in records, display label and scale, direction and
  whether it is best shown on a log axis.

``register(..., default=True)`` marks the workload a command uses when none is named
(``harness profile``); ``default_workload()`` reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from workloads.task_workload import TaskWorkload

KINDS = ("timed", "task")
C = TypeVar("C", bound=type)


@dataclass(frozen=True)
class MetricInfo:
    """A task's held-out metric, as reports show it."""

    name: str  # key in task records, e.g. "accuracy"
    label: str  # axis and table label, e.g. "test accuracy (%)"
    scale: float = 1.0  # shown value = value × scale (accuracy in %: 100)
    higher_is_better: bool = True
    log_scale: bool = False  # spans decades on the way to its target (MSE)

    def show(self, value: float) -> float:
        return value * self.scale


@dataclass(frozen=True)
class WorkloadInfo:
    """What a workload declares about itself (``harness list`` and the reports read it)."""

    name: str
    description: str
    kind: str = "timed"
    per_token: bool = False
    last_position: bool = False
    metric: MetricInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WorkloadSpec:
    info: WorkloadInfo
    factory: Callable[[], Any]  # a fresh workload object (workloads hold no state)
    owner: Any  # the registered class: registering it again (a re-import) is no conflict
    default: bool = False  # the workload commands use when none is named


_REGISTRY: dict[str, WorkloadSpec] = {}


def _add(info: WorkloadInfo, factory: Callable[[], Any], owner: Any,
         default: bool = False) -> None:
    if info.kind not in KINDS:
        raise ValueError(f"unknown workload kind {info.kind!r}; valid choices: {', '.join(KINDS)}")
    if info.kind == "task" and info.metric is None:
        raise ValueError(f"task workload {info.name!r} must declare its metric")
    old = _REGISTRY.get(info.name)
    if old is not None and old.owner is not owner:
        raise ValueError(f"workload {info.name!r} is already registered")
    _REGISTRY[info.name] = WorkloadSpec(info, factory, owner, default)


def register(
    name: str,
    *,
    description: str,
    kind: str = "timed",
    per_token: bool = False,
    last_position: bool = False,
    metric: MetricInfo | None = None,
    default: bool = False,
) -> Callable[[C], C]:
    """Class decorator adding a workload under ``name``; the class is built with no args.
    ``default``: the workload commands use when none is named (see ``default_workload``).

    A timed workload's instances have ``prepare(model, *, batch, seq_len, device, dtype,
    seed) -> Prepared``; the class gets ``name``, ``description`` and ``info`` set.
    """

    def deco(cls: C) -> C:
        info = WorkloadInfo(name, description, kind, per_token, last_position, metric)
        cls.name, cls.description, cls.info = name, description, info
        _add(info, lambda: cls(), cls, default)
        return cls

    return deco


def register_task(task_cls: C) -> C:
    """Add a task (a ``workloads.tasks.Task`` subclass) as a workload of kind "task"."""
    metric = MetricInfo(
        name=task_cls.metric,
        label=task_cls.metric_label or task_cls.metric,
        scale=task_cls.metric_scale,
        higher_is_better=task_cls.higher_is_better,
        log_scale=task_cls.metric_log_scale,
    )
    info = WorkloadInfo(task_cls.name, task_cls.description, "task", False,
                        task_cls.last_position, metric)  # fmt: skip
    _add(info, lambda: TaskWorkload(task_cls()), task_cls)
    return task_cls


def available() -> list[str]:
    """Names of all registered workloads, in registration order."""
    return list(_REGISTRY)


def default_workload() -> str:
    """The workload commands use when none is named: the first registered that declares
    ``default=True``, else the first timed one."""
    marked = [n for n, s in _REGISTRY.items() if s.default]
    timed = [n for n, s in _REGISTRY.items() if s.info.kind == "timed"]
    if not marked and not timed:
        raise ValueError("no timed workload is registered")
    return (marked or timed)[0]


def spec(name: str) -> WorkloadSpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown workload {name!r}; valid choices: {', '.join(available())}")
    return _REGISTRY[name]


def info(name: str) -> WorkloadInfo:
    return spec(name).info


def get(name: str) -> Any:
    """A workload object: ``prepare`` (timed) or ``run_task`` (task)."""
    return spec(name).factory()
