"""What is done with a model, never how it is timed.

A workload builds deterministic inputs for (model, batch, seq_len, device, dtype, seed)
and returns a ``Prepared``: a zero-argument callable that performs one unit of work
(what the timer times) and how many tokens that unit processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from architectures import SequenceModel
from architectures.cost import Cost


@dataclass
class Prepared:
    run: Callable[[], Any]  # one unit of work
    tokens: int  # tokens processed by one call of ``run``
    inputs: tuple[torch.Tensor, ...] = ()  # what ``run`` reads: it must not change them
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. state_bytes after a stream
    # whether counting run()'s FLOPs (torch.utils.flop_counter) is meaningful and cheap; the
    # runner counts them on the first call, which it makes anyway
    count_flops: bool = True
    # the analytic FLOPs and bytes of one run() call (``workloads.cost``), computed when
    # asked, outside the timed region; None: no formula for this workload or adapter
    cost: Callable[[], Cost | None] | None = None


class Workload(Protocol):
    name: str
    description: str

    def prepare(
        self,
        model: SequenceModel,
        *,
        batch: int,
        seq_len: int,
        device: torch.device,
        dtype: torch.dtype,
        seed: int,
    ) -> Prepared: ...


class OutputContract(ValueError):
    """An adapter's output breaks the ``SequenceModel`` contract: a floating tensor of the
    input's dtype, ``(batch, n, output_size)`` from ``forward``, ``(batch, output_size)``
    from ``forward_last`` and ``step``. Timing it would time something else than a model."""


class FirstCall:
    """Checks the first output passed through it against the contract (``what`` returned
    a tensor of ``shape`` and ``dtype``); later outputs pass for one attribute test."""

    def __init__(self, what: str, shape: tuple[int, ...], dtype: torch.dtype) -> None:
        self.what, self.shape, self.dtype = what, shape, dtype
        self.checked = False

    def __call__(self, out: Any) -> Any:
        if not self.checked:
            self.checked = True
            expected = f"a {str(self.dtype).removeprefix('torch.')} tensor of shape {self.shape}"
            if not isinstance(out, torch.Tensor):
                raise OutputContract(f"{self.what} returned {type(out).__name__}; "
                                     f"expected {expected}")
            if tuple(out.shape) != self.shape or out.dtype != self.dtype:
                raise OutputContract(
                    f"{self.what} returned a {str(out.dtype).removeprefix('torch.')} tensor "
                    f"of shape {tuple(out.shape)}; expected {expected}")
        return out


def make_inputs(
    model: SequenceModel, batch: int, seq_len: int, device: torch.device, dtype: torch.dtype,
    seed: int,
) -> torch.Tensor:
    """Deterministic standard-normal inputs ``(batch, seq_len, input_size)``."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(batch, seq_len, model.input_size, generator=g, dtype=torch.float32)
    return x.to(device=device, dtype=dtype)


def training_step(model: SequenceModel, loss: Callable[[], torch.Tensor], tokens: int,
                  inputs: tuple[torch.Tensor, ...],
                  cost: Callable[[], Cost | None] | None = None) -> Prepared:
    """One AdamW step (lr 1e-4) on ``loss()``: what ``train`` and ``classify`` share, so the
    two differ only in their loss. The model is put in training mode first. ``cost``: the
    step's analytic cost (``workloads.cost.training_cost``)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def run() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        value = loss()
        value.backward()
        opt.step()  # its foreach kernels have no FLOP formula: counts are fwd + bwd
        return value

    return Prepared(run=run, tokens=tokens, inputs=inputs, cost=cost)
