"""Mamba's selective scan: a diagonal linear recurrence with input-dependent coefficients.

Per channel ``d`` and state ``s`` (Gu & Dao 2023, zero-order hold on A, Euler on B)::

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t          h: (d_inner, d_state)
    y_t = C_t · h_t + D u_t

The recurrence ``h_t = a_t h_{t-1} + b_t`` is associative in the pairs ``(a, b)``, so
``linear_scan`` computes it with a work-efficient parallel (Blelloch / odd-even) scan:
O(n) work, O(log n) sequential depth, no loop over time. ``selective_scan_ref`` is the
loop over time, written to be obviously right, for tests. When ``mamba-ssm`` is
installed and the tensors are on CUDA, its fused kernel (which keeps the states in SRAM
instead of materialising ``(batch, n, d_inner, d_state)``) is used instead.
"""

from __future__ import annotations

import torch

from architectures.optional import MAMBA_SSM


def linear_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``h_t = a_t ⊙ h_{t-1} + b_t`` along dim 1 from ``h_{-1} = 0``; ``a``, ``b`` same shape.

    Odd-even recursion: pairs (2k, 2k+1) combine into one step of a half-length scan,
    whose result gives the odd states; the even states follow in one multiply-add.
    Only products of ``a`` are formed (never divisions), so it is as stable as the loop.
    """
    if a.shape != b.shape or a.dim() < 2:
        raise ValueError(f"a and b must have equal shapes (batch, n, ...), got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")  # fmt: skip
    n = a.shape[1]
    if n == 1:
        return b
    if n % 2:  # one neutral step (a=1, b=0) at the end changes nothing before it
        a = torch.cat([a, torch.ones_like(a[:, :1])], dim=1)
        b = torch.cat([b, torch.zeros_like(b[:, :1])], dim=1)
    a_even, a_odd = a[:, 0::2], a[:, 1::2]
    b_even, b_odd = b[:, 0::2], b[:, 1::2]
    h_odd = linear_scan(a_odd * a_even, a_odd * b_even + b_odd)  # h_1, h_3, ...
    h_before_even = torch.cat([torch.zeros_like(h_odd[:, :1]), h_odd[:, :-1]], dim=1)
    h_even = a_even * h_before_even + b_even  # h_0, h_2, ...
    return torch.stack([h_even, h_odd], dim=2).flatten(1, 2)[:, :n]


def linear_scan_ref(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The recurrence as a loop over time, for tests."""
    h = torch.zeros_like(b[:, 0])
    out = []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


def _check(u, delta, A, B, C, D) -> None:
    b, n, d = u.shape
    s = A.shape[-1]
    want = {"delta": (b, n, d), "A": (d, s), "B": (b, n, s), "C": (b, n, s), "D": (d,)}
    for name, t in {"delta": delta, "A": A, "B": B, "C": C, "D": D}.items():
        if tuple(t.shape) != want[name]:
            raise ValueError(f"{name} must have shape {want[name]} for u {tuple(u.shape)}, "
                             f"got {tuple(t.shape)}")  # fmt: skip


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    use_kernel: bool = True,
) -> torch.Tensor:
    """``y (batch, n, d_inner)`` for ``u``/``delta (batch, n, d_inner)``, ``A (d_inner, d_state)``,
    ``B``/``C (batch, n, d_state)``, ``D (d_inner,)``; ``delta`` already positive (softplus).

    ``use_kernel``: take mamba-ssm's CUDA kernel when it can run (CUDA tensor, 32/16-bit).
    """
    _check(u, delta, A, B, C, D)
    if use_kernel and MAMBA_SSM.usable_for(u):
        return _selective_scan_cuda(u, delta, A, B, C, D)
    dA = torch.exp(delta.unsqueeze(-1) * A)  # (b, n, d, s)
    dBu = (delta * u).unsqueeze(-1) * B.unsqueeze(2)  # (b, n, d, s)
    h = linear_scan(dA, dBu)
    return torch.einsum("bnds,bns->bnd", h, C) + D * u


def _selective_scan_cuda(u, delta, A, B, C, D) -> torch.Tensor:
    fn = MAMBA_SSM.load().selective_scan_fn  # layout (batch, channels, n)
    y = fn(
        u.transpose(1, 2).contiguous(),
        delta.transpose(1, 2).contiguous(),
        A.float().contiguous(),
        B.transpose(1, 2).contiguous(),
        C.transpose(1, 2).contiguous(),
        D.float().contiguous(),
        delta_softplus=False,
    )
    return y.transpose(1, 2).to(u.dtype)


def selective_scan_ref(u, delta, A, B, C, D) -> torch.Tensor:
    """Obviously-correct loop over time (same arguments as ``selective_scan``), for tests."""
    _check(u, delta, A, B, C, D)
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    ys = []
    for t in range(u.shape[1]):
        dt = delta[:, t, :, None]  # (b, d, 1)
        h = torch.exp(dt * A) * h + dt * B[:, t, None, :] * u[:, t, :, None]
        ys.append((h * C[:, t, None, :]).sum(-1) + D * u[:, t])
    return torch.stack(ys, dim=1)


def softplus_inverse(x: torch.Tensor) -> torch.Tensor:
    """``softplus⁻¹(x) = x + log(1 - exp(-x))``: Mamba initialises Δ's bias with it."""
    return x + torch.log(-torch.expm1(-x))


__all__ = ["linear_scan", "linear_scan_ref", "selective_scan", "selective_scan_ref"]
