"""Mamba (Gu & Dao 2023): a stack of selective state-space blocks, no attention, no MLP.

One block, for ``x (batch, n, d_model)`` and ``d_inner = expand · d_model``::

    x_in, z = in_proj(x)                           two (batch, n, d_inner) branches
    u = silu(causal_depthwise_conv(x_in))          d_conv taps
    Δ, B, C = softplus(dt_proj(·)), ·, ·  from x_proj(u)   input-dependent (selective)
    y = selective_scan(u, Δ, A = -exp(A_log), B, C, D)     diagonal A, d_state per channel
    out = out_proj(y ⊙ silu(z))

Initialisation follows ``mamba_ssm``'s ``Mamba`` module (S4D-real A = -[1..d_state],
Δ's bias so that softplus(bias) is log-uniform in [dt_min, dt_max], D = 1).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from architectures.base import check_positive_int
from architectures.blocks import Mixer, ResidualStack, ShortConv, rms_norm
from architectures.cost import Cost
from architectures.mamba import cost as mamba_cost
from architectures.mamba.scan import selective_scan, softplus_inverse
from architectures.registry import register

DT_MIN, DT_MAX = 1e-3, 1e-1


class MambaMixer(Mixer):
    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        use_kernel: bool = True,
    ) -> None:
        super().__init__()
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.use_kernel = use_kernel
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv = ShortConv(self.d_inner, d_conv)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        nn.init.uniform_(self.dt_proj.weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        log_dt = torch.rand(self.d_inner) * (math.log(DT_MAX) - math.log(DT_MIN))
        dt = torch.exp(log_dt + math.log(DT_MIN)).clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(softplus_inverse(dt))
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner))

    def _selection(self, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Δ (softplus-ed), B, C from the conv output ``u (..., d_inner)``."""
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.softplus(self.dt_proj(dt)), B, C

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_in, z = self.in_proj(x).chunk(2, dim=-1)
        u = F.silu(self.conv(x_in))
        delta, B, C = self._selection(u)
        A = -torch.exp(self.A_log)
        y = selective_scan(u, delta, A, B, C, self.D, use_kernel=self.use_kernel)
        return self.out_proj(y * F.silu(z))

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        h = torch.zeros(batch, self.d_inner, self.d_state, device=device, dtype=dtype)
        return {"conv": self.conv.init_state(batch, device, dtype), "ssm": h}

    def step(self, x_t: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        x_in, z = self.in_proj(x_t).chunk(2, dim=-1)
        c, window = self.conv.step(x_in, state["conv"])
        u = F.silu(c)
        delta, B, C = self._selection(u)
        dt = delta.unsqueeze(-1)  # (b, d_inner, 1)
        h = torch.exp(dt * -torch.exp(self.A_log)) * state["ssm"] + dt * B[:, None] * u[..., None]
        y = (h * C[:, None]).sum(-1) + self.D * u
        return self.out_proj(y * F.silu(z)), {"conv": window, "ssm": h}

    def cost(self, pass_: str, *, batch: int, n: int, itemsize: int) -> Cost:
        """Analytic FLOPs and bytes (``architectures/mamba/cost.py``)."""
        return mamba_cost.mixer(self, pass_, batch, n, itemsize)


@register(
    "mamba",
    family="ssm",
    description=(
        "Mamba (Gu & Dao 2023) selective SSM blocks; parallel odd-even scan in PyTorch, "
        "mamba-ssm CUDA kernel when installed"
    ),
    parallel_training=True,
    stepwise=True,
    time_complexity="O(n)",
    memory_complexity="O(n)",
    step_memory="O(1)",
)
class Mamba(ResidualStack):
    """``n_layers`` pre-RMSNorm residual Mamba blocks between an input Linear and a head."""

    def __init__(
        self,
        input_size: int,
        output_size: int,
        d_model: int = 64,
        n_layers: int = 2,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        use_kernel: bool = True,
    ) -> None:
        super().__init__(input_size, output_size)
        check_positive_int("n_layers", n_layers)
        for key, value in {"d_state": d_state, "d_conv": d_conv, "expand": expand}.items():
            check_positive_int(key, value)
        if dt_rank is not None:
            check_positive_int("dt_rank", dt_rank)
        mixers = [
            MambaMixer(d_model, d_state, d_conv, expand, dt_rank, use_kernel)
            for _ in range(n_layers)
        ]
        self._build(d_model, mixers, mlp_ratio=0, norm=rms_norm)
