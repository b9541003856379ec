"""Linear-attention transformers: causal linear attention and DeltaNet.

Both replace softmax attention in a pre-norm transformer block (attention, then a 4×
MLP) with a recurrence over a ``(head_dim, head_dim)`` matrix state per head, so training
is chunk-parallel in O(n) and inference is an O(1)-state RNN:

* ``linear-attention`` (Katharopoulos et al. 2020): feature map ``φ = elu + 1`` on q and
  k, ``o_t = φ(q_t)ᵀ S_t / φ(q_t)ᵀ z_t``; no positional encoding (as in the paper).
* ``deltanet`` (Schlag et al. 2021, parallelised by Yang et al. 2024): the delta rule
  ``S_t = S_{t-1} + β_t k_t (v_t - S_{t-1}ᵀ k_t)ᵀ`` with L2-normalised SiLU q, k, a
  short causal convolution on q, k, v and a per-head RMSNorm on the output, as in
  flash-linear-attention's ``DeltaNet`` layer.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from architectures.base import check_positive_int
from architectures.blocks import Mixer, ResidualStack, ShortConv
from architectures.cost import Cost
from architectures.linear_attention import cost as la_cost
from architectures.linear_attention.chunked import (
    DEFAULT_CHUNK_SIZE,
    delta_rule,
    linear_attention,
)
from architectures.registry import register

EPS = 1e-6  # linear attention's denominator guard, identical in forward and step


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``(b, n, d)`` → ``(b, heads, n, d/heads)``."""
    b, n, d = x.shape
    return x.view(b, n, n_heads, d // n_heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, h, n, dh = x.shape
    return x.transpose(1, 2).reshape(b, n, h * dh)


def _check_heads(d_model: int, n_heads: int) -> None:
    check_positive_int("n_heads", n_heads)
    if d_model % n_heads:
        raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")


def phi(x: torch.Tensor) -> torch.Tensor:
    """Katharopoulos et al.'s positive feature map ``elu(x) + 1``."""
    return F.elu(x) + 1


class LinearAttentionMixer(Mixer):
    def __init__(self, d_model: int, n_heads: int, chunk_size: int, use_kernel: bool) -> None:
        super().__init__()
        _check_heads(d_model, n_heads)
        self.n_heads, self.chunk_size, self.use_kernel = n_heads, chunk_size, use_kernel
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))
        o = linear_attention(phi(q), phi(k), v, self.chunk_size, EPS, self.use_kernel)
        return self.proj(_merge(o))

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """``[S | z]``: ``(batch, heads, head_dim, head_dim + 1)``, the normaliser as a column."""
        dh = self.proj.in_features // self.n_heads
        return torch.zeros(batch, self.n_heads, dh, dh + 1, device=device, dtype=dtype)

    def step(self, x_t: torch.Tensor, S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = x_t.shape[0]
        q, k, v = (t.view(b, self.n_heads, -1) for t in self.qkv(x_t).chunk(3, dim=-1))
        v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
        S = S + phi(k).unsqueeze(-1) * v1.unsqueeze(-2)
        o = (phi(q).unsqueeze(-1) * S).sum(-2)
        o = o[..., :-1] / (o[..., -1:] + EPS)
        return self.proj(o.reshape(b, -1)), S

    def cost(self, pass_: str, *, batch: int, n: int, itemsize: int) -> Cost:
        """Analytic FLOPs and bytes (``architectures/linear_attention/cost.py``)."""
        return la_cost.linear_attention(self, pass_, batch, n, itemsize)


class DeltaNetMixer(Mixer):
    def __init__(
        self, d_model: int, n_heads: int, d_conv: int, chunk_size: int, use_kernel: bool
    ) -> None:
        super().__init__()
        _check_heads(d_model, n_heads)
        self.n_heads, self.chunk_size, self.use_kernel = n_heads, chunk_size, use_kernel
        self.head_dim = d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.conv = ShortConv(3 * d_model, d_conv)
        self.beta = nn.Linear(d_model, n_heads, bias=False)
        self.o_norm = nn.RMSNorm(self.head_dim, eps=1e-5)
        self.proj = nn.Linear(d_model, d_model, bias=False)

    def _qkv(self, mixed: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """q, k (L2-normalised, q scaled by head_dim^-1/2), v from the conv output."""
        q, k, v = F.silu(mixed).chunk(3, dim=-1)
        q = F.normalize(q.unflatten(-1, (self.n_heads, -1)), dim=-1) * self.head_dim**-0.5
        k = F.normalize(k.unflatten(-1, (self.n_heads, -1)), dim=-1)
        return q, k, v.unflatten(-1, (self.n_heads, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (t.transpose(1, 2) for t in self._qkv(self.conv(self.qkv(x))))
        beta = torch.sigmoid(self.beta(x)).transpose(1, 2)  # (b, heads, n)
        o = delta_rule(q, k, v, beta, self.chunk_size, self.use_kernel)
        return self.proj(_merge(self.o_norm(o)))

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        S = torch.zeros(batch, self.n_heads, self.head_dim, self.head_dim, device=device,
                        dtype=dtype)  # fmt: skip
        return {"conv": self.conv.init_state(batch, device, dtype), "S": S}

    def step(self, x_t: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        mixed, window = self.conv.step(self.qkv(x_t), state["conv"])
        q, k, v = self._qkv(mixed)  # (b, heads, head_dim)
        beta = torch.sigmoid(self.beta(x_t)).unsqueeze(-1)
        S = state["S"]
        retrieved = (k.unsqueeze(-1) * S).sum(-2)
        S = S + k.unsqueeze(-1) * (beta * (v - retrieved)).unsqueeze(-2)
        o = self.o_norm((q.unsqueeze(-1) * S).sum(-2))
        return self.proj(o.flatten(1)), {"conv": window, "S": S}

    def cost(self, pass_: str, *, batch: int, n: int, itemsize: int) -> Cost:
        """Analytic FLOPs and bytes (``architectures/linear_attention/cost.py``)."""
        return la_cost.deltanet(self, pass_, batch, n, itemsize)


_COMMON = dict(
    family="linear-attention",
    parallel_training=True,
    stepwise=True,
    time_complexity="O(n)",
    memory_complexity="O(n)",
    step_memory="O(1)",
)


@register(
    "linear-attention",
    description=(
        "causal linear attention (Katharopoulos et al. 2020), elu+1 features, chunked "
        "(chunk c=64); flash-linear-attention kernel when installed"
    ),
    **_COMMON,
)
class LinearAttention(ResidualStack):
    """Pre-norm transformer blocks with causal linear attention and a 4× MLP."""

    def __init__(
        self,
        input_size: int,
        output_size: int,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        use_kernel: bool = True,
    ) -> None:
        super().__init__(input_size, output_size)
        check_positive_int("n_layers", n_layers)
        check_positive_int("chunk_size", chunk_size)
        mixers = [
            LinearAttentionMixer(d_model, n_heads, chunk_size, use_kernel) for _ in range(n_layers)
        ]
        self._build(d_model, mixers, mlp_ratio=4)


@register(
    "deltanet",
    description=(
        "DeltaNet (Schlag 2021; Yang et al. 2024): delta-rule linear attention, chunked WY "
        "form (chunk c=64); flash-linear-attention kernel when installed"
    ),
    **_COMMON,
)
class DeltaNet(ResidualStack):
    """Pre-norm transformer blocks with delta-rule attention and a 4× MLP."""

    def __init__(
        self,
        input_size: int,
        output_size: int,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        d_conv: int = 4,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        use_kernel: bool = True,
    ) -> None:
        super().__init__(input_size, output_size)
        check_positive_int("n_layers", n_layers)
        check_positive_int("chunk_size", chunk_size)
        mixers = [
            DeltaNetMixer(d_model, n_heads, d_conv, chunk_size, use_kernel) for _ in range(n_layers)
        ]
        self._build(d_model, mixers, mlp_ratio=4)
