"""LMU + attention: parallel LMU layers and one global causal self-attention block.

The language-modelling hybrid of Chilkuri et al. (2021), "Language Modeling using LMUs:
10x Better Data Efficiency or Improved Scaling Compared to Transformers": the LMU layers
carry the long context in their Legendre memories in O(n log n); a single softmax
attention layer on top adds content-based global lookup. The paper compares the model
with and without that layer: ``attention=False`` is its LMU model without attention
(the LMU blocks, final norm and head only; O(n log n), O(1) inference state).

Here each LMU layer is the parallel LMU of ``parallel.py`` (memory by ``lmu_memory``;
hidden = output = d_model) in a pre-norm residual block with an MLP, and the attention
block is the transformer baseline's ``Block`` (SDPA, KV cache in ``step()``). No
positional encoding: the LMU memories already encode position.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from architectures.base import SequenceModel, check_input, check_positive_int
from architectures.blocks import ResidualBlock
from architectures.cost import Cost
from architectures.lmu import cost as lmu_cost
from architectures.lmu.parallel import ParallelLMU
from architectures.registry import register
from architectures.transformer import INITIAL_CACHE, Block, Transformer


@register(
    "lmu-attention",
    family="lmu",
    description=(
        "LMU language-model hybrid (Chilkuri et al. 2021): parallel LMU layers (FFT memory) "
        "+ one causal self-attention block"
    ),
    parallel_training=True,
    stepwise=True,
    time_complexity="O(n^2)",
    memory_complexity="O(n^2); flash O(n)",
    step_memory="O(n)",
)
class LMUAttention(SequenceModel):
    """Input Linear → ``n_layers`` residual parallel-LMU blocks → one attention block → head.

    ``step()`` state: ``{"lmu": [memory per layer], "attn": {"k", "v"}, "pos": int}``; the
    KV cache is written in place and doubled when full (consume each state once).
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        d_model: int = 64,
        n_layers: int = 2,
        memory_d: int = 1,
        order: int = 64,
        theta: float = 784.0,
        n_heads: int = 4,
        mlp_ratio: int = 2,
        memory_mode: str = "fft",
        attention: bool = True,
    ) -> None:
        super().__init__(input_size, output_size)
        self.d_model = check_positive_int("d_model", d_model)
        check_positive_int("n_layers", n_layers)
        check_positive_int("n_heads", n_heads)
        check_positive_int("mlp_ratio", mlp_ratio)
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.embed = nn.Linear(input_size, d_model)
        self.layers = nn.ModuleList(
            ResidualBlock(
                ParallelLMU(
                    d_model,
                    d_model,
                    memory_d=memory_d,
                    order=order,
                    theta=theta,
                    hidden_size=d_model,
                    output_layer=False,
                    mode=memory_mode,
                ),
                d_model,
                mlp_ratio,
                nn.LayerNorm,
            )
            for _ in range(n_layers)
        )
        self.attention = Block(d_model, n_heads, mlp_ratio * d_model) if attention else None
        self.norm_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, output_size)

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for layer in self.layers:
            h = layer(h)
        if self.attention is not None:
            h = self.attention(h)
        return self.head(self.norm_f(h))

    def last_output(self, x: torch.Tensor) -> torch.Tensor:
        """LMU blocks over every position; the attention with the last query only (or,
        without attention, the last block's MLP at the last position); the head once."""
        h = self.embed(x)
        if self.attention is None:
            for layer in self.layers[:-1]:
                h = layer(h)
            return self.head(self.norm_f(self.layers[-1].forward_last(h)))
        for layer in self.layers:
            h = layer(h)
        return self.head(self.norm_f(self.attention.forward_last(h)[:, 0]))

    def init_state(
        self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> dict[str, Any]:
        check_positive_int("batch", batch)
        ref = self.head.weight
        device = torch.device(device) if device is not None else ref.device
        dtype = dtype or ref.dtype
        shape = (batch, self.n_heads, INITIAL_CACHE, self.d_model // self.n_heads)
        memories = [layer.mixer.init_state(batch, device, dtype) for layer in self.layers]
        if self.attention is None:
            return {"lmu": memories, "attn": None, "pos": 0}
        cache = {key: torch.zeros(shape, device=device, dtype=dtype) for key in ("k", "v")}
        return {"lmu": memories, "attn": cache, "pos": 0}

    def step(self, x_t: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        check_input(x_t, self.input_size, rank=2)
        h = self.embed(x_t)
        memories = []
        for layer, m in zip(self.layers, state["lmu"], strict=True):
            h, m = layer.step(h, m)
            memories.append(m)
        pos, cache = state["pos"], state["attn"]
        if self.attention is not None:
            if pos >= cache["k"].shape[2]:
                Transformer.grow_cache(cache)
            h = self.attention.step(h.unsqueeze(1), cache, pos)[:, 0]
        return self.head(self.norm_f(h)), {"lmu": memories, "attn": cache, "pos": pos + 1}

    def cost(self, pass_: str, *, batch: int, n: int, itemsize: int) -> Cost:
        """Analytic FLOPs and bytes (``architectures/lmu/cost.py``)."""
        return lmu_cost.hybrid(self, pass_, batch, n, itemsize)
