"""Continuous-time Legendre Delay Network and its zero-order-hold discretisation.

``legendre_ab`` is the LDN of Voelker et al. (2019); ``zoh`` discretises any LTI pair by
the matrix exponential of the augmented matrix. Everything is float64: these matrices
are built once per model and cast once, so precision costs nothing here.
"""

from __future__ import annotations

import torch


def _check_order_theta(order: int, theta: float) -> None:
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be an integer >= 1, got {order!r}")
    if not isinstance(theta, (int, float)) or isinstance(theta, bool) or not theta > 0:
        raise ValueError(f"theta must be a number > 0, got {theta!r}")


def legendre_ab(order: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Continuous-time ``(A, B)`` of the Legendre Delay Network, float64.

    A[i, j] = (2i+1)/θ · (−1 if i < j else (−1)^(i−j+1)),  B[i] = (2i+1)(−1)^i / θ.
    """
    _check_order_theta(order, theta)
    i = torch.arange(order, dtype=torch.float64)
    scale = (2 * i + 1) / float(theta)
    ii, jj = torch.meshgrid(i, i, indexing="ij")
    sign = torch.where(ii < jj, -1.0, (-1.0) ** (ii - jj + 1))
    A = scale[:, None] * sign
    B = scale * (-1.0) ** i
    return A, B


def legendre_ab_ref(order: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Element-by-element loop transcription of the formula, for tests."""
    _check_order_theta(order, theta)
    A = torch.zeros(order, order, dtype=torch.float64)
    B = torch.zeros(order, dtype=torch.float64)
    for r in range(order):
        for c in range(order):
            A[r, c] = (2 * r + 1) / theta * (-1 if r < c else (-1) ** (r - c + 1))
        B[r] = (2 * r + 1) * (-1) ** r / theta
    return A, B


def zoh(A: torch.Tensor, B: torch.Tensor, dt: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-order-hold discretisation: ``expm([[A, B], [0, 0]] dt)`` → ``(Abar, Bbar)``.

    ``B`` may be a vector ``(order,)`` (returned as a vector) or a matrix ``(order, k)``.
    """
    if not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt!r}")
    if A.dim() != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be square (order, order), got shape {tuple(A.shape)}")
    vector = B.dim() == 1
    B2 = B[:, None] if vector else B
    if B2.shape[0] != A.shape[0]:
        raise ValueError(f"B has {B2.shape[0]} rows but A is {A.shape[0]}x{A.shape[0]}")
    n, k = A.shape[0], B2.shape[1]
    M = torch.zeros(n + k, n + k, dtype=torch.float64)
    M[:n, :n] = A.double()
    M[:n, n:] = B2.double()
    E = torch.linalg.matrix_exp(M * dt)
    Abar, Bbar = E[:n, :n], E[:n, n:]
    return Abar, (Bbar[:, 0] if vector else Bbar)
