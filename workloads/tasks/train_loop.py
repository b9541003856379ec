"""The training protocol shared by every task, and time-to-target.

A fixed seed (model init is seeded by the caller; batches come from a generator seeded
here), AdamW, a budget of steps and of training wall-clock seconds (whichever ends
first), and evaluation on the held-out split at step 0, every ``eval_every`` steps or
``eval_every_s`` training seconds, and at the end. Evaluation time is not training time:
the curve's ``wall_s`` counts only the training steps (batch draw, forward, backward,
optimizer), so time-to-target compares how fast models learn, not how slowly they are
evaluated. ``clock`` is given by the harness (it synchronises the device), so the
workload never decides how it is timed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, astuple, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from workloads.tasks.base import Task, TaskData, TrainOptions


@dataclass(frozen=True)
class CurvePoint:
    """One evaluation: where training stood and what the held-out split scored."""

    step: int
    wall_s: float  # training seconds so far (evaluation excluded)
    tokens_seen: int
    metric: float | None  # the task's held-out metric (None: not finite)
    test_loss: float | None
    train_loss: float | None  # mean training loss since the previous evaluation

    @classmethod
    def from_row(cls, row: list[Any], columns: list[str] | None = None) -> CurvePoint:
        """A stored row (a record's ``metrics.curve``), by its ``curve_columns`` names."""
        names = columns or CURVE_COLUMNS
        by_name = dict(zip(names, row, strict=False))
        return cls(**{f.name: by_name.get(f.name) for f in fields(cls)})


CURVE_COLUMNS = [f.name for f in fields(CurvePoint)]


@dataclass
class TaskResult:
    """What a task run measured; ``metrics()`` is the record's ``metrics`` field, where the
    curve is stored as rows (lists) named by ``curve_columns``, as JSON wants."""

    task: str
    metric: str
    higher_is_better: bool
    target: float
    curve: list[CurvePoint] = field(default_factory=list)
    step_times_s: list[float] = field(default_factory=list)
    steps: int = 0
    tokens_seen: int = 0
    train_s: float = 0.0
    eval_s: float = 0.0
    stopped_by: str = ""  # "max_steps", "max_wall_s", "target" or "diverged"
    time_to_target_s: float | None = None
    steps_to_target: int | None = None
    tokens_to_target: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> float | None:
        return self.curve[-1].metric if self.curve else None

    def best(self) -> float | None:
        values = [p.metric for p in self.curve if p.metric is not None]
        if not values:
            return None
        return max(values) if self.higher_is_better else min(values)

    def metrics(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("step_times_s")
        d.update(curve=[list(astuple(p)) for p in self.curve], final=self.final,
                 best=self.best(), curve_columns=CURVE_COLUMNS)  # fmt: skip
        return d

    @classmethod
    def from_metrics(cls, m: dict[str, Any]) -> TaskResult:
        """Back from a record's ``metrics`` (rows become ``CurvePoint``s by column name)."""
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in m.items() if k in names and k != "curve"}
        columns = m.get("curve_columns") or CURVE_COLUMNS
        curve = [CurvePoint.from_row(r, columns) for r in m.get("curve") or []]
        return cls(curve=curve, **kw)

    def summary(self) -> str:
        final = "n/a" if self.final is None else f"{self.final:.4g}"
        reached = (f"target {self.target:g} at {self.time_to_target_s:.1f} s "
                   f"(step {self.steps_to_target})" if self.time_to_target_s is not None
                   else f"target {self.target:g} not reached")
        return (f"{self.metric} {final} after {self.steps} steps, {self.train_s:.1f} s "
                f"({self.stopped_by}); {reached}")


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None  # records are strict JSON: no NaN/inf


def evaluate(net: nn.Module, task: Task, data: TaskData, batch: int,
             device: torch.device, dtype: torch.dtype) -> tuple[float | None, float | None]:
    """``(metric, loss)`` on the whole test split, in batches of ``batch``."""
    net.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(data.test_x), batch):
            x = _to(data.test_x[i:i + batch], device, dtype)
            outs.append(task.reduce(task.outputs(net, x)).float().cpu())
    net.train()
    metric, loss = task.score(torch.cat(outs), data.test_y)
    return _finite(metric), _finite(loss)


