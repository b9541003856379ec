"""Language-modelling claims on loss curves (harness.report.lm_claims): constructed curves
whose token multiplier, loss gaps, crossings and power-law exponent are known exactly.

Losses are made linear in log tokens, so interpolation in (log tokens, loss) is exact
there and any other interpolation (linear in tokens, nearest evaluation) is visibly off.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from harness.report import lm_claims
from harness.report.lm_claims import (
    Curve,
    crossing,
    first_reach,
    fit_power_law,
    gap_ratio,
    loss_gain,
    loss_scaling,
    seed_interval,
    token_multiplier,
)

GRID = np.geomspace(1e3, 1e6, 13)  # the subject's evaluations; its budget is 1e6 tokens
OFF_GRID = np.geomspace(2.7e3, 4.1e7, 19)  # the reference's: no point at 10x the budget


def loss(tokens, offset: float = 0.0):
    """A learning curve straight on a log-token axis: 3 − 0.2 ln(tokens) + offset."""
    return 3.0 + offset - 0.2 * np.log(np.asarray(tokens, dtype=float))


def shifted(grid, factor: float, offset: float = 0.0) -> Curve:
    """The curve ``loss(·, offset)`` needing ``factor`` times the tokens for each loss."""
    return Curve(grid, loss(grid / factor, offset))


# ---------------------------------------------------------------- claim 1


def test_a_curve_shifted_tenfold_in_tokens_needs_ten_times_the_tokens():
    offsets = (0.0, 0.05, 0.3)  # per seed: different curves, the same shift
    sub = [Curve(GRID, loss(GRID, o)) for o in offsets]
    for grid in (GRID * 10, OFF_GRID):  # exactly the shifted points, and other points
        res = token_multiplier(sub, [shifted(grid, 10, o) for o in offsets])
        assert res.per_seed == pytest.approx([10] * 3, abs=1e-6)
        assert (res.value, res.low, res.high) == pytest.approx((10, 10, 10), abs=1e-6)
        assert not res.is_bound and res.n_seeds == 3


def test_seed_dependent_shifts_give_their_median_and_range():
    sub = {s: Curve(GRID, loss(GRID, 0.1 * s)) for s in (1, 2, 3)}
    ref = {s: shifted(OFF_GRID, k, 0.1 * s) for s, k in ((1, 12), (2, 8), (3, 10))}
    res = token_multiplier(sub, ref, subject_label="S", reference_label="R")
    assert res.value == pytest.approx(10, abs=1e-6)
    assert (res.low, res.high) == pytest.approx((8, 12), abs=1e-6)
    assert res.method == "range" and not res.is_bound
    assert res.text() == "10x [8, 12] (3 seeds, range)"


def test_a_target_never_reached_is_a_bound_never_a_number():
    sub = [Curve(GRID, loss(GRID, o)) for o in (0.0, 0.1, 0.2)]
    short = OFF_GRID[OFF_GRID < 5e6]  # ends before 10x the subject's budget
    res = token_multiplier(sub, [shifted(short, 10, o) for o in (0.0, 0.1, 0.2)],
                           subject_label="S", reference_label="R")
    assert res.is_bound and res.bound == "more"
    assert res.value == pytest.approx(short[-1] / GRID[-1])
    assert res.text().startswith(f"more than {res.value:.3g}x (R never reached the S's loss")
    assert "[" not in res.text()  # no interval: the value is not a measurement


def test_a_bound_that_does_not_move_the_median_keeps_the_number():
    sub = [Curve(GRID, loss(GRID)) for _ in range(3)]
    short = OFF_GRID[OFF_GRID < 2.5e7]  # ends past 10x the budget, short of 30x
    ref = [shifted(OFF_GRID, 8), shifted(OFF_GRID, 10), shifted(short, 30)]
    res = token_multiplier(sub, ref)
    assert not res.is_bound and res.value == pytest.approx(10)
    assert res.low == pytest.approx(8) and res.high == math.inf  # the top is open
    assert res.per_seed_bound == ("", "", "more")
    # two of three never reach it: the median is only known from below
    ref[1] = shifted(short, 30)
    res = token_multiplier(sub, ref)
    assert res.is_bound and res.value == pytest.approx(short[-1] / GRID[-1])
    assert "in 2 of 3 seeds" in res.text()


def test_the_multiplier_pairs_seeds():
    with pytest.raises(ValueError, match="pairs seeds"):
        token_multiplier({0: Curve(GRID, loss(GRID))}, {1: shifted(OFF_GRID, 10)})


# ---------------------------------------------------------------- claims 2 and 3


def _roles(d1: list[float], d2: list[float]):
    """Subject, reference and baseline curves whose gaps at 1e6 tokens are d1 and d2 per
    seed; each on its own grid, the subject running past 1e6 and improving further."""
    sub = [Curve(GRID * 4, loss(GRID * 4, 0.1 * s)) for s in range(len(d1))]
    ref_grid = np.geomspace(2.7e3, 1.3e6, 11)
    ref = [Curve(ref_grid, loss(ref_grid, 0.1 * s + a)) for s, a in enumerate(d1)]
    base_grid = np.geomspace(1.5e3, 1e6, 9)
    base = [Curve(base_grid, loss(base_grid, 0.1 * s + a + b))
            for s, (a, b) in enumerate(zip(d1, d2, strict=True))]
    return sub, ref, base


def test_equal_gaps_give_a_ratio_of_one_at_equal_tokens():
    res = gap_ratio(*_roles([0.2] * 3, [0.2] * 3))
    assert res.upper_gap.tokens == pytest.approx(1e6)  # the common budget
    assert res.upper_gap.value == pytest.approx(0.2) and res.lower_gap.value == pytest.approx(0.2)
    assert res.ratio == pytest.approx(1.0)
    res = gap_ratio(*_roles([0.1, 0.1, 0.1], [0.2, 0.2, 0.2]))
    assert res.ratio == pytest.approx(0.5)  # d1 / d2, not d2 / d1
    res = gap_ratio(*_roles([0.1, 0.2, 0.3], [0.2, 0.1, 0.4]))
    assert res.ratio == pytest.approx(1.0)  # median over median
    assert (res.low, res.high) == pytest.approx((0.1 / 0.4, 0.3 / 0.1))  # the box's corners


def test_the_ratio_is_undefined_when_the_lower_gap_straddles_zero():
    res = gap_ratio(*_roles([0.2] * 3, [-0.1, 0.05, 0.1]), baseline_label="B",
                    reference_label="R")
    assert res.ratio is None and res.lower_gap.low < 0 < res.lower_gap.high
    assert res.text().startswith("undefined: the B–R gap's interval includes 0")


def test_attention_gain_per_seed_gains_give_median_and_range():
    gains = [0.05, 0.2, 0.1]
    base = {s: Curve(GRID, loss(GRID, s)) for s in range(3)}
    improved = {s: Curve(OFF_GRID, loss(OFF_GRID, s - g)) for s, g in enumerate(gains)}
    res = loss_gain(base, improved)
    assert res.paired and res.tokens == pytest.approx(GRID[-1])
    assert res.per_seed == pytest.approx(gains)
    assert res.value == pytest.approx(0.1)
    assert (res.low, res.high) == pytest.approx((0.05, 0.2))
    assert res.method == "range"


def test_unpaired_seeds_compare_medians_with_a_widened_range():
    base = {s: Curve(GRID, loss(GRID, o)) for s, o in ((0, 0.3), (1, 0.4), (2, 0.5))}
    improved = {s: Curve(GRID, loss(GRID, o)) for s, o in ((7, 0.0), (8, 0.1))}
    res = loss_gain(base, improved)
    assert not res.paired and res.value == pytest.approx(0.4 - 0.05)
    assert (res.low, res.high) == pytest.approx((0.3 - 0.1, 0.5 - 0.0))


# ---------------------------------------------------------------- crossings


def test_two_curves_cross_where_they_are_equal_on_a_log_axis():
    # 2 − 0.1 ln x = 1.5 − 0.05 ln x at ln x = 10
    xa, xb = np.geomspace(1e2, 1e6, 7), np.geomspace(3e2, 3e5, 5)
    at = crossing(xa, 2 - 0.1 * np.log(xa), xb, 1.5 - 0.05 * np.log(xb))
    assert at == pytest.approx(math.exp(10), rel=1e-9)
    # one below the other throughout: no crossing
    assert crossing(xa, 1 - 0.1 * np.log(xa), xb, 1.5 - 0.05 * np.log(xb)) is None
    # touching without changing sides is no crossing either
    assert crossing([1, 10, 100], [2, 1, 2], [1, 10, 100], [1, 1, 1]) is None


def test_first_reach_interpolates_on_log_tokens_and_says_when_it_cannot():
    r = first_reach(GRID, loss(GRID), float(loss(2e5)))
    assert r.x == pytest.approx(2e5, rel=1e-9) and not r.at_first
    never = first_reach(GRID, loss(GRID), float(loss(2e6)))
    assert never.x is None and never.x_max == GRID[-1]
    assert never.text() == "more than 1M"
    first = first_reach(GRID, loss(GRID), 10.0)
    assert first.at_first and first.x == GRID[0]


def test_a_stored_curve_drops_the_evaluation_before_training_and_non_finite_rows():
    from workloads.tasks.train_loop import CURVE_COLUMNS

    assert list(lm_claims.DEFAULT_COLUMNS) == CURVE_COLUMNS[:4]  # rows without names
    rows = [[0, 0.0, 0, 5.0, 3.5, None], [10, 1.0, 640, 2.0, 1.4, 2.1],
            [20, 2.0, 1280, None, None, 1.9], [30, 3.0, 1920, 1.5, 1.0, 1.6]]
    c = Curve.from_rows(rows, CURVE_COLUMNS)
    assert c.tokens.tolist() == [640, 1920] and c.loss.tolist() == [2.0, 1.5]
    assert (c.budget, c.final) == (1920, 1.5)


# ---------------------------------------------------------------- intervals


def test_under_five_seeds_the_interval_is_the_range():
    iv = seed_interval([3.0, 1.0, 2.0])
    assert (iv.value, iv.low, iv.high, iv.method) == (2.0, 1.0, 3.0, "range")
    assert iv.text() == "2 [1, 3] (3 seeds, range)"


def test_from_five_seeds_the_interval_is_a_bootstrap_inside_the_range():
    values = [1.0, 1.9, 2.2, 2.6, 3.1, 4.0]
    iv = seed_interval(values)
    assert iv.method == "bootstrap" and iv.value == pytest.approx(np.median(values))
    assert min(values) <= iv.low <= iv.value <= iv.high <= max(values)
    assert (iv.low, iv.high) != (min(values), max(values))  # not the range again
    assert seed_interval(values) == iv  # a fixed seed: the same report every time
    res = token_multiplier([Curve(GRID, loss(GRID))] * 6,
                           [shifted(OFF_GRID, k) for k in (8, 9, 10, 10.5, 11, 12)])
    assert res.method == "bootstrap" and 8 <= res.low <= res.value <= res.high <= 12


# ---------------------------------------------------------------- power laws


def _scaling_runs(n_seeds: int, alpha: float = 0.3, noise: float = 0.01):
    rng = np.random.default_rng(1234)
    params, curves, seeds = [], [], []
    for s in range(n_seeds):
        for n in (1e5, 3e5, 1e6, 3e6, 1e7):
            final = 5.0 * n**-alpha * math.exp(rng.normal(0, noise))
            curves.append(Curve(GRID, final + 0.5 * (np.log(GRID[-1]) - np.log(GRID))))
            params.append(n)
            seeds.append(s)
    return params, curves, seeds


@pytest.mark.parametrize(("n_seeds", "method"), [(3, "t"), (6, "bootstrap")])
def test_a_noisy_power_law_is_fitted_back(n_seeds, method):
    res = loss_scaling(*_scaling_runs(n_seeds))
    assert res.fit.method == method
    assert res.low <= 0.3 <= res.high and res.high - res.low < 0.2
    assert res.alpha == pytest.approx(0.3, abs=0.02)  # loss falls with N: alpha > 0
    assert res.prefactor == pytest.approx(5.0, rel=0.2)


def test_the_generalised_fit_recovers_an_exact_exponent():
    x = np.array([64, 128, 256, 512, 1024], float)
    fit = fit_power_law(x, 2 * x**1.5)
    assert fit.exponent == pytest.approx(1.5) and fit.prefactor == pytest.approx(2)
    assert fit.high - fit.low < 1e-6 and fit.method == "t"
    with pytest.raises(ValueError, match="at least 3 distinct"):
        fit_power_law([1, 2, 1, 2], [1, 2, 1.1, 2.1])


# ---------------------------------------------------------------- name-blind


def test_the_module_names_no_architecture():
    import architectures

    source = Path(lm_claims.__file__).read_text().lower()
    named = [a for a in architectures.available()
             if re.search(rf"(?<![\w-]){re.escape(a)}(?![\w-])", source)]
    assert named == []
