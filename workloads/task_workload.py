"""A task as a workload: what the harness dispatches on for a cell of kind "task".

Apart from ``workloads.tasks`` so that the registry can import it at the top: the tasks
themselves know nothing of the registry (``workloads/__init__`` registers them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from workloads.tasks.base import Task, TaskData, TrainOptions
from workloads.tasks.train_loop import TaskResult, log_spaced_steps, train


class TaskWorkload:
    """A task as a workload: what the harness dispatches on (``kind == "task"``)."""

    kind = "task"

    def __init__(self, task: Task) -> None:
        self.task = task
        self.name = task.name
        self.description = task.description

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

    @staticmethod
    def evaluations(opts: TrainOptions) -> int:
        """How many held-out evaluations a cell makes at most: at the start, every
        ``eval_every`` steps, at the log-spaced steps and at the end (the run's ETA)."""
        regular = opts.max_steps // max(opts.eval_every, 1)
        return 2 + regular + len(log_spaced_steps(opts.max_steps, opts.eval_log_points))

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
