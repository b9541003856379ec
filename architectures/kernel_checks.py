"""Each installed fused kernel against its loop reference, on a device: for ``selftest``.

A fused kernel that imports can still compute something else (a layout mix-up, a bad
build, TF32 where float32 was meant). Here each one that would run on ``device`` gets
inputs of a realistic shape, and its output is compared with this repository's float64
loop reference. Kernels that would not run (not installed, not built, not on this device)
are reported with the reason, not failed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from architectures.linear_attention.chunked import delta_rule, linear_attention
from architectures.linear_attention.naive import delta_rule_ref, linear_attention_ref
from architectures.mamba.scan import selective_scan, selective_scan_ref
from architectures.optional import KERNELS

B, N, HEADS, DIM = 2, 300, 4, 32


@dataclass(frozen=True)
class KernelAgreement:
    """One kernel's largest error relative to the reference's largest magnitude."""

    kernel: str
    label: str  # package + version, or "" when not run
    dtype: str
    rel_err: float | None  # None: not run (see ``skipped``)
    bound: float
    skipped: str = ""

    @property
    def passed(self) -> bool:
        return self.rel_err is None or self.rel_err <= self.bound


def _rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    y, ref = y.detach().double().cpu(), ref.detach().double().cpu()
    return ((y - ref).abs().max() / ref.abs().max()).item()


def _inputs(device: torch.device, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    q, k = (F.normalize(F.elu(rand(B, HEADS, N, DIM)) + 1, dim=-1) for _ in "qk")
    v, beta = rand(B, HEADS, N, DIM), torch.rand(B, HEADS, N, generator=g, dtype=torch.float64)
    u, delta = rand(B, N, 16), F.softplus(rand(B, N, 16))
    A = -torch.rand(16, 16, generator=g, dtype=torch.float64) - 0.5
    Bm, Cm, D = rand(B, N, 16), rand(B, N, 16), rand(16)
    heads = [t.to(device, dtype) for t in (q, k, v, beta)]
    return heads, [t.to(device, dtype) for t in (u, delta, A, Bm, Cm, D)]


# kernel → (dtype it is checked in, bound on the relative error). bfloat16 has 8 mantissa
# bits (eps 2^-8 ≈ 4e-3); accumulations over 300 steps stay within a few eps.
PLAN = {
    "mamba-ssm": (torch.float32, 1e-4),
    "fla-linear-attn": (torch.bfloat16, 3e-2),
    "fla-delta-rule": (torch.bfloat16, 3e-2),
}


def check_kernels(device: str | torch.device) -> list[KernelAgreement]:
    """Every known kernel: its agreement with the reference, or why it was not run."""
    device = torch.device(device)
    out = []
    for key, (dtype, bound) in PLAN.items():
        kernel = KERNELS[key]
        why = kernel.refusal(device.type, dtype, N, HEADS)
        name = str(dtype).removeprefix("torch.")
        if why is not None:
            out.append(KernelAgreement(key, "", name, None, bound, skipped=why))
            continue
        (q, k, v, beta), scan = _inputs(device, dtype)
        with torch.no_grad():
            if key == "mamba-ssm":
                y = selective_scan(*scan, use_kernel=True)
                ref = selective_scan_ref(*(t.double().cpu() for t in scan))
            elif key == "fla-linear-attn":
                y = linear_attention(q, k, v, use_kernel=True)
                ref = linear_attention_ref(*(t.double().cpu() for t in (q, k, v)))
            else:
                y = delta_rule(q, k, v, beta, use_kernel=True)
                ref = delta_rule_ref(*(t.double().cpu() for t in (q, k, v, beta)))
        out.append(KernelAgreement(key, kernel.label(), name, _rel_err(y, ref), bound))
    return out
