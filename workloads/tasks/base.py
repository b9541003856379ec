"""What a task is: data, a loss, a held-out metric, and the options of its training run.

A task decides the model's ``input_size``/``output_size`` (``io``), makes its data once
(``load``: a training sampler and a fixed test split), and scores the model's outputs
on the test split (``score``). The shared training protocol is in ``train_loop``.

Options are one frozen dataclass per task (``TrainOptions`` plus the task's own
fields); a suite sets them per grid with ``set = {lr = 3e-3, max_wall_s = 60}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class TrainOptions:
    """The training protocol every task shares (budgets are whichever comes first)."""

    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # max global gradient norm (0: no clipping)
    max_steps: int = 2000  # step budget
    max_wall_s: float = 60.0  # training wall-clock budget, seconds (evaluation excluded)
    eval_every: int = 100  # evaluate every this many steps ...
    eval_every_s: float = 10.0  # ... or after this many training seconds, whichever first
    eval_batch: int = 256  # test examples per forward pass during evaluation
    target: float = 0.0  # metric value that counts as reached (each task sets its own)
    stop_at_target: bool = False  # end training once the target is reached
    # -1: the run's seed. A seed >= 0 is the cell's own (model init and data order), and
    # being an option it is part of the cell's key: seeds of one model are separate cells
    seed: int = -1
    eval_log_points: int = 0  # > 0: evaluate at this many log-spaced steps too (to max_steps)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, task: str, d: dict[str, Any]) -> TrainOptions:
        """Options from ``set`` values, type-checked against each field's default."""
        defaults = cls()
        kw: dict[str, Any] = {}
        for key, value in d.items():
            if key not in cls.keys():
                raise ValueError(
                    f"unknown option {key!r} for task {task!r}; valid choices: "
                    f"{', '.join(cls.keys())}"
                )
            kw[key] = _coerce(task, key, value, getattr(defaults, key))
        opts = cls(**kw)
        opts.validate(task)
        return opts

    def validate(self, task: str) -> None:
        for name in ("max_steps", "eval_every", "eval_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{task}: {name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("lr", "max_wall_s", "eval_every_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{task}: {name} must be > 0, got {getattr(self, name)!r}")
        for name in ("weight_decay", "grad_clip", "eval_log_points"):
            if getattr(self, name) < 0:
                raise ValueError(f"{task}: {name} must be >= 0, got {getattr(self, name)!r}")
        if self.seed < -1:
            raise ValueError(f"{task}: seed must be >= 0 (or -1: the run's), got {self.seed!r}")

    def cell_seed(self, run_seed: int) -> int:
        """The seed this cell trains with: its own when given, else the run's."""
        return self.seed if self.seed >= 0 else run_seed


def _coerce(task: str, key: str, value: Any, default: Any) -> Any:
    kind = type(default)
    ok = (
        isinstance(value, bool) if kind is bool
        else isinstance(value, int) and not isinstance(value, bool) if kind is int
        else isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float
        else isinstance(value, kind)
    )
    if not ok:
        raise ValueError(
            f"option {key!r} of task {task!r} must be {kind.__name__}, got {value!r}"
        )
    return float(value) if kind is float else value


Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class TaskData:
    """A task's data: ``sample(batch, generator)`` draws a training batch (CPU tensors);
    ``test_x``/``test_y`` are the fixed held-out split; ``info`` describes the data."""

    sample: Callable[[int, torch.Generator], Batch]
    test_x: torch.Tensor
    test_y: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


class EpochSampler:
    """Batches from a fixed training set, reshuffled every epoch by the run's generator."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y
        self._order = torch.empty(0, dtype=torch.long)
        self._pos = 0

    def __call__(self, batch: int, gen: torch.Generator) -> Batch:
        idx = []
        while len(idx) < batch:
            if self._pos >= len(self._order):
                self._order = torch.randperm(len(self.x), generator=gen)
                self._pos = 0
            take = self._order[self._pos:self._pos + batch - len(idx)]
            self._pos += len(take)
            idx.extend(take.tolist())
        i = torch.tensor(idx)
        return self.x[i], self.y[i]


class Task:
    """Base of the tasks. Subclasses set the class attributes and override what differs."""

    name: str = ""
    description: str = ""
    metric: str = ""  # name of the held-out metric, e.g. "accuracy", "nrmse", "bits_per_byte"
    higher_is_better: bool = True
    metric_label: str = ""  # how reports label it, e.g. "test accuracy (%)"
    metric_scale: float = 1.0  # shown value = value × scale (accuracy in %: 100)
    metric_log_scale: bool = False  # best shown on a log axis (spans decades)
    # reads only the model's last output: trained and scored through ``forward_last``
    # (loss/reduce/score then get ``(batch, output_size)``), the classifier's cheap path
    last_position: bool = False
    Options: type[TrainOptions] = TrainOptions

    def options(self, d: dict[str, Any]) -> TrainOptions:
        return self.Options.from_dict(self.name, d)

    def check(self, seq_len: int, batch: int, opts: TrainOptions) -> None:
        """Cheap validation before anything runs (no data is loaded): raise ValueError."""

    def io(self, opts: TrainOptions) -> tuple[int, int]:
        """``(input_size, output_size)`` of the model this task trains."""
        raise NotImplementedError

    def load(self, seq_len: int, opts: TrainOptions) -> TaskData:
        raise NotImplementedError

    def wrap(self, model: nn.Module, opts: TrainOptions) -> nn.Module:
        """The module trained: the model, or the model behind a task-owned input layer."""
        return model

    def outputs(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """What ``loss`` and ``reduce`` get: the whole output, or the last position's
        through the model's ``forward_last`` (for a wrapper without one: ``[:, -1]``)."""
        if not self.last_position:
            return net(x)
        forward_last = getattr(net, "forward_last", None)
        return forward_last(x) if forward_last is not None else net(x)[:, -1]

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reduce(self, out: torch.Tensor) -> torch.Tensor:
        """The part of the output evaluation keeps (e.g. the last position)."""
        return out

    def score(self, out: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """``(metric, loss)`` over the whole test split (``out`` from ``reduce``)."""
        raise NotImplementedError

    def reached(self, value: float, target: float) -> bool:
        return value >= target if self.higher_is_better else value <= target


def last_position(out: torch.Tensor) -> torch.Tensor:
    return out[:, -1]
