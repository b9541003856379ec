"""Analytic FLOPs and bytes of a Mamba block's mixer (conventions: ``architectures.cost``).

The selective scan runs as ``architectures.scans.linear_scan`` (the pure-PyTorch path):
the odd-even recursion does, at each level over ``m`` steps of ``E = d_inner·d_state``
values per sequence, 5 elementwise ops on ``m/2`` of them (two products and a sum for
the half-length problem, a multiply-add for the even states): ``2.5·m·E`` FLOPs per
level, about ``5·n·E`` in all. mamba-ssm's fused kernel does the same arithmetic in one
pass, without the intermediate traffic counted here.
"""

from __future__ import annotations

from typing import Any

from architectures import cost as C
from architectures.cost import Cost


def linear_scan(batch: int, m: int, elements: int, s: int) -> Cost:
    """``linear_scan(a, b)`` for ``a``, ``b`` of shape ``(batch, m, elements...)``, op by op."""
    if m == 1:
        return Cost()
    parts: list[Cost] = []
    if m % 2:  # one neutral step appended to a and b
        parts += [2 * C.write(batch * elements, s), 2 * C.copy(batch * (m + 1) * elements, s)]
        m += 1
    half = batch * (m // 2) * elements
    parts += [3 * C.pointwise(half, s, operands=3),  # a_odd·a_even, a_odd·b_even + b_odd
              linear_scan(batch, m // 2, elements, s),
              C.write(batch * elements, s), C.copy(half, s),  # h before each even step
              2 * C.pointwise(half, s, operands=3),  # a_even·h + b_even
              C.copy(2 * half, s)]  # interleaved back
    return C.total(parts)


def mixer(m: Any, pass_: str, batch: int, n: int, s: int) -> Cost:
    """``MambaMixer.forward`` over ``(batch, n, d_model)`` (``SEQUENCE``) or one ``step``."""
    dm, di, N, r = m.in_proj.in_features, m.d_inner, m.d_state, m.dt_rank
    K = m.conv.kernel_size
    step = pass_ == C.STEP
    rows = batch if step else batch * n
    E = rows * di  # (rows, d_inner) values
    EN = E * N  # (rows, d_inner, d_state) values
    parts = [C.linear(rows, dm, 2 * di, s, bias=False)]
    if step:  # the window of the last K inputs times the taps, summed
        parts += [C.copy(batch * di * K, s), Cost(E * K, s * (2 * E * K + di * K)),
                  C.reduce(E * K, E, s), Cost(E, s * (2 * E + di))]
    else:
        parts.append(C.conv1d(batch, di, n + K - 1, K, 1, n, di, s))
    parts += [C.pointwise(E, s),  # silu
              C.linear(rows, di, r + 2 * N, s, bias=False),  # x_proj
              C.linear(rows, r, di, s), C.pointwise(E, s),  # dt_proj, softplus
              2 * C.pointwise(di * N, s)]  # A = -exp(A_log)
    discretise = [Cost(EN, s * (E + di * N + EN)), C.pointwise(EN, s),  # exp(Δ A)
                  Cost(EN, s * (E + rows * N + EN))]  # Δ B
    if step:
        parts += [*discretise, C.pointwise(EN, s, operands=3),  # ·h
                  Cost(EN, s * (2 * EN + E)), C.pointwise(EN, s, operands=3),  # ·u, +
                  Cost(EN, s * (EN + rows * N + EN)), C.reduce(EN, E, s)]  # C·h
    else:
        parts += [*discretise[:2], C.pointwise(E, s, operands=3),  # Δ·u
                  discretise[2], linear_scan(batch, n, di * N, s),
                  C.matmul(rows, di, N, 1, s)]  # einsum bnds,bns->bnd: a bmm
    parts += [2 * C.pointwise(E, s, operands=3),  # + D·u
              C.pointwise(E, s), C.pointwise(E, s, operands=3),  # ·silu(z)
              C.linear(rows, di, dm, s, bias=False)]
    return C.total(parts)


__all__ = ["linear_scan", "mixer"]
