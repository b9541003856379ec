"""Checks that keep a broken computation from being timed as a result.

A cell's step is timed thousands of times; a figure is only as good as its worst call.
So every call is checked, not the first (:class:`CallCheck`), at a cost the timing does
not see: each call reduces each floating output (or loss) to one sum on the device, and
the sums are read once per sample, outside the timed region. A sum is finite exactly
when every value summed is (NaN and infinity propagate), up to an overflow of the sum
itself (accumulated in float32, float64 for float64 outputs: values near the dtype's
limit), which is reported as non-finite too. After each sample the inputs are compared
with a copy taken before the first call: a step that changes its input in place times
different work on every call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch


class NonFinite(Exception):
    """The workload's outputs or loss hold NaN or infinity: timing them would report
    the speed of a broken computation as a result."""


class ChangedInput(Exception):
    """The step changed its inputs in place: its calls do not repeat the same work."""


def floating_tensors(result: Any) -> list[torch.Tensor]:
    """The floating (or complex) tensors in ``result``: a tensor, or a tuple, list or dict
    of them, as a workload's call returns."""
    out: list[torch.Tensor] = []

    def walk(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            if x.is_floating_point() or x.is_complex():
                out.append(x.detach())
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)

    walk(result)
    return out


def check_finite(result: Any) -> None:
    """Raise NonFinite if any floating tensor in ``result`` holds NaN or infinity (the
    first call, before timing: the count of bad values is worth its full pass)."""
    for t in floating_tensors(result):
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            what = "the loss" if t.numel() == 1 else "the outputs"
            raise NonFinite(f"{what} hold NaN or infinity on the first call ({bad} of "
                            f"{t.numel()} values); not timed")


def _sum(t: torch.Tensor) -> torch.Tensor:
    if t.is_complex():
        t = torch.view_as_real(t)
    return t.sum(dtype=torch.float64 if t.dtype == torch.float64 else torch.float32)


class CallCheck:
    """``run`` with every call's outputs checked (see the module docstring); :meth:`verify`
    after each sample raises NonFinite naming the first bad call, or ChangedInput."""

    def __init__(self, run: Callable[[], Any], inputs: Sequence[torch.Tensor] = ()) -> None:
        self.run = run
        self.inputs = tuple(inputs)
        self.copies = tuple(t.detach().clone() for t in self.inputs)
        self.calls = 0
        self.sums: list[torch.Tensor] = []
        self.sum_calls: list[int] = []  # the call each sum belongs to

    def __call__(self) -> Any:
        out = self.run()
        self.calls += 1
        for t in floating_tensors(out):
            self.sums.append(_sum(t))
            self.sum_calls.append(self.calls)
        return out

    def verify(self) -> None:
        """Read the sums of the calls since the last verify (one synchronisation) and
        compare the inputs with their copies."""
        if self.sums:
            finite = torch.isfinite(torch.stack([s.to(torch.float64) for s in self.sums]))
            if not bool(finite.all()):
                call = self.sum_calls[int((~finite).nonzero()[0, 0])]
                raise NonFinite(f"the outputs or loss hold NaN or infinity from call {call} "
                                f"on (the calls before were finite); not timed further")
            self.sums.clear()
            self.sum_calls.clear()
        for t, copy in zip(self.inputs, self.copies, strict=True):
            if not torch.equal(t, copy):
                raise ChangedInput(f"the step changed its input in place by call {self.calls}"
                                   " (each call must do the same work); not timed")
