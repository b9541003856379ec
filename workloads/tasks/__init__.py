"""Task workloads: train a model on a task and record what it reaches, and how fast.

Each task is a workload of ``kind = "task"`` (the timed workloads are ``"timed"``): the
harness builds the model with the task's ``input_size``/``output_size``, then calls
``run_task``, which trains under the shared protocol (``train_loop``) and returns a
``TaskResult``. Task options (``lr``, ``max_steps``, ``max_wall_s``, ``target``, ``data``,
...) travel in a cell's ``overrides`` beside the adapter's keys; ``option_keys`` names them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from workloads.tasks.base import Task, TaskData, TrainOptions
from workloads.tasks.mackey_glass import MackeyGlass
from workloads.tasks.psdigits import PsDigits
from workloads.tasks.psmnist import PsMnist
from workloads.tasks.synthetic import Adding, Copy
from workloads.tasks.textlm import TextLM
from workloads.tasks.train_loop import CURVE_COLUMNS, TaskResult, train

TASKS: tuple[type[Task], ...] = (PsDigits, PsMnist, MackeyGlass, Copy, Adding, TextLM)


class TaskWorkload:
    """A task as a workload: what the harness dispatches on (``kind == "task"``)."""

    kind = "task"

    def __init__(self, task: Task) -> None:
        self.task = task
        self.name = task.name
        self.description = task.description

    @property
    def info(self) -> Any:
        """The registry's declaration of this task (``workloads.info``)."""
        from workloads.registry import info

        return info(self.name)

    @property
    def option_keys(self) -> tuple[str, ...]:
        return self.task.Options.keys()

    def split(self, overrides: dict[str, Any]) -> tuple[TrainOptions, dict[str, Any]]:
        """``(task options, adapter overrides)`` from a cell's overrides."""
        own = {k: v for k, v in overrides.items() if k in self.option_keys}
        rest = {k: v for k, v in overrides.items() if k not in self.option_keys}
        return self.task.options(own), rest

    def check(self, *, seq_len: int, batch: int, options: dict[str, Any]) -> None:
        """Raise ValueError before anything runs (bad options, missing data files)."""
        opts, _ = self.split(options)
        self.task.check(seq_len, batch, opts)

    def io(self, opts: TrainOptions) -> dict[str, int]:
        input_size, output_size = self.task.io(opts)
        return {"input_size": input_size, "output_size": output_size}

    def run_task(
        self, model: nn.Module, opts: TrainOptions, *, batch: int, seq_len: int,
        device: torch.device, dtype: torch.dtype, seed: int,
        clock: Callable[[], float] = time.perf_counter,
    ) -> tuple[TaskResult, int]:
        """Train ``model`` (already on ``device``/``dtype``); ``(result, trained params)``."""
        self.task.check(seq_len, batch, opts)
        data: TaskData = self.task.load(seq_len, opts)
        net = self.task.wrap(model, opts).to(device=device, dtype=dtype)
        params = sum(p.numel() for p in net.parameters())
        result = train(net, self.task, data, opts, batch=batch, seq_len=seq_len, device=device,
                       dtype=dtype, seed=seed, clock=clock)
        return result, params


def task_workloads() -> list[TaskWorkload]:
    return [TaskWorkload(cls()) for cls in TASKS]


def _register_builtin_tasks() -> None:
    from workloads.registry import register_task

    for cls in TASKS:
        register_task(cls)


_register_builtin_tasks()


__all__ = ["CURVE_COLUMNS", "TASKS", "Task", "TaskResult", "TaskWorkload", "task_workloads",
           "train"]