def _to(t: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)


def log_spaced_steps(max_steps: int, points: int) -> set[int]:
    """About ``points`` steps spaced evenly on a log scale from 1 to ``max_steps`` (the
    small ones merge: steps are whole), so a loss-vs-tokens curve has points in every
    decade; none when ``points`` is 0."""
    if points <= 0:
        return set()
    return {int(round(s)) for s in np.geomspace(1, max_steps, points)}


def train(
    net: nn.Module,
    task: Task,
    data: TaskData,
    opts: TrainOptions,
    *,
    batch: int,
    seq_len: int,
    device: torch.device,
    dtype: torch.dtype,
    seed: int,
    clock: Callable[[], float] = time.perf_counter,
) -> TaskResult:
    """Train ``net`` on ``task`` within the budgets of ``opts``; the curve and time-to-target."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    res = TaskResult(task.name, task.metric, task.higher_is_better, opts.target,
                     options=asdict(opts), data=dict(data.info))
    train_losses: list[float] = []
    last_eval_step, last_eval_s = 0, 0.0
    log_steps = log_spaced_steps(opts.max_steps, opts.eval_log_points)

    def record_eval() -> bool:
        """Evaluate and add a curve point; False when the test loss is NaN or infinite."""
        nonlocal last_eval_step, last_eval_s
        t0 = time.perf_counter()
        metric, test_loss = evaluate(net, task, data, opts.eval_batch, device, dtype)
        res.eval_s += time.perf_counter() - t0
        train_loss = sum(train_losses) / len(train_losses) if train_losses else None
        res.curve.append(CurvePoint(
            step=res.steps, wall_s=res.train_s, tokens_seen=res.tokens_seen, metric=metric,
            test_loss=test_loss,
            train_loss=_finite(train_loss) if train_loss is not None else None,
        ))
        train_losses.clear()
        last_eval_step, last_eval_s = res.steps, res.train_s
        if (res.time_to_target_s is None and metric is not None
                and task.reached(metric, opts.target)):
            res.time_to_target_s = res.train_s
            res.steps_to_target = res.steps
            res.tokens_to_target = res.tokens_seen
        return test_loss is not None  # None: evaluate found it non-finite

    net.train()
    if not record_eval():
        res.stopped_by = "diverged"
    while res.stopped_by != "diverged":
        if res.steps >= opts.max_steps:
            res.stopped_by = "max_steps"
            break
        if res.train_s >= opts.max_wall_s:
            res.stopped_by = "max_wall_s"
            break
        if opts.stop_at_target and res.time_to_target_s is not None:
            res.stopped_by = "target"
            break
        t0 = clock()
        x, y = data.sample(batch, gen)
        x, y = _to(x, device, dtype), _to(y, device, torch.float32)
        loss = task.loss(task.outputs(net, x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if opts.grad_clip > 0:
            nn.utils.clip_grad_norm_(net.parameters(), opts.grad_clip)
        opt.step()
        value = loss.item()
        dt = clock() - t0
        res.step_times_s.append(dt)
        res.steps += 1
        res.train_s += dt
        res.tokens_seen += batch * seq_len
        train_losses.append(value)
        if not math.isfinite(value):
            res.stopped_by = "diverged"
            record_eval()
            break
        if (res.steps - last_eval_step >= opts.eval_every or res.steps in log_steps
                or res.train_s - last_eval_s >= opts.eval_every_s) and not record_eval():
            res.stopped_by = "diverged"  # a non-finite test loss stops the run too
            break
    if res.curve[-1].step != res.steps:
        record_eval()
    return res
