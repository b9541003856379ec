"""Obviously-correct references for linear attention and the delta rule: loops over time.

Tensors are ``(batch, heads, n, dim)``; ``q``, ``k`` already through the feature map.
The state ``S (dim_k, dim_v)`` is the running sum of key-value outer products
(Katharopoulos et al. 2020), or, for DeltaNet (Schlag et al. 2021; Yang et al. 2024),
corrected towards ``v_t`` along ``k_t`` with step size ``β_t``.
"""

from __future__ import annotations

import torch


def linear_attention_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """``o_t = q_t·S_t / (q_t·z_t + eps)``, ``S_t = Σ_{s≤t} k_s v_sᵀ``, ``z_t = Σ_{s≤t} k_s``."""
    S = q.new_zeros(*q.shape[:2], q.shape[-1], v.shape[-1])
    z = q.new_zeros(*q.shape[:2], q.shape[-1])
    out = []
    for t in range(q.shape[2]):
        S = S + k[:, :, t, :, None] * v[:, :, t, None, :]
        z = z + k[:, :, t]
        num = (q[:, :, t, :, None] * S).sum(-2)
        den = (q[:, :, t] * z).sum(-1, keepdim=True)
        out.append(num / (den + eps))
    return torch.stack(out, dim=2)


def delta_rule_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor
) -> torch.Tensor:
    """``S_t = S_{t-1} + β_t k_t (v_t - S_{t-1}ᵀ k_t)ᵀ``, ``o_t = S_tᵀ q_t``; ``beta (b, h, n)``."""
    S = q.new_zeros(*q.shape[:2], q.shape[-1], v.shape[-1])
    out = []
    for t in range(q.shape[2]):
        k_t, v_t, b_t = k[:, :, t], v[:, :, t], beta[:, :, t, None]
        retrieved = (k_t[..., None] * S).sum(-2)  # S^T k_t
        S = S + k_t[..., None] * (b_t * (v_t - retrieved))[..., None, :]
        out.append((q[:, :, t, :, None] * S).sum(-2))
    return torch.stack(out, dim=2)
