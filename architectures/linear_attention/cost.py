"""Analytic FLOPs and bytes of the linear-attention and DeltaNet mixers (conventions:
``architectures.cost``), for the chunked pure-PyTorch forms of ``chunked.py``.

With ``c = min(chunk_size, n)`` and ``nc = ceil(n/c)`` chunks (the last zero-padded, as
the code pads it), per head of width ``k``:

* linear attention: a masked ``c×c`` score block per chunk (``QKᵀ`` and its product
  with ``[V | 1]``), each chunk's ``KᵀV`` state and the state before it (``Q S``);
* DeltaNet: the WY form's ``c×c`` Gram matrix, a unit-triangular solve per chunk
  (``c(c−1)`` FLOPs per right-hand column, for ``2k`` columns: not a matmul torch's
  FlopCounterMode sees), then per chunk the corrected values, scores, and state update.

flash-linear-attention's fused kernels do the same chunked arithmetic on CUDA.
"""

from __future__ import annotations

from typing import Any

from architectures import cost as C
from architectures.cost import Cost


def _normalize(rows: float, heads: int, dh: int, s: int, *, scaled: bool) -> Cost:
    """``F.normalize(x, dim=-1)`` per head (norm, clamp, divide), times a scale or not."""
    e, vecs = rows * heads * dh, rows * heads
    c = (Cost(2 * e, s * (e + vecs)) + C.pointwise(vecs, s)
         + Cost(e, s * (2 * e + vecs)))
    return c + (C.pointwise(e, s) if scaled else Cost())


def linear_attention(m: Any, pass_: str, batch: int, n: int, s: int) -> Cost:
    """``LinearAttentionMixer``: ``forward`` (``SEQUENCE``) or one ``step``."""
    d, h = m.qkv.in_features, m.n_heads
    dh = d // h
    v1 = dh + 1  # values with the normaliser's column of ones
    P = batch * h
    if pass_ == C.STEP:
        st = P * dh * v1
        return C.total([
            C.linear(batch, d, 3 * d, s),
            C.write(P, s), C.copy(P * v1, s),  # [v | 1]
            2 * C.pointwise(batch * d, s),  # phi(k)
            Cost(st, s * (batch * d + P * v1 + st)), C.pointwise(st, s, operands=3),  # S +=
            2 * C.pointwise(batch * d, s),  # phi(q)
            Cost(st, s * (batch * d + 2 * st)), C.reduce(st, P * v1, s),  # q·S
            C.pointwise(P, s), Cost(P * dh, s * (2 * P * dh + P)),  # normalised
            C.copy(batch * d, s), C.linear(batch, d, d, s)])
    rows = batch * n
    c = min(m.chunk_size, n)
    nc = -(-n // c)
    Q = P * nc  # (batch·heads·chunks) blocks
    return C.total([
        C.linear(rows, d, 3 * d, s),
        4 * C.pointwise(rows * d, s),  # phi(q), phi(k): elu + 1
        C.write(P * n, s), C.copy(P * n * v1, s),  # [v | 1]
        C.copy(Q * c * (2 * dh + v1), s),  # chunked (padded) q, k, [v | 1]
        C.matmul(Q, c, dh, c, s), C.pointwise(Q * c * c, s),  # masked scores
        C.matmul(Q, dh, c, v1, s),  # each chunk's state
        C.pointwise(Q * dh * v1, s), C.write(P * dh * v1, s), C.copy(Q * dh * v1, s),
        C.matmul(Q, c, c, v1, s), C.matmul(Q, c, dh, v1, s),  # within + before the chunk
        C.pointwise(Q * c * v1, s, operands=3),
        C.pointwise(P * n, s), Cost(P * n * dh, s * (2 * P * n * dh + P * n)),  # normalised
        C.copy(rows * d, s), C.linear(rows, d, d, s)])


def deltanet(m: Any, pass_: str, batch: int, n: int, s: int) -> Cost:
    """``DeltaNetMixer``: ``forward`` (``SEQUENCE``) or one ``step``."""
    d, h, dh = m.qkv.in_features, m.n_heads, m.head_dim
    K = m.conv.kernel_size
    P = batch * h
    step = pass_ == C.STEP
    rows = batch if step else batch * n
    parts = [C.linear(rows, d, 3 * d, s, bias=False)]
    if step:  # the short convolution's window
        e = batch * 3 * d
        parts += [C.copy(e * K, s), Cost(e * K, s * (2 * e * K + 3 * d * K)),
                  C.reduce(e * K, e, s), Cost(e, s * (2 * e + 3 * d))]
    else:
        parts.append(C.conv1d(batch, 3 * d, n + K - 1, K, 1, n, 3 * d, s))
    parts += [C.pointwise(rows * 3 * d, s),  # silu
              _normalize(rows, h, dh, s, scaled=True), _normalize(rows, h, dh, s, scaled=False),
              C.linear(rows, d, h, s, bias=False), C.pointwise(rows * h, s)]  # beta
    if step:
        st = P * dh * dh
        parts += [Cost(st, s * (batch * d + 2 * st)), C.reduce(st, batch * d, s),  # Sᵀk
                  C.pointwise(batch * d, s, operands=3),  # v - Sᵀk
                  Cost(batch * d, s * (2 * batch * d + P)),  # β ·
                  Cost(st, s * (2 * batch * d + st)), C.pointwise(st, s, operands=3),  # S +=
                  Cost(st, s * (batch * d + 2 * st)), C.reduce(st, batch * d, s),  # Sᵀq
                  C.rms_norm(P, dh, s), C.linear(batch, d, d, s, bias=False)]
        return C.total(parts)
    c = min(m.chunk_size, n)
    nc = -(-n // c)
    Q = P * nc
    e = Q * c * dh  # chunked values of one of q, k, v
    parts += [C.copy(3 * e + Q * c, s),  # q, k, v, beta chunked (padded)
              Cost(e, s * (2 * e + Q * c)), C.matmul(Q, c, dh, c, s),  # β·K Kᵀ
              C.pointwise(Q * c * c, s),  # strictly lower part
              2 * Cost(e, s * (2 * e + Q * c)), C.copy(2 * e, s),  # [β V | β K]
              Cost(Q * c * (c - 1) * 2 * dh, s * Q * (c * c + 4 * c * dh)),  # the solve
              C.write(P * dh * dh, s)]
    per_chunk = (C.matmul(P, c, dh, dh, s) + C.pointwise(P * c * dh, s, operands=3)  # U - W S
                 + C.matmul(P, c, dh, c, s) + C.pointwise(P * c * c, s)  # masked scores
                 + C.matmul(P, c, dh, dh, s) + C.matmul(P, c, c, dh, s)  # q S + scores u
                 + C.pointwise(P * c * dh, s, operands=3)
                 + C.matmul(P, dh, c, dh, s) + C.pointwise(P * dh * dh, s, operands=3))  # S +=
    parts += [nc * per_chunk, C.copy(e, s),  # outputs stacked
              C.rms_norm(batch * h * n, dh, s), C.copy(rows * d, s),
              C.linear(rows, d, d, s, bias=False)]
    return C.total(parts)


__all__ = ["deltanet", "linear_attention"]
