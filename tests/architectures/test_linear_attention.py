"""Linear attention and the delta rule: chunked forms against loops over time (and against
the quadratic masked form), the delta rule's defining property by hand, the models'
step() against forward, and the optional flash-linear-attention kernels (GPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import architectures
import architectures.linear_attention  # noqa: F401  registers "linear-attention", "deltanet"
from architectures.linear_attention import (
    causal_linear_attention,
    delta_rule,
    delta_rule_ref,
    linear_attention,
    linear_attention_ref,
)
from architectures.linear_attention.model import DeltaNetMixer, LinearAttentionMixer
from architectures.optional import FLA_DELTA_RULE, FLA_LINEAR_ATTN
from tests.helpers import stream


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def qkv(n, seed=0, b=2, h=3, dk=4, dv=5, dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    q, k = (F.elu(torch.randn(b, h, n, dk, generator=gen, dtype=torch.float64)) + 1 for _ in "qk")
    v = torch.randn(b, h, n, dv, generator=gen, dtype=torch.float64)
    beta = torch.rand(b, h, n, generator=gen, dtype=torch.float64)
    return [t.to(device, dtype) for t in (q, k, v, beta)]


CHUNKS = [(1, 1), (7, 3), (16, 16), (37, 8), (37, 64), (100, 32)]  # (n, chunk): ragged, one, >n


@pytest.mark.parametrize("n,chunk", CHUNKS)
def test_chunked_linear_attention_matches_loop(n, chunk):
    q, k, v, _ = qkv(n, seed=n)
    out = linear_attention(q, k, v, chunk_size=chunk, use_kernel=False)
    torch.testing.assert_close(out, linear_attention_ref(q, k, v), rtol=1e-11, atol=1e-12)


def test_unnormalised_form_matches_quadratic_masked_attention():
    q, k, v, _ = qkv(29, seed=1)
    scores = (q @ k.transpose(-1, -2)).tril()  # (q_t · k_s) for s <= t
    torch.testing.assert_close(causal_linear_attention(q, k, v, chunk_size=6), scores @ v,
                               rtol=1e-12, atol=1e-12)  # fmt: skip


@pytest.mark.parametrize("n,chunk", CHUNKS)
def test_chunked_delta_rule_matches_loop(n, chunk):
    q, k, v, beta = qkv(n, seed=n)
    k = F.normalize(k, dim=-1)
    out = delta_rule(q, k, v, beta, chunk_size=chunk, use_kernel=False)
    torch.testing.assert_close(out, delta_rule_ref(q, k, v, beta), rtol=1e-10, atol=1e-11)


def test_delta_rule_overwrites_the_value_at_a_key():
    """β = 1 and a unit key: after writing (k, v₁) then (k, v₂), reading k returns v₂ exactly."""
    k = F.normalize(torch.tensor([1.0, 2.0, -2.0], dtype=torch.float64), dim=0)
    keys = k.expand(1, 1, 2, 3)
    values = torch.tensor([[[[1.0, -1.0], [3.0, 5.0]]]], dtype=torch.float64)
    out = delta_rule_ref(keys, keys, values, torch.ones(1, 1, 2, dtype=torch.float64))
    torch.testing.assert_close(out[0, 0], values[0, 0], rtol=1e-14, atol=1e-14)


# Measured (CPU, torch 2.13, n = 2048, 2 heads of 16, seeds 0 and 1): float32 chunked
# against the float64 loop, max relative error 7.5e-8 (linear attention) and 4.5e-7
# (delta rule). Bounds: ~5x those.
def test_float32_long_sequence():
    q, k, v, beta = qkv(2048, seed=0, b=1, h=2, dk=16, dv=16)
    f32 = [t.float() for t in (q, k, v)]
    assert rel_err(linear_attention(*f32, use_kernel=False), linear_attention_ref(q, k, v)) < 4e-7
    qn, kn = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    ref = delta_rule_ref(qn, kn, v, beta)
    out = delta_rule(qn.float(), kn.float(), v.float(), beta.float(), use_kernel=False)
    assert rel_err(out, ref) < 2e-6


def test_delta_rule_gradients():
    q, k, v, beta = qkv(9, seed=2, b=1, h=1, dk=3, dv=2)
    args = (q, F.normalize(k, dim=-1), v, beta)
    args = tuple(t.detach().requires_grad_(True) for t in args)
    assert torch.autograd.gradcheck(lambda *a: delta_rule(*a, chunk_size=4), args)


@pytest.mark.parametrize(
    "mixer",
    [lambda: LinearAttentionMixer(12, 3, 5, True), lambda: DeltaNetMixer(12, 2, 3, 5, True)],
    ids=["linear-attention", "deltanet"],
)
def test_mixer_step_equals_forward(mixer):
    torch.manual_seed(0)
    m = mixer().double()
    x = torch.randn(2, 23, 12, dtype=torch.float64)
    with torch.no_grad():
        y = m(x)
        ys, _ = stream(m, x, m.init_state(2, torch.device("cpu"), torch.float64))
    torch.testing.assert_close(ys, y, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["linear-attention", "deltanet"])
def test_bad_config_raises(name):
    with pytest.raises(ValueError, match="divisible by n_heads"):
        architectures.build(name, preset="tiny", d_model=16, n_heads=3)
    with pytest.raises(ValueError, match="chunk_size"):
        architectures.build(name, preset="tiny", chunk_size=0)


@pytest.mark.gpu
def test_fla_linear_attention_kernel_matches_reference():
    """float32 under the TF32 policy (fla's Triton dots are TF32), bfloat16 under any."""
    pytest.importorskip("fla")
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        for dtype, tol in ((torch.float32, 1e-3), (torch.bfloat16, 3e-2)):
            q, k, v, _ = qkv(300, b=2, h=4, dk=32, dv=32, dtype=dtype, device="cuda")
            assert FLA_LINEAR_ATTN.refusal("cuda", dtype, 300, 4) is None
            out = linear_attention(q, k, v, use_kernel=True)
            ref = linear_attention_ref(*(t.double().cpu() for t in (q, k, v)))
            assert rel_err(out.cpu(), ref) < tol
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.gpu
def test_fla_delta_rule_kernel_matches_reference():
    """chunk_delta_rule refuses float32: bfloat16 against the float64 loop."""
    pytest.importorskip("fla")
    q, k, v, beta = qkv(300, b=2, h=4, dk=32, dv=32, dtype=torch.float32, device="cuda")
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    q, k, v, beta = (t.bfloat16() for t in (q, k, v, beta))
    assert FLA_DELTA_RULE.refusal("cuda", torch.bfloat16, 300, 4) is None
    out = delta_rule(q, k, v, beta, use_kernel=True)
    ref = delta_rule_ref(*(t.double().cpu() for t in (q, k, v, beta)))
    assert rel_err(out.cpu(), ref) < 3e-2
