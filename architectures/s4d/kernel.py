"""S4D's convolution kernel (Gu et al. 2022, "On the Parameterization and Initialization of
Diagonal State Space Models"): a Vandermonde product, applied by FFT.

Per channel ``h`` a diagonal complex SSM with modes ``A_k`` (conjugate pairs, so only half
are stored and the result doubled), B = 1, discretised by zero-order hold with step Δ::

    s_t = exp(Δ A) s_{t-1} + u_t,        y_t = 2 Re(C̃ · s_t),   C̃ = C (exp(Δ A) - 1) / A

Unrolled, ``y = K * u`` with ``K[l] = 2 Re Σ_k C̃_k exp(Δ A_k l)``: a Vandermonde matrix
``V[k, l] = exp(Δ A_k l)`` times ``C̃``. This is the parallel LMU's idea (an LTI memory as
one long causal convolution) with a diagonal, learned state matrix instead of the fixed
Legendre one. ``*_ref`` functions are loops, for tests.
"""

from __future__ import annotations

import torch

from architectures.lmu.memory import fft_length


def discretize(
    log_dt: torch.Tensor, A: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(exp(Δ A), C̃)``, both ``(channels, modes)`` complex, from ``log Δ (channels,)``."""
    dtA = A * torch.exp(log_dt).unsqueeze(-1)
    return torch.exp(dtA), C * torch.expm1(dtA) / A


def s4d_kernel(log_dt: torch.Tensor, A: torch.Tensor, C: torch.Tensor, n: int) -> torch.Tensor:
    """``K (channels, n)`` real: the Vandermonde product, with ``exp(Δ A l)`` formed directly
    (not as powers of exp(Δ A)), so no error accumulates along l."""
    dtA = A * torch.exp(log_dt).unsqueeze(-1)
    C_tilde = C * torch.expm1(dtA) / A
    steps = torch.arange(n, device=A.device, dtype=dtA.real.dtype)
    vandermonde = torch.exp(dtA.unsqueeze(-1) * steps)  # (channels, modes, n)
    return 2 * torch.einsum("hm,hml->hl", C_tilde, vandermonde).real


def s4d_kernel_ref(log_dt: torch.Tensor, A: torch.Tensor, C: torch.Tensor, n: int) -> torch.Tensor:
    """The kernel as the impulse response of the recurrence: repeated products, a loop."""
    decay, C_tilde = discretize(log_dt, A, C)
    power = torch.ones_like(decay)
    rows = []
    for _ in range(n):
        rows.append(2 * (C_tilde * power).sum(-1).real)
        power = power * decay
    return torch.stack(rows, dim=-1)


def causal_fft_conv(u: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """``y[b, t, h] = Σ_{s≤t} K[h, t-s] u[b, s, h]`` for ``u (batch, n, channels)``, by rfft."""
    n = u.shape[1]
    L = fft_length(n)
    Uf = torch.fft.rfft(u.transpose(1, 2), n=L)
    Kf = torch.fft.rfft(K[:, :n], n=L)
    return torch.fft.irfft(Uf * Kf, n=L)[..., :n].transpose(1, 2)


def causal_conv_ref(u: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """The same convolution as a double loop over output and input time."""
    b, n, h = u.shape
    y = u.new_zeros(b, n, h)
    for t in range(n):
        for s in range(t + 1):
            y[:, t] += K[:, t - s] * u[:, s]
    return y
