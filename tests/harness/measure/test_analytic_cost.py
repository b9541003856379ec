"""``analytic_cost``: a workload's formula read into a record's two figures, safely."""

from __future__ import annotations

from harness.measure.flops import analytic_cost


def test_analytic_cost_never_raises_and_never_says_zero():
    class C:
        def __init__(self, flops, bytes_):
            self.flops, self.bytes = flops, bytes_

    assert analytic_cost(None) == (None, None)
    assert analytic_cost(lambda: None) == (None, None)
    assert analytic_cost(lambda: C(10, 20)) == (10.0, 20.0)
    assert analytic_cost(lambda: C(0, float("nan"))) == (None, None)
    assert analytic_cost(lambda: C(-1, "x")) == (None, None)
    assert analytic_cost(lambda: 1 / 0) == (None, None)
