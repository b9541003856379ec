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


@dataclass
class Prepared:
    run: Callable[[], Any]  # one unit of work
    tokens: int  # tokens processed by one call of ``run``
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. state_bytes after a stream
    # whether counting run()'s FLOPs (torch.utils.flop_counter) is meaningful and cheap; the
    # runner counts them on the first call, which it makes anyway
    count_flops: bool = True


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


def make_inputs(
    model: SequenceModel, batch: int, seq_len: int, device: torch.device, dtype: torch.dtype,
    seed: int,
) -> torch.Tensor:
    """Deterministic standard-normal inputs ``(batch, seq_len, input_size)``."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(batch, seq_len, model.input_size, generator=g, dtype=torch.float32)
    return x.to(device=device, dtype=dtype)


def training_step(model: SequenceModel, loss: Callable[[], torch.Tensor], tokens: int) -> Prepared:
    """One AdamW step (lr 1e-4) on ``loss()``: what ``train`` and ``classify`` share, so the
    two differ only in their loss. The model is put in training mode first."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def run() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        value = loss()
        value.backward()
        opt.step()  # its foreach kernels have no FLOP formula: counts are fwd + bwd
        return value

    return Prepared(run=run, tokens=tokens)
