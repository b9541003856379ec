"""Mamba's selective scan: a diagonal linear recurrence with input-dependent coefficients.

Per channel ``d`` and state ``s`` (Gu & Dao 2023, zero-order hold on A, Euler on B)::

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t          h: (d_inner, d_state)
    y_t = C_t · h_t + D u_t

The recurrence ``h_t = a_t h_{t-1} + b_t`` is associative in the pairs ``(a, b)``, so
``architectures.scans.linear_scan`` (shared with minGRU's reference) computes it with a
work-efficient parallel scan: O(n) work, O(log n) sequential depth, no loop over time.
``selective_scan_ref`` is the loop over time, written to be obviously right, for tests.
When ``mamba-ssm`` is installed and the tensors are on CUDA, its fused kernel (which keeps
the states in SRAM instead of materialising ``(batch, n, d_inner, d_state)``) is used
instead (``architectures.optional`` says when).
"""

from __future__ import annotations

import torch

from architectures.optional import MAMBA_SSM, opaque_to_compile
from architectures.scans import linear_scan, linear_scan_ref


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

    ``use_kernel``: take mamba-ssm's CUDA kernel when it can run (``OptionalKernel.use``).
    """
    _check(u, delta, A, B, C, D)
    if use_kernel and MAMBA_SSM.use(u):
        return _selective_scan_cuda(u, delta, A, B, C, D)
    dA = torch.exp(delta.unsqueeze(-1) * A)  # (b, n, d, s)
    dBu = (delta * u).unsqueeze(-1) * B.unsqueeze(2)  # (b, n, d, s)
    h = linear_scan(dA, dBu)
    return torch.einsum("bnds,bns->bnd", h, C) + D * u


@opaque_to_compile  # a C++ extension behind an autograd.Function: opaque to dynamo
def _selective_scan_cuda(u, delta, A, B, C, D) -> torch.Tensor:
    """mamba-ssm's kernel in its layout: u, delta ``(batch, d_inner, n)`` in the input dtype,
    B, C ``(batch, d_state, n)`` in the input dtype (variable B/C), A and D float32
    (``selective_scan_fwd``'s checks, csrc/selective_scan/selective_scan.cpp)."""
    fn = MAMBA_SSM.load().selective_scan_fn
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
