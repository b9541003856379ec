"""The baselines (lmu, lstm, transformer) against slow, obviously-correct transcriptions
of their equations, written here independently of the adapters' fused code paths."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch

import architectures
from architectures.lmu.legendre import legendre_ab, zoh
from architectures.transformer import INITIAL_CACHE, sinusoidal_positions

F64 = torch.float64


def lmu_reference(model, x: torch.Tensor) -> torch.Tensor:
    """The LMU equations of Voelker et al. 2019, one channel and one product at a time."""
    A, B = zoh(*legendre_ab(model.order, model.theta))
    batch, n, _ = x.shape
    D, H = model.memory_d, model.hidden_size
    W_x = model.input_encoder.weight
    h = torch.zeros(batch, H, dtype=F64)
    m = torch.zeros(batch, D, model.order, dtype=F64)
    ys = []
    for t in range(n):
        u = x[:, t] @ W_x.T
        if model.hidden_to_memory:
            u = u + h @ model.hidden_encoder.weight.T
        if model.memory_to_memory:
            u = u + m.reshape(batch, -1) @ model.memory_encoder.weight.T
        m = torch.stack([m[:, d] @ A.T + u[:, d : d + 1] * B for d in range(D)], 1)
        pre = m.reshape(batch, -1) @ model.memory_kernel.weight.T
        if model.input_to_hidden:
            pre = pre + x[:, t] @ model.input_kernel.weight.T
        pre = pre + h @ model.recurrent_kernel.weight.T
        if model.recurrent_kernel.bias is not None:
            pre = pre + model.recurrent_kernel.bias
        h = torch.tanh(pre)
        ys.append(model.head(h))
    return torch.stack(ys, 1)


@pytest.mark.parametrize("switches", list(itertools.product([True, False], repeat=3)))
def test_lmu_matches_reference_equations(switches):
    h2m, m2m, i2h = switches
    torch.manual_seed(0)
    model = architectures.build(
        "lmu",
        preset=None,
        input_size=3,
        output_size=4,
        memory_d=2,
        order=6,
        theta=9.0,
        hidden_size=5,
        hidden_to_memory=h2m,
        memory_to_memory=m2m,
        input_to_hidden=i2h,
    ).double()
    x = torch.randn(2, 30, 3, dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), lmu_reference(model, x), rtol=1e-12, atol=1e-12)
    # the switches remove parameters, as in keras-lmu
    expected = 3 * 2 + 12 * 5 + 5 * 5 + 5 + 5 * 4 + 4  # W_x, W_m, W_h, b, head
    expected += (5 * 2 if h2m else 0) + (12 * 2 if m2m else 0) + (3 * 5 if i2h else 0)
    assert model.num_params() == expected


def test_lmu_without_recurrent_bias_matches_reference_equations():
    """recurrent_bias=False (the paper's psMNIST model) drops b and nothing else."""
    torch.manual_seed(0)
    kw = dict(preset=None, input_size=2, output_size=3, memory_d=1, order=6, theta=9.0,
              hidden_size=5)  # fmt: skip
    with_b = architectures.build("lmu", **kw)
    model = architectures.build("lmu", recurrent_bias=False, **kw).double()
    assert model.recurrent_kernel.bias is None
    assert model.num_params() == with_b.num_params() - 5
    x = torch.randn(2, 25, 2, dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), lmu_reference(model, x), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(model.forward_last(x), lmu_reference(model, x)[:, -1],
                                   rtol=1e-12, atol=1e-12)  # fmt: skip


def test_transformer_last_query_path_matches_explicit_attention():
    torch.manual_seed(0)
    model = architectures.build("transformer", preset=None, input_size=2, output_size=3,
                                d_model=8, n_layers=2, n_heads=2).double()  # fmt: skip
    x = torch.randn(2, 13, 2, dtype=F64)
    with torch.no_grad():
        want = transformer_reference(model, x)[:, -1]
        torch.testing.assert_close(model.forward_last(x), want, rtol=1e-10, atol=1e-12)


def test_lmu_training_path_equals_inference_path():
    """The autograd loop (list + stack) and the no-grad loop (preallocated) agree."""
    torch.manual_seed(0)
    model = architectures.build("lmu", preset="tiny", input_size=2, output_size=3).double()
    x = torch.randn(3, 20, 2, dtype=F64)
    with torch.no_grad():
        y0 = model(x)
    assert torch.equal(model(x), y0)


def test_lmu_memory_matrices_are_float64_exact_after_casts():
    """Casting float32 -> float64 must rebuild Abar from the float64 master, not upcast."""
    model = architectures.build("lmu", preset="tiny")  # float32
    Abar, Bbar = zoh(*legendre_ab(model.order, model.theta))
    assert model.abar_t.dtype == torch.float32
    model = model.double()
    assert torch.equal(model.abar_t, Abar.T) and torch.equal(model.bbar, Bbar)
    assert torch.equal(model.float().double().abar_t, Abar.T)


def test_lmu_compile_falls_back_to_eager_when_compile_fails(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    torch.manual_seed(0)
    eager = architectures.build("lmu", preset="tiny", input_size=2, output_size=3).double()
    torch.manual_seed(0)
    comp = architectures.build(
        "lmu", preset="tiny", input_size=2, output_size=3, compile=True
    ).double()
    x = torch.randn(2, 8, 2, dtype=F64)
    with pytest.warns(UserWarning, match="no compiler here"):
        y = comp(x)
    assert torch.equal(y, eager(x))


@pytest.mark.slow
def test_lmu_compiled_step_matches_eager():
    torch.manual_seed(0)
    eager = architectures.build("lmu", preset="tiny", input_size=2, output_size=3)
    torch.manual_seed(0)
    comp = architectures.build("lmu", preset="tiny", input_size=2, output_size=3, compile=True)
    x = torch.randn(2, 8, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a machine without a compiler falls back eagerly
        y = comp(x)
    torch.testing.assert_close(y, eager(x), rtol=1e-5, atol=1e-6)


def test_lstm_matches_gate_equations():
    torch.manual_seed(0)
    model = architectures.build("lstm", preset=None, input_size=3, output_size=2, hidden_size=4)
    model = model.double()
    x = torch.randn(2, 12, 3, dtype=F64)
    lstm = model.lstm
    Wi, Wh, b = lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0
    h = c = torch.zeros(2, 4, dtype=F64)
    ys = []
    for t in range(12):
        i, f, g, o = (x[:, t] @ Wi.T + h @ Wh.T + b).chunk(4, 1)  # PyTorch gate order
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        ys.append(model.head(h))
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.stack(ys, 1), rtol=1e-12, atol=1e-12)


def test_sinusoidal_positions_formula():
    pe = sinusoidal_positions(5, 3, 6, dtype=F64)
    for r, pos in enumerate(range(5, 8)):
        for k in range(3):
            freq = 10000.0 ** (-2 * k / 6)
            assert pe[r, 2 * k].item() == pytest.approx(math.sin(pos * freq), abs=1e-14)
            assert pe[r, 2 * k + 1].item() == pytest.approx(math.cos(pos * freq), abs=1e-14)


def transformer_reference(model, x: torch.Tensor) -> torch.Tensor:
    """Explicit softmax(QK^T/sqrt(d) + causal mask) V, one head at a time."""
    n = x.shape[1]
    heads, dh = model.n_heads, model.d_model // model.n_heads
    h = model.embed(x) + sinusoidal_positions(0, n, model.d_model, dtype=x.dtype)
    mask = torch.full((n, n), float("-inf"), dtype=x.dtype).triu(1)
    for blk in model.blocks:
        q, k, v = blk.qkv(blk.ln1(h)).split(model.d_model, -1)
        outs = []
        for j in range(heads):
            s = slice(j * dh, (j + 1) * dh)
            w = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(dh) + mask, -1)
            outs.append(w @ v[..., s])
        h = h + blk.proj(torch.cat(outs, -1))
        h = h + blk.mlp(blk.ln2(h))
    return model.head(model.ln_f(h))


def test_transformer_matches_explicit_attention():
    torch.manual_seed(0)
    model = architectures.build("transformer", preset="tiny", input_size=2, output_size=3)
    model = model.double()
    x = torch.randn(2, 20, 2, dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(
            model(x), transformer_reference(model, x), rtol=1e-10, atol=1e-12
        )


def test_transformer_kv_cache_grows_by_doubling_and_matches_forward():
    torch.manual_seed(0)
    model = architectures.build("transformer", preset="tiny", input_size=1, output_size=2).double()
    n = 4 * INITIAL_CACHE + 3
    x = torch.randn(1, n, 1, dtype=F64)
    state = model.init_state(1)
    caps, ys = set(), []
    with torch.no_grad():
        for t in range(n):
            y_t, state = model.step(x[:, t], state)
            ys.append(y_t)
            caps.add(state["layers"][0]["k"].shape[2])
        torch.testing.assert_close(torch.stack(ys, 1), model(x), rtol=1e-9, atol=1e-10)
    assert caps == {INITIAL_CACHE * 2**i for i in range(4)}
    assert state["pos"] == n
