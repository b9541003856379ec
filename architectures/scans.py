"""The diagonal linear recurrence ``h_t = a_t ⊙ h_{t-1} + b_t``, shared by the scan families.

Mamba's selective scan and minGRU/minLSTM are both this recurrence (with different ``a``
and ``b``). ``linear_scan`` computes it with a work-efficient parallel (Blelloch / odd-even)
scan: O(n) work, O(log n) sequential depth, no loop over time. ``linear_scan_ref`` is the
loop over time, written to be obviously right, that tests and ``selftest`` compare against.
"""

from __future__ import annotations

import torch


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
    """The recurrence as a loop over time (plain values), for tests."""
    h = torch.zeros_like(b[:, 0])
    out = []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


__all__ = ["linear_scan", "linear_scan_ref"]
