"""Chunked (parallel-in-chunks) forms of causal linear attention and the delta rule.

Split n into chunks of ``c`` steps. Inside a chunk the causal sum is a masked ``c × c``
attention; across chunks it goes through the ``(dim_k, dim_v)`` state, so the cost is
O(n·c·d + n·d²) instead of the O(n²·d) of softmax attention (Yang et al. 2024, GLA /
flash-linear-attention's ``chunk`` kernels). Tensors are ``(batch, heads, n, dim)``.

* Linear attention: chunk states are independent sums, so the state before every chunk
  is an exclusive cumulative sum over chunks: no loop at all. Normalisation is computed
  by the same pass, by appending a column of ones to ``v`` (its output is ``q·z``).
* Delta rule: the chunk's rank-one updates are folded into the WY form
  ``U = (I + tril(diag(β) K Kᵀ, -1))⁻¹ diag(β) [V | K]`` by one triangular solve, then a
  loop over the n/c chunks carries the state (as flash-linear-attention does).

flash-linear-attention's Triton kernels are used instead on CUDA when installed and
allowed (``architectures.optional``: not float32 under the strict policy, not T < H).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from architectures.optional import (
    FLA_DELTA_RULE,
    FLA_LINEAR_ATTN,
    OptionalKernel,
    opaque_to_compile,
)

DEFAULT_CHUNK_SIZE = 64


def _chunks(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(b, h, n, d)`` → ``(b, h, n/c, c, d)``, zero-padded at the end."""
    b, h, n, d = x.shape
    x = F.pad(x, (0, 0, 0, -n % c))
    return x.reshape(b, h, -1, c, d)


def _check_chunk(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")


def causal_linear_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> torch.Tensor:
    """Unnormalised ``o_t = Σ_{s≤t} (q_t·k_s) v_s``, chunked, fully parallel."""
    _check_chunk(chunk_size)
    n = q.shape[2]
    c = min(chunk_size, n)
    qc, kc, vc = _chunks(q, c), _chunks(k, c), _chunks(v, c)
    mask = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    scores = (qc @ kc.transpose(-1, -2)).masked_fill(~mask, 0)
    kv = kc.transpose(-1, -2) @ vc  # (b, h, nc, dk, dv): each chunk's contribution
    before = torch.cumsum(kv, dim=2)[:, :, :-1]
    before = torch.cat([torch.zeros_like(kv[:, :, :1]), before], dim=2)
    o = scores @ vc + qc @ before
    return o.flatten(2, 3)[:, :, :n]


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    eps: float = 1e-6,
    use_kernel: bool = True,
) -> torch.Tensor:
    """Normalised causal linear attention (same numbers as ``naive.linear_attention_ref``)."""
    v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
    if use_kernel and FLA_LINEAR_ATTN.use(q, seq_len=q.shape[2], heads=q.shape[1]):
        o = _fla(FLA_LINEAR_ATTN, "chunk_linear_attn", q, k, v1, normalize=False)
    else:
        o = causal_linear_attention(q, k, v1, chunk_size)
    return o[..., :-1] / (o[..., -1:] + eps)


def delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    use_kernel: bool = True,
) -> torch.Tensor:
    """Chunked delta rule (same numbers as ``naive.delta_rule_ref``); ``beta (b, h, n)``."""
    _check_chunk(chunk_size)
    if use_kernel and FLA_DELTA_RULE.use(q, seq_len=q.shape[2], heads=q.shape[1]):
        return _fla(FLA_DELTA_RULE, "chunk_delta_rule", q, k, v, beta=beta)
    n = q.shape[2]
    c = min(chunk_size, n)
    qc, kc, vc = _chunks(q, c), _chunks(k, c), _chunks(v, c)
    bc = _chunks(beta.unsqueeze(-1), c)  # padded steps have β = 0: no update
    strict = torch.ones(c, c, dtype=torch.bool, device=q.device).tril(-1)
    lower = (bc * kc @ kc.transpose(-1, -2)).masked_fill(~strict, 0)
    rhs = torch.cat([bc * vc, bc * kc], dim=-1)
    wy = torch.linalg.solve_triangular(lower, rhs, upper=False, unitriangular=True)
    U, W = wy.split([v.shape[-1], k.shape[-1]], dim=-1)
    causal = strict | torch.eye(c, dtype=torch.bool, device=q.device)
    S = q.new_zeros(*q.shape[:2], q.shape[-1], v.shape[-1])
    out = []
    for j in range(qc.shape[2]):
        q_j, k_j = qc[:, :, j], kc[:, :, j]
        u_j = U[:, :, j] - W[:, :, j] @ S  # the chunk's corrected values given S
        scores = (q_j @ k_j.transpose(-1, -2)).masked_fill(~causal, 0)
        out.append(q_j @ S + scores @ u_j)
        S = S + k_j.transpose(-1, -2) @ u_j
    return torch.stack(out, dim=2).flatten(2, 3)[:, :, :n]


@opaque_to_compile  # fla's ops are opaque to dynamo (fla disables them itself)
def _fla(kernel: OptionalKernel, name: str, q, k, v, **kw) -> torch.Tensor:
    """Call a flash-linear-attention op in its ``(batch, n, heads, dim)`` layout, scale 1."""
    fn = getattr(kernel.load(), name)
    params = inspect.signature(fn).parameters
    extra = {"head_first": False} if "head_first" in params else {}
    if "beta" in kw:
        kw["beta"] = kw["beta"].transpose(1, 2).contiguous()
    args = [t.transpose(1, 2).contiguous() for t in (q, k, v)]
    o, _ = fn(*args, scale=1.0, **kw, **extra)
    return o.transpose(1, 2)
