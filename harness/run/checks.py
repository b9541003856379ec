"""Checks that keep a broken computation from being timed as a result.

A cell's step is timed thousands of times; a figure is only as good as its worst call.
So every call is checked, not the first (:class:`CallCheck`), at a cost the timing does
not see: each call reduces each floating output (or loss) to one sum on the device, and
the sums are read once per sample, outside the timed region. A sum is finite exactly
when every value summed is (NaN and infinity propagate), up to an overflow of the sum
itself (accumulated in float32, float64 for float64 outputs: values near the dtype's
limit), which is reported as non-finite too. A step that changes its inputs in place
times different work on every call: after each sample the inputs' version counters are
compared (every in-place op bumps them), and after each round (:meth:`CallCheck.compare`)
the inputs themselves with a copy taken before the first call (a write through ``.data``
does not bump the counter). The checks cost 4-43 us a call on the bench's CPU cells,
under 0.4% of each (``python -m tools.check_cost``).
"""

from __future__ import annotations

import math
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
    if t.dim() == 0:  # a loss: the value itself
        return t
    if t.is_complex():
        t = torch.view_as_real(t)
    return t.sum(dtype=torch.float64 if t.dtype == torch.float64 else torch.float32)


class CallCheck:
    """``run`` with every call's outputs checked (see the module docstring). :meth:`verify`
    after each sample raises NonFinite naming the first bad call, or ChangedInput;
    :meth:`compare` after a round compares the inputs' values."""

    def __init__(self, run: Callable[[], Any], inputs: Sequence[torch.Tensor] = ()) -> None:
        self.run = run
        self.inputs = tuple(inputs)
        self.copies = tuple(t.detach().clone() for t in self.inputs)
        self.versions = tuple(t._version for t in self.inputs)
        self.calls = 0
        self.sums: list[torch.Tensor] = []
        self.sum_calls: list[int] = []  # the call each sum belongs to

    def __call__(self) -> Any:
        out = self.run()
        self.calls += 1
        for t in floating_tensors(out):
            self.sums.append(_sum(t.detach()))
            self.sum_calls.append(self.calls)
        return out

    def verify(self) -> None:
        """Read the sums of the calls since the last verify (one synchronisation) and the
        inputs' version counters."""
        if self.sums:
            values = (torch.stack(self.sums).tolist() if len(self.sums) > 1
                      else [self.sums[0].item()])
            bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
            if bad is not None:
                raise NonFinite(f"the outputs or loss hold NaN or infinity from call "
                                f"{self.sum_calls[bad]} on (the calls before were finite); "
                                "not timed further")
            self.sums.clear()
            self.sum_calls.clear()
        if any(t._version != v for t, v in zip(self.inputs, self.versions, strict=True)):
            raise self._changed()

    def compare(self) -> None:
        """The inputs' values against their copies (after a round: a full pass)."""
        if not all(torch.equal(t, c) for t, c in zip(self.inputs, self.copies, strict=True)):
            raise self._changed()

    def _changed(self) -> ChangedInput:
        return ChangedInput(f"the step changed its input in place by call {self.calls} "
                            "(each call must do the same work); not timed")
