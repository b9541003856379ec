"""S4D: the Vandermonde kernel against the recurrence's impulse response, ZOH against
numerical integration (scipy), the FFT convolution against a direct sum, step() against
forward."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate

import architectures
import architectures.s4d  # noqa: F401  registers "s4d"
from architectures.s4d import (
    causal_conv_ref,
    causal_fft_conv,
    discretize,
    s4d_kernel,
    s4d_kernel_ref,
)
from architectures.s4d.model import S4DMixer
from tests.helpers import stream


def ssm(channels: int, modes: int, seed: int = 0, dtype=torch.float64):
    """S4D-Lin modes with random Δ in [1e-3, 1e-1] and C ~ CN(0, 1)."""
    gen = torch.Generator().manual_seed(seed)
    log_dt = torch.rand(channels, generator=gen, dtype=torch.float64) * math.log(100) + math.log(
        1e-3
    )
    A = torch.complex(
        -0.5 * torch.ones(channels, modes, dtype=torch.float64),
        math.pi * torch.arange(modes, dtype=torch.float64).repeat(channels, 1),
    )
    C = torch.complex(*torch.randn(2, channels, modes, generator=gen, dtype=torch.float64))
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    return log_dt.to(dtype), A.to(cdtype), C.to(cdtype)


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.double() - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("n", [1, 100, 1000])
def test_vandermonde_kernel_matches_impulse_response(n):
    log_dt, A, C = ssm(3, 8, seed=n)
    K = s4d_kernel(log_dt, A, C, n)
    assert K.shape == (3, n) and K.dtype == torch.float64
    torch.testing.assert_close(K, s4d_kernel_ref(log_dt, A, C, n), rtol=1e-10, atol=1e-12)


def test_zoh_input_matrix_is_the_integral_of_exp():
    """ZOH: B̄ = ∫_0^Δ exp(A s) ds, so C̃ / C must equal that integral (scipy.quad)."""
    log_dt, A, C = ssm(1, 4, seed=2)
    _, C_tilde = discretize(log_dt, A, C)
    dt = math.exp(log_dt[0].item())
    for k in range(4):
        a = complex(A[0, k].item())
        re = integrate.quad(lambda s, a=a: (complex(math.e) ** (a * s)).real, 0, dt)[0]
        im = integrate.quad(lambda s, a=a: (complex(math.e) ** (a * s)).imag, 0, dt)[0]
        got = complex((C_tilde[0, k] / C[0, k]).item())
        assert got == pytest.approx(complex(re, im), rel=1e-10)


@pytest.mark.parametrize("n", [1, 2, 9, 40])
def test_fft_convolution_matches_direct_sum(n):
    gen = torch.Generator().manual_seed(n)
    u = torch.randn(2, n, 3, generator=gen, dtype=torch.float64)
    K = torch.randn(3, n + 5, generator=gen, dtype=torch.float64)  # longer kernels are cut
    torch.testing.assert_close(causal_fft_conv(u, K), causal_conv_ref(u, K), rtol=1e-12,
                               atol=1e-12)  # fmt: skip


# Measured (CPU, torch 2.13, n = 4096, 4 channels x 32 modes, seeds 0 and 1): the float32
# kernel's max relative error against the float64 loop was 1.1e-5 (phases Δ·Im(A)·l reach
# ~1e4 rad). Bound: ~4x that.
def test_float32_kernel_long_sequence():
    log_dt, A, C = ssm(4, 32, seed=0)
    ref = s4d_kernel_ref(log_dt, A, C, 4096)
    K32 = s4d_kernel(*ssm(4, 32, seed=0, dtype=torch.float32), 4096)
    assert K32.dtype == torch.float32
    assert rel_err(K32, ref) < 5e-5


@pytest.mark.parametrize("d_state", [2, 16])
def test_mixer_step_equals_forward(d_state):
    torch.manual_seed(0)
    mixer = S4DMixer(5, d_state).double()
    x = torch.randn(2, 57, 5, dtype=torch.float64)
    with torch.no_grad():
        y = mixer(x)
        s = mixer.init_state(2, torch.device("cpu"), torch.float64)
        assert s.dtype == torch.complex128 and s.shape == (2, 5, d_state // 2)
        ys, _ = stream(mixer, x, s)
    torch.testing.assert_close(ys, y, rtol=1e-10, atol=1e-12)


def test_s4d_lin_initialisation():
    torch.manual_seed(0)
    mixer = S4DMixer(4, 8)
    _, A, _ = mixer._ssm(torch.float32)
    torch.testing.assert_close(A.real, torch.full((4, 4), -0.5))
    torch.testing.assert_close(A.imag[0], math.pi * torch.arange(4.0))
    dt = torch.exp(mixer.log_dt)
    assert dt.min() >= 1e-3 and dt.max() <= 1e-1


@pytest.mark.parametrize("d_state", [0, 3])
def test_odd_state_raises(d_state):
    with pytest.raises(ValueError, match="d_state must be an even integer"):
        architectures.build("s4d", preset="tiny", d_state=d_state)
