"""Causal transformer baseline: a pre-norm decoder stack with a KV cache for step().

Attention is ``F.scaled_dot_product_attention(is_causal=True)``, so PyTorch picks the
fastest kernel it has (flash / memory-efficient on GPU keep activation memory O(n); the
math fallback, used on CPU, materialises the n×n scores). Positions are sinusoidal,
computed on the fly, so any length and any step position work.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from architectures import cost as C
from architectures.base import SequenceModel, check_input, check_positive_int
from architectures.cost import Cost
from architectures.registry import register

INITIAL_CACHE = 16  # KV-cache slots allocated by init_state; doubled when full


def sinusoidal_positions(
    start: int, length: int, d_model: int, device: Any = None, dtype: Any = None
) -> torch.Tensor:
    """(length, d_model) encodings of positions start..start+length-1 (Vaswani et al.)."""
    pos = torch.arange(start, start + length, device=device, dtype=torch.float64)
    i = torch.arange(0, d_model, 2, device=device, dtype=torch.float64)
    angle = pos[:, None] / (10000.0 ** (i / d_model))
    pe = torch.zeros(length, d_model, device=device, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe.to(dtype or torch.get_default_dtype())


class Block(nn.Module):
    """Pre-norm block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, d = x.shape
        qkv = self.qkv(self.ln1(x)).view(b, n, 3, self.n_heads, d // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (b, heads, n, head_dim)
        return q, k, v

    def _finish(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        b, _, n, _ = a.shape
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, -1))
        return x + self.mlp(self.ln2(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(x)
        return self._finish(x, F.scaled_dot_product_attention(q, k, v, is_causal=True))

    def forward_last(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(x)[:, -1:]`` from the last query alone: keys and values for every
        position, one query row (it sees every key, so no mask), the MLP once."""
        q, k, v = self._heads(x)
        a = F.scaled_dot_product_attention(q[:, :, -1:], k, v)
        return self._finish(x[:, -1:], a)

    def step(self, x: torch.Tensor, cache: dict[str, torch.Tensor], pos: int) -> torch.Tensor:
        """x (b, 1, d); writes this token's K, V into ``cache`` at ``pos``."""
        q, k, v = self._heads(x)
        cache["k"][:, :, pos] = k[:, :, 0]
        cache["v"][:, :, pos] = v[:, :, 0]
        keys, values = cache["k"][:, :, : pos + 1], cache["v"][:, :, : pos + 1]
        return self._finish(x, F.scaled_dot_product_attention(q, keys, values))

    def cost(self, pass_: str, *, batch: int, n: int, itemsize: int) -> Cost:
        """Analytic FLOPs and bytes of ``forward`` (``SEQUENCE``), ``forward_last``
        (``LAST``) or ``step`` (``STEP``): ``block_cost``."""
        d_ff = self.mlp[0].out_features
        return block_cost(pass_, batch, n, self.qkv.in_features, self.n_heads, d_ff, itemsize)


def positions_cost(n: int, d_model: int, s: int) -> Cost:
    """``sinusoidal_positions`` for ``n`` positions: built in float64 (a divide, a sine
    and a cosine per pair of columns), then cast to the cell's dtype."""
    half = n * d_model / 2
    return Cost(3 * half + d_model, 8 * (n + 7 * half + d_model) + n * d_model * (8 + s))


def block_cost(pass_: str, batch: int, n: int, d: int, heads: int, d_ff: int,
               s: int) -> Cost:
    """One ``Block``: ``forward`` (``SEQUENCE``, causal attention over ``n(n+1)/2``
    pairs), ``forward_last`` (``LAST``: every key and value, the last query, the rest on
    the last position) or ``step`` (``STEP``: the n-th token against n cached keys)."""
    C.check_pass(pass_)
    rows = batch if pass_ == C.STEP else batch * n  # rows of q, k, v
    out = batch if pass_ in (C.LAST, C.STEP) else rows  # rows after the attention
    heads_in = C.layer_norm(rows, d, s) + C.linear(rows, d, 3 * d, s)
    if pass_ == C.SEQUENCE:
        attn = C.attention(batch * heads, C.causal_pairs(n), n, n, d // heads, s)
    else:  # one query per sequence, every key (the cache holds n of them in a step)
        attn = C.attention(batch * heads, n, 1, n, d // heads, s)
    if pass_ == C.STEP:  # this token's k and v written into the cache
        attn = attn + C.copy(2 * batch * d, s)
    finish = (C.copy(out * d, s) + C.linear(out, d, d, s)  # heads merged, projected
              + C.pointwise(out * d, s, operands=3) + C.layer_norm(out, d, s)
              + C.mlp(out, d, d_ff, s) + C.pointwise(out * d, s, operands=3))
    return heads_in + attn + finish


@register(
    "transformer",
    family="transformer",
    description="causal pre-norm decoder, SDPA attention, sinusoidal positions, KV cache",
    parallel_training=True,
    stepwise=True,
    time_complexity="O(n^2)",
    memory_complexity="O(n^2); flash O(n)",
    step_memory="O(n)",
)
class Transformer(SequenceModel):
    """Input Linear → d_model, + sinusoidal positions, pre-norm blocks, final norm, head.

    ``step()`` state is ``{"layers": [{"k", "v"}, ...], "pos": int}``; the caches are
    written in place and doubled when full, so a state is consumed by ``step()``
    (do not step twice from the same state).
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        d_ff: int | None = None,
    ) -> None:
        super().__init__(input_size, output_size)
        self.d_model = check_positive_int("d_model", d_model)
        self.n_layers = check_positive_int("n_layers", n_layers)
        self.n_heads = check_positive_int("n_heads", n_heads)
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        if d_model % 2:
            raise ValueError(f"d_model={d_model} must be even (sinusoidal positions)")
        self.d_ff = check_positive_int("d_ff", 4 * d_model if d_ff is None else d_ff)
        self.embed = nn.Linear(input_size, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, self.d_ff) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, output_size)

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        h = self.embed(x) + sinusoidal_positions(0, n, self.d_model, x.device, x.dtype)
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_f(h))

    def last_output(self, x: torch.Tensor) -> torch.Tensor:
        """Every block but the last over all positions; the last with the last query only."""
        n = x.shape[1]
        h = self.embed(x) + sinusoidal_positions(0, n, self.d_model, x.device, x.dtype)
        for block in self.blocks[:-1]:
            h = block(h)
        h = self.blocks[-1].forward_last(h)[:, 0]
        return self.head(self.ln_f(h))

    def init_state(
        self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> dict[str, Any]:
        ref = self.head.weight
        shape = (batch, self.n_heads, INITIAL_CACHE, self.d_model // self.n_heads)
        kw = {"device": device or ref.device, "dtype": dtype or ref.dtype}
        layers = [
            {"k": torch.zeros(shape, **kw), "v": torch.zeros(shape, **kw)} for _ in self.blocks
        ]
        return {"layers": layers, "pos": 0}

    @staticmethod
    def grow_cache(cache: dict[str, torch.Tensor]) -> None:
        for key, old in cache.items():
            new = old.new_zeros(*old.shape[:2], 2 * old.shape[2], old.shape[3])
            new[:, :, : old.shape[2]] = old
            cache[key] = new

    def step(self, x_t: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        check_input(x_t, self.input_size, rank=2)
        pos = state["pos"]
        pe = sinusoidal_positions(pos, 1, self.d_model, x_t.device, x_t.dtype)
        h = (self.embed(x_t) + pe).unsqueeze(1)
        for block, cache in zip(self.blocks, state["layers"], strict=True):
            if pos >= cache["k"].shape[2]:
                self.grow_cache(cache)
            h = block.step(h, cache, pos)
        state["pos"] = pos + 1
        return self.head(self.ln_f(h[:, 0])), state

    def cost(self, pass_: str, *, batch: int, n: int, itemsize: int) -> Cost | None:
        """Embedding and positions, the blocks (``block_cost``), final norm and head."""
        C.check_pass(pass_)
        d, s = self.d_model, itemsize
        rows = batch if pass_ == C.STEP else batch * n
        out = batch if pass_ in (C.LAST, C.STEP) else rows
        pe = positions_cost(1 if pass_ == C.STEP else n, d, s)
        parts = [C.linear(rows, self.input_size, d, s), pe,
                 Cost(rows * d, s * (2 * rows * d + (d if pass_ == C.STEP else n * d)))]
        for i in range(self.n_layers):
            last = pass_ == C.LAST and i == self.n_layers - 1
            kind = C.STEP if pass_ == C.STEP else (C.LAST if last else C.SEQUENCE)
            parts.append(self.blocks[i].cost(kind, batch=batch, n=n, itemsize=s))
        parts += [C.layer_norm(out, d, s), C.linear(out, d, self.output_size, s)]
        return C.total(parts)
