"""The interval-coverage tool counts what it says: each interval against the median of
the runs it was not made from (one run's own, or a pool's)."""

from __future__ import annotations

import pandas as pd
import pytest

from tools.interval_coverage import coverage, main


def _run(speedup: float, low: float, high: float) -> pd.DataFrame:
    return pd.DataFrame({"speedup": [speedup], "ci_low": [low], "ci_high": [high]},
                        index=pd.Index([("train", 16, "x", 256)]))


def test_each_run_against_the_median_of_the_others():
    runs = [_run(2.0, 1.9, 2.1), _run(2.2, 2.0, 2.4), _run(3.0, 2.95, 3.05)]
    # others' medians: run 0 → 2.6 (no), run 1 → 2.5 (no), run 2 → 2.1 (no)
    assert coverage(runs)[:2] == (0, 3)
    runs[0] = _run(2.0, 1.5, 2.7)
    held, total, width = coverage(runs)
    assert (held, total) == (1, 3)
    assert width == pytest.approx(0.2 / 2.2)  # relative half-widths 0.3, 0.091, 0.017


def test_a_pool_against_the_runs_outside_it():
    runs = [_run(2.0, 1.9, 2.1), _run(2.2, 2.0, 2.4), _run(3.0, 2.9, 3.1), _run(2.4, 2.3, 2.5)]
    pooled = _run(2.2, 2.0, 2.8)
    # outside runs 0 and 1: median of 3.0 and 2.4 = 2.7 (held); outside 2 and 3: 2.1 (held)
    assert coverage(runs, [(pooled, {0, 1}), (pooled, {2, 3})])[:2] == (2, 2)
    assert coverage(runs, [(_run(2.2, 2.0, 2.4), {0, 1})])[:2] == (0, 1)


def test_a_pool_as_large_as_the_runs_is_refused_before_anything_is_read(tmp_path, capsys):
    assert main([str(tmp_path / "missing-1"), str(tmp_path / "missing-2"), "--pool", "2"]) == 2
    assert capsys.readouterr().err == "error: --pool 2: give 2 to 1\n"
