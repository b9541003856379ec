"""FLOPs of one call, counted by ``torch.utils.flop_counter`` (matmul, conv, attention, ...).

Only ops with a registered formula count (elementwise ops, FFTs and scans count as zero),
so the number is a lower bound on the arithmetic actually done; achieved FLOP/s derived
from it is meaningful for matmul-dominated models and understated for the rest.
"""

from __future__ import annotations

from collections.abc import Callable


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
