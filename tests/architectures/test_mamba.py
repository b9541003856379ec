"""Mamba: the parallel scan and the selective scan against loops over time; the block's
step() against its forward; the optional mamba-ssm kernel against the reference (GPU)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import architectures
import architectures.mamba  # noqa: F401  registers "mamba" before the lead's import line
from architectures.mamba import linear_scan, linear_scan_ref, selective_scan, selective_scan_ref
from architectures.mamba.model import MambaMixer
from architectures.optional import MAMBA_SSM
from tests.helpers import stream


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def scan_inputs(b, n, d, s, seed=0, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    u, B, C, D = r(b, n, d), r(b, n, s), r(b, n, s), r(d)
    delta = F.softplus(r(b, n, d) - 3)  # Δ ~ 0.05, as after Mamba's initialisation
    A = -torch.arange(1, s + 1, dtype=torch.float64).repeat(d, 1) * (1 + r(d, s).abs())
    return [t.to(device, dtype) for t in (u, delta, A, B, C, D)]


@pytest.mark.parametrize("n", [1, 2, 3, 8, 37, 100])
def test_linear_scan_matches_loop(n):
    g = torch.Generator().manual_seed(n)
    a = torch.rand(3, n, 4, 2, generator=g, dtype=torch.float64)
    b = torch.randn(3, n, 4, 2, generator=g, dtype=torch.float64)
    torch.testing.assert_close(linear_scan(a, b), linear_scan_ref(a, b), rtol=1e-12, atol=1e-13)


def test_linear_scan_by_hand():
    a = torch.tensor([[0.5, 2.0, -1.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 3.0, 4.0]], dtype=torch.float64)
    # h0 = 1; h1 = 2·1 + 3 = 5; h2 = -1·5 + 4 = -1
    assert linear_scan(a, b).tolist() == [[1.0, 5.0, -1.0]]


@pytest.mark.parametrize("n", [1, 17, 64])
def test_selective_scan_matches_reference_float64(n, device):
    args = scan_inputs(2, n, 5, 4, seed=n, device=device)
    y = selective_scan(*args, use_kernel=False)
    assert y.shape == (2, n, 5) and y.dtype == torch.float64
    torch.testing.assert_close(y, selective_scan_ref(*args), rtol=1e-11, atol=1e-12)


def test_selective_scan_reference_by_hand():
    """One channel, one state: h_t = exp(Δ_t a) h_{t-1} + Δ_t b_t u_t, y_t = c_t h_t + D u_t."""
    u, delta, A, B, C, D = scan_inputs(1, 4, 1, 1, seed=3)
    h, want = 0.0, []
    for t in range(4):
        dt = delta[0, t, 0].item()
        h = math.exp(dt * A[0, 0].item()) * h + dt * B[0, t, 0].item() * u[0, t, 0].item()
        want.append(C[0, t, 0].item() * h + D[0].item() * u[0, t, 0].item())
    got = selective_scan_ref(u, delta, A, B, C, D)[0, :, 0].tolist()
    assert got == pytest.approx(want, rel=1e-13, abs=1e-15)


# Measured (CPU, torch 2.13, n = 4096, d 8, state 16, seeds 0 and 1): max relative error of
# the float32 parallel scan against the float64 loop was 1.5e-7. Bound: that with ~6x margin.
def test_selective_scan_float32_long_sequence():
    args = scan_inputs(1, 4096, 8, 16, seed=0)
    ref = selective_scan_ref(*args)
    y32 = selective_scan(*(t.float() for t in args), use_kernel=False)
    assert y32.dtype == torch.float32
    assert rel_err(y32, ref) < 1e-6


def test_linear_scan_gradients():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 7, 2, generator=g, dtype=torch.float64).requires_grad_(True)
    b = torch.randn(1, 7, 2, generator=g, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(linear_scan, (a, b))


def test_scan_bad_shapes_raise():
    with pytest.raises(ValueError, match="equal shapes"):
        linear_scan(torch.ones(1, 3, 2), torch.ones(1, 4, 2))
    u, delta, A, B, C, D = scan_inputs(1, 5, 3, 2)
    with pytest.raises(ValueError, match="B must have shape"):
        selective_scan(u, delta, A, B[:, :4], C, D)


@pytest.mark.parametrize("cfg", [dict(d_conv=2, expand=1, dt_rank=3, d_state=4), dict()])
def test_mixer_step_equals_forward(cfg):
    torch.manual_seed(0)
    mixer = MambaMixer(12, **cfg).double()
    x = torch.randn(2, 29, 12, dtype=torch.float64)
    with torch.no_grad():
        y = mixer(x)
        ys, _ = stream(mixer, x, mixer.init_state(2, torch.device("cpu"), torch.float64))
    torch.testing.assert_close(ys, y, rtol=1e-10, atol=1e-12)


def test_initialisation_follows_mamba():
    torch.manual_seed(0)
    mixer = MambaMixer(32, d_state=8)
    torch.testing.assert_close(torch.exp(mixer.A_log[0]), torch.arange(1.0, 9.0))
    dt = F.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6
    assert mixer.dt_rank == 2 and mixer.d_inner == 64


def test_bad_config_raises():
    with pytest.raises(ValueError, match="d_state"):
        architectures.build("mamba", preset="tiny", d_state=0)


@pytest.mark.gpu
def test_mamba_ssm_kernel_matches_reference():
    pytest.importorskip("mamba_ssm")
    args = scan_inputs(2, 300, 16, 16, seed=0, dtype=torch.float32, device="cuda")
    assert MAMBA_SSM.refusal("cuda", torch.float32) is None, MAMBA_SSM.reason()
    y = selective_scan(*args, use_kernel=True)
    ref = selective_scan_ref(*(t.double().cpu() for t in args))
    assert rel_err(y.cpu(), ref) < 1e-5


@pytest.mark.gpu
def test_mamba_model_kernel_equals_torch_path():
    pytest.importorskip("mamba_ssm")
    torch.manual_seed(0)
    model = architectures.build("mamba", preset="small").cuda()
    x = torch.randn(4, 200, 1, device="cuda")
    with torch.no_grad():
        fast = model(x)
        for layer in model.layers:
            layer.mixer.use_kernel = False
        slow = model(x)
    assert rel_err(fast, slow) < 1e-4
