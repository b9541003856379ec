"""The contract every adapter fulfils: an ``nn.Module`` over ``(batch, n, input_size)``.

Adapters know models, never measurement. Each one maps a whole sequence in parallel
(``forward``), gives the output at the last position alone (``forward_last``: what a
classifier reads) and, when it can, one token at a time (``step``) from ``init_state``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from architectures.cost import Cost


@dataclass(frozen=True)
class AdapterInfo:
    """Static facts about an adapter, shown by ``harness list`` and stored with records."""

    name: str
    family: str
    description: str
    parallel_training: bool  # can the whole sequence be trained without a loop over time?
    stepwise: bool  # does it implement step() for token-by-token inference?
    time_complexity: str  # training compute in sequence length n, e.g. "O(n log n)"
    memory_complexity: str  # training activation memory in n
    step_memory: str = "O(1)"  # inference state size in n (a KV cache grows: "O(n)")
    # the adapter whose forward_last this one runs (the same code: one computation, shown
    # as such beside last-position workloads such as classify)
    last_output_of: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_input(x: Any, input_size: int, rank: int = 3) -> None:
    """Raise ValueError naming what is wrong with an input tensor."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"input must be a torch.Tensor, got {type(x).__name__}")
    if not (x.is_floating_point() or x.is_complex()):
        raise ValueError(
            f"input dtype {x.dtype} is not supported; valid choices: floating-point dtypes "
            "(float32, float64, bfloat16, float16)"
        )
    shape = "(batch, n, input_size)" if rank == 3 else "(batch, input_size)"
    if x.dim() != rank:
        raise ValueError(f"input must have rank {rank} {shape}, got shape {tuple(x.shape)}")
    if x.shape[-1] != input_size:
        raise ValueError(
            f"input feature size {x.shape[-1]} does not match input_size={input_size} "
            f"(shape {tuple(x.shape)}, expected {shape})"
        )


def state_nbytes(state: Any) -> int:
    """Bytes held by all tensors in a (nested) state: the streaming memory of a model."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_nbytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_nbytes(v) for v in state)
    return 0


class SequenceModel(nn.Module):
    """Base class of adapters: validates input, then calls ``forward_sequence``.

    Subclasses implement ``forward_sequence(x)`` and, if ``info.stepwise``,
    ``init_state(batch, device, dtype)`` and ``step(x_t, state)``. They may override
    ``last_output(x)`` where the last position costs less than the whole sequence.
    """

    info: AdapterInfo  # set by @register

    def __init__(self, input_size: int, output_size: int) -> None:
        super().__init__()
        self.input_size = check_positive_int("input_size", input_size)
        self.output_size = check_positive_int("output_size", output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size)
        return self.forward_sequence(x)

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward_last(self, x: torch.Tensor) -> torch.Tensor:
        """The output at the last position, ``(batch, output_size)``.

        Equal to ``forward(x)[:, -1]`` (the contract tests hold every adapter to that);
        a last-step classifier (``classify``, psMNIST) needs nothing else, and some
        models compute it far more cheaply than the whole sequence.
        """
        check_input(x, self.input_size)
        return self.last_output(x)

    def last_output(self, x: torch.Tensor) -> torch.Tensor:
        """``forward_last`` after validation; by default the full path's last position."""
        return self.forward_sequence(x)[:, -1]

    def init_state(
        self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not support step()")

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """One token: ``x_t`` is ``(batch, input_size)``; returns ``(y_t, new_state)``."""
        raise NotImplementedError(f"{type(self).__name__} does not support step()")

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def cost(self, pass_: str, *, batch: int, n: int, itemsize: int) -> Cost | None:
        """Analytic FLOPs and bytes of one pass (``architectures.cost``: ``"sequence"``,
        ``"last"``, or ``"step"`` as the n-th token) at ``batch``, in a dtype of
        ``itemsize`` bytes; None where the adapter declares no formula (never 0), so a
        record says "unknown" rather than "free". Adapters override it beside their code."""
        return None
