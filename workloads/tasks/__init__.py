"""Task workloads: train a model on a task and record what it reaches, and how fast.

Each task is a workload of ``kind = "task"`` (the timed workloads are ``"timed"``): the
harness builds the model with the task's ``input_size``/``output_size``, then calls
``run_task``, which trains under the shared protocol (``train_loop``) and returns a
``TaskResult``. ``workloads.task_workload.TaskWorkload`` is the task as the harness sees
it; ``workloads/__init__`` registers the tasks below. Task options (``lr``, ``max_steps``,
``max_wall_s``, ``target``, ``data``, ...) travel in a cell's ``overrides`` beside the
adapter's keys; ``option_keys`` names them.
"""

from __future__ import annotations

from workloads.tasks.base import Task
from workloads.tasks.mackey_glass import MackeyGlass
from workloads.tasks.psdigits import PsDigits
from workloads.tasks.psmnist import PsMnist
from workloads.tasks.synthetic import Adding, Copy
from workloads.tasks.textlm import TextLM
from workloads.tasks.train_loop import CURVE_COLUMNS, TaskResult, train

TASKS: tuple[type[Task], ...] = (PsDigits, PsMnist, MackeyGlass, Copy, Adding, TextLM)

__all__ = ["CURVE_COLUMNS", "TASKS", "Task", "TaskResult", "train"]
