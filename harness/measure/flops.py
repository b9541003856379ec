"""FLOPs of one call: counted by ``torch.utils.flop_counter``, or analytic from a formula.

Counted (``count_flops``): only ops with a registered formula count (elementwise ops,
FFTs and scans count as zero), so the number is a lower bound on the arithmetic actually
done, and the call runs under a dispatch mode. Analytic (``analytic_cost``): whatever
the workload's ``Prepared.cost`` says, from the adapter's own formulas over the cell's
shape: every op it declares, nothing run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def count_flops(fn: Callable[[], object]) -> float | None:
    """FLOPs of one ``fn()`` call (run for real once), or None when unknown.

    None when counting fails for any reason or counts zero (no countable op), so a caller
    never reports "0 FLOP/s" for work the counter cannot see. Never raises.
    """
    try:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            fn()
        total = float(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - any failure means "unknown", by contract
        return None
    return total if total > 0 else None


def analytic_cost(cost: Callable[[], Any] | None) -> tuple[float | None, float | None]:
    """``(flops, bytes)`` of one call from ``cost()`` (an object with ``flops`` and
    ``bytes``, or None), each None when unknown: no formula, a formula that failed, or a
    figure that is not a positive finite number (never a 0 that would read as "free").
    Never raises: a broken formula must not fail the cell it describes."""
    if cost is None:
        return None, None
    try:
        c = cost()
        if c is None:
            return None, None
        return positive(c.flops), positive(c.bytes)
    except Exception:  # noqa: BLE001 - any failure means "unknown", by contract
        return None, None


def positive(value: Any) -> float | None:
    """``value`` as a finite positive float, else None (a figure that cannot be one)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None
