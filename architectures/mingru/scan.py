"""The log-space parallel scan of minGRU / minLSTM (Feng et al. 2024, after Heinsen 2023).

Both cells are the positive linear recurrence ``h_t = a_t h_{t-1} + b_t`` with
``a_t ∈ (0, 1)`` and ``b_t > 0`` (the candidate goes through ``g(x) > 0``), so it can be
computed for all t at once in log space::

    a*_t = Σ_{s≤t} log a_s
    log h_t = a*_t + logcumsumexp_{s≤t}(log b_s - a*_s)

O(n) work with ``cumsum``/``logcumsumexp``, no loop over time, and no division by a
vanishing product. Precision: ``a*_t`` grows like ``-t``, so the final sum cancels two
numbers of size ~|a*_t|; in float32 the relative error of ``h`` grows roughly like
``|a*_t| · 6e-8`` (tests/architectures/test_mingru.py measures it at n = 784).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from architectures.scans import linear_scan_ref as recurrence_ref  # the loop, for tests


def softplus(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + e^x)`` to full precision: ``F.softplus`` returns ``x`` itself above 20,
    an error of up to 2e-9 in float64 that would make the log-space gates disagree with
    the sigmoid gates of ``step()``."""
    return torch.logaddexp(x, torch.zeros_like(x))


def g(x: torch.Tensor) -> torch.Tensor:
    """The positive activation of minGRU: ``x + 0.5`` for x ≥ 0, ``sigmoid(x)`` below."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: torch.Tensor) -> torch.Tensor:
    """``log g(x)``, computed without forming g for x < 0 (``-softplus(-x)``)."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -softplus(-x))


def log_space_scan(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """``h`` of ``h_t = a_t h_{t-1} + b_t`` from ``h_{-1} = 0`` along dim 1, given logs."""
    if log_a.shape != log_b.shape or log_a.dim() < 2:
        raise ValueError(f"log_a and log_b must have equal shapes (batch, n, ...), got "
                         f"{tuple(log_a.shape)} and {tuple(log_b.shape)}")  # fmt: skip
    a_star = torch.cumsum(log_a, dim=1)
    return torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1))


__all__ = ["g", "log_g", "log_space_scan", "recurrence_ref", "softplus"]
