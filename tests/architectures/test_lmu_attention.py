"""lmu-attention: the hybrid against a hand composition of its parts (the LMU memory by the
float64 recurrence, attention written out as softmax(QKᵀ/√d) with a causal mask), its
memory modes against each other, and step() past the KV cache's growth."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import architectures
import architectures.lmu.hybrid  # noqa: F401  registers "lmu-attention"
from architectures.lmu import lmu_memory_ref
from tests.helpers import stream


def build(**kw):
    torch.manual_seed(0)
    cfg = dict(d_model=12, n_layers=2, order=6, theta=10.0, n_heads=3, memory_d=2)
    return architectures.build("lmu-attention", preset=None, input_size=2, output_size=3,
                               **{**cfg, **kw}).double()  # fmt: skip


def hand_forward(model, x: torch.Tensor) -> torch.Tensor:
    h = model.embed(x)
    for layer in model.layers:
        lmu = layer.mixer
        a = layer.norm(h)
        m = lmu_memory_ref(lmu.encoder(a), lmu._Abar64, lmu._Bbar64)  # (b, n, memory_d, order)
        h = h + torch.tanh(lmu.hidden(torch.cat([m.flatten(-2), a], dim=-1)))
        h = h + layer.mlp(layer.norm2(h))
    blk = model.attention
    b, n, d = h.shape
    q, k, v = blk.qkv(blk.ln1(h)).view(b, n, 3, model.n_heads, -1).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // model.n_heads)
    scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), -math.inf)
    att = (F.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, n, d)
    h = h + blk.proj(att)
    h = h + blk.mlp(blk.ln2(h))
    return model.head(model.norm_f(h))


@pytest.mark.parametrize("mode", ["fft", "conv", "chunked"])
def test_forward_equals_hand_composition(mode):
    model = build(memory_mode=mode)
    x = torch.randn(2, 31, 2, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), hand_forward(model, x), rtol=1e-10, atol=1e-12)


def test_step_equals_forward_past_cache_growth():
    model = build()
    n = 40  # the KV cache starts at 16 slots: grows at 16 and 32
    x = torch.randn(2, n, 2, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
        ys, state = stream(model, x)
    torch.testing.assert_close(ys, y, rtol=1e-10, atol=1e-12)
    assert state["pos"] == n and state["attn"]["k"].shape[2] == 64


def test_bad_config_raises():
    with pytest.raises(ValueError, match="valid choices"):
        build(memory_mode="fast")
    with pytest.raises(ValueError, match="divisible by n_heads"):
        build(d_model=10)


def test_citation_names_the_language_modelling_paper():
    doc = architectures.lmu.hybrid.__doc__
    assert ("Language Modeling using LMUs: 10x Better Data Efficiency or Improved Scaling "
            "Compared to Transformers") in " ".join(doc.split())
    assert "Chilkuri et al. (2021)" in doc


def test_without_attention_is_the_papers_lmu_model():
    """attention=False: the same LMU blocks, final norm and head; no attention block."""
    full, plain = build(), build(attention=False)
    assert plain.attention is None
    attn = sum(p.numel() for p in full.attention.parameters())
    assert plain.num_params() == full.num_params() - attn
    x = torch.randn(2, 23, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        h = plain.embed(x)
        for layer in plain.layers:
            lmu = layer.mixer
            a = layer.norm(h)
            m = lmu_memory_ref(lmu.encoder(a), lmu._Abar64, lmu._Bbar64)
            h = h + torch.tanh(lmu.hidden(torch.cat([m.flatten(-2), a], dim=-1)))
            h = h + layer.mlp(layer.norm2(h))
        want = plain.head(plain.norm_f(h))
        y = plain(x)
        torch.testing.assert_close(y, want, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(plain.forward_last(x), want[:, -1], rtol=1e-10, atol=1e-12)
        ys, state = stream(plain, x)
    torch.testing.assert_close(ys, y, rtol=1e-10, atol=1e-12)
    assert state["attn"] is None  # O(1) state: the memories only


def test_last_query_path_equals_hand_composition():
    model = build()
    x = torch.randn(2, 19, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model.forward_last(x), hand_forward(model, x)[:, -1],
                                   rtol=1e-10, atol=1e-12)  # fmt: skip
