"""Data-efficiency and scaling claims of a language-modelling comparison (Chilkuri et al.,
arXiv 2110.02402), checked on held-out loss curves.

Every function takes curves by *role* and the role's label for the text, never by model:
the suite decides which model plays the subject, the reference and the baseline. A curve
is held-out loss (lower is better) against tokens seen; losses are compared at equal
tokens, interpolated linearly in (log tokens, loss) between evaluations, because learning
curves are close to straight on a log-token axis and far from straight on a linear one.

Seeds are few, so an interval over seeds follows one rule (:func:`seed_interval`): with
fewer than :data:`MIN_BOOTSTRAP_SEEDS` seeds it is the seeds' range (a percentile
bootstrap of 2–4 values undercovers badly, see :mod:`harness.report.bootstrap`), from
that many on a percentile bootstrap of the median over seeds. A value known only as a
bound (a curve that never reached its target) is never reported as a number when it
moves the median.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

MIN_BOOTSTRAP_SEEDS = 5  # below this an interval over seeds is their range
N_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # fixed: a report reads the same every time it is built
MIN_FIT_SIZES = 3  # two sizes always fit a line exactly (as in harness.report.scaling)
# where a stored curve row keeps tokens seen and the metric when it names no columns
# (the order of workloads.tasks.train_loop.CURVE_COLUMNS, not imported: it brings torch)
TOKENS_COLUMN, METRIC_COLUMN = "tokens_seen", "metric"
DEFAULT_COLUMNS = ("step", "wall_s", TOKENS_COLUMN, METRIC_COLUMN)

ArrayLike = Sequence[float] | np.ndarray


# ---------------------------------------------------------------- formatting


def _num(v: float) -> str:
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return f"{v:.3g}"


def count_text(n: float) -> str:
    """``1.6M``, ``80k``: token counts as a reader says them."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.3g}"


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _interval(low: float, high: float) -> str:
    close = ")" if math.isinf(high) else "]"
    open_ = "(" if math.isinf(low) else "["
    return f"{open_}{_num(low)}, {_num(high)}{close}"


# ---------------------------------------------------------------- curves


def _clean(x: ArrayLike, y: ArrayLike, *, log_y: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Finite points at positive x (a log axis has no place for tokens 0, the evaluation
    before training), x strictly increasing; ``log_y`` also needs positive y."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-d and the same length, got {x.shape}, {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0)
    if log_y:
        keep &= y > 0
    x, y = x[keep], y[keep]
    if len(x) == 0:
        raise ValueError("a curve needs at least one finite point at positive x")
    if np.any(np.diff(x) <= 0):
        raise ValueError("a curve's x must be strictly increasing")
    return x, y


@dataclass(frozen=True, eq=False)
class Curve:
    """Held-out loss against tokens seen, one training run: tokens strictly increasing and
    positive, losses finite (points that are not are dropped when built)."""

    tokens: np.ndarray
    loss: np.ndarray

    def __post_init__(self) -> None:
        x, y = _clean(self.tokens, self.loss)
        object.__setattr__(self, "tokens", x)
        object.__setattr__(self, "loss", y)

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]], columns: Sequence[str] | None = None,
                  x: str = TOKENS_COLUMN) -> Curve:
        """From a record's stored curve rows (``metrics.curve``), named by its
        ``curve_columns``, against column ``x`` (another is "wall_s"); rows whose metric
        is None (not finite) are dropped."""
        names = list(columns or DEFAULT_COLUMNS)
        i, j = names.index(x), names.index(METRIC_COLUMN)
        pts = [(r[i], r[j]) for r in rows if r[j] is not None and r[i] is not None]
        return cls(np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float))

    @property
    def budget(self) -> float:
        """Tokens at the last (finite) evaluation."""
        return float(self.tokens[-1])

    @property
    def final(self) -> float:
        """Loss at the last (finite) evaluation."""
        return float(self.loss[-1])

    def at(self, tokens: float) -> float:
        """Loss at ``tokens``, interpolated in (log tokens, loss); never extrapolated."""
        lo, hi = self.tokens[0], self.tokens[-1]
        if not lo * (1 - 1e-12) <= tokens <= hi * (1 + 1e-12):
            raise ValueError(f"{tokens:g} tokens is outside the curve's [{lo:g}, {hi:g}]")
        return float(np.interp(math.log(tokens), np.log(self.tokens), self.loss))


CurveLike = Curve | tuple[ArrayLike, ArrayLike]
Seeds = Mapping[Hashable, CurveLike] | Sequence[CurveLike]


def _as_curve(c: CurveLike) -> Curve:
    return c if isinstance(c, Curve) else Curve(*c)


def _by_seed(curves: Seeds) -> dict[Hashable, Curve]:
    """Seed → curve; a sequence's seeds are its indices."""
    items = curves.items() if isinstance(curves, Mapping) else enumerate(curves)
    out = {seed: _as_curve(c) for seed, c in items}
    if not out:
        raise ValueError("no curves")
    return out


@dataclass(frozen=True)
class Reach:
    """Where a curve first reached a level: ``x`` interpolated between the evaluations
    that bracket it; None when it never did within ``x_max``. ``at_first``: reached at
    the first evaluation already, so ``x`` is only an upper bound."""

    x: float | None
    x_max: float
    at_first: bool = False

    @property
    def reached(self) -> bool:
        return self.x is not None

    def text(self) -> str:
        if self.x is None:
            return f"more than {count_text(self.x_max)}"
        return f"at most {count_text(self.x)}" if self.at_first else count_text(self.x)


def first_reach(x: ArrayLike, y: ArrayLike, target: float, *, higher_is_better: bool = False,
                log_y: bool = False) -> Reach:
    """The smallest x at which y first reaches ``target`` (``y <= target``, or ``>=`` when
    higher is better), linear in (log x, y) — or (log x, log y) with ``log_y`` — between
    the last evaluation short of it and the first one there."""
    x, y = _clean(x, y, log_y=log_y)
    sign = -1.0 if higher_is_better else 1.0
    v, t = (np.log(y), math.log(target)) if log_y else (y, target)
    hit = np.flatnonzero(sign * v <= sign * t)
    if len(hit) == 0:
        return Reach(None, float(x[-1]))
    i = int(hit[0])
    if i == 0:
        return Reach(float(x[0]), float(x[-1]), at_first=True)
    frac = (v[i - 1] - t) / (v[i - 1] - v[i])
    lx = math.log(x[i - 1]) + frac * (math.log(x[i]) - math.log(x[i - 1]))
    return Reach(float(math.exp(lx)), float(x[-1]))


def sign_change(lx: ArrayLike, d: ArrayLike) -> np.ndarray:
    """Where ``d`` (last axis: values at the grid ``lx``, linear in between) first changes
    sign, as a value of ``lx``; NaN where it never does. Any leading axes are independent
    curves (e.g. bootstrap resamples), all at once. Zeros are skipped: a touch without a
    change of sign is no crossing, and a change of sign across exact zeros crosses at the
    first of them. Between two nonzero neighbours the root of the line is exact."""
    lx = np.asarray(lx, dtype=float)
    d = np.asarray(d, dtype=float)
    s = np.sign(d)
    k = d.shape[-1]
    nonzero = np.where(s != 0, np.arange(k), -1)
    seen = np.maximum.accumulate(nonzero, axis=-1)  # the last nonzero at or before i
    prev = np.concatenate([np.full(d.shape[:-1] + (1,), -1), seen[..., :-1]], axis=-1)
    s_prev = np.take_along_axis(s, np.maximum(prev, 0), axis=-1)
    hit = (s != 0) & (prev >= 0) & (s != s_prev)
    i = hit.argmax(axis=-1)[..., None]  # the first change of sign
    p = np.take_along_axis(prev, i, axis=-1)
    pc = np.maximum(p, 0)
    d_p, d_i = np.take_along_axis(d, pc, axis=-1), np.take_along_axis(d, i, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        root = lx[pc] + d_p / (d_p - d_i) * (lx[i] - lx[pc])
    at = np.where(i - p > 1, lx[np.minimum(pc + 1, k - 1)], root)[..., 0]
    return np.where(hit.any(axis=-1), at, np.nan)


def crossing(x_a: ArrayLike, y_a: ArrayLike, x_b: ArrayLike, y_b: ArrayLike, *,
             log_y: bool = False) -> float | None:
    """The first x where curves a and b cross: where ``y_a − y_b`` changes sign, both
    interpolated in (log x, y) (``log_y``: in (log x, log y)) over the x range they share.
    A touch without a change of sign is no crossing; None when there is none."""
    xa, ya = _clean(x_a, y_a, log_y=log_y)
    xb, yb = _clean(x_b, y_b, log_y=log_y)
    lo, hi = max(xa[0], xb[0]), min(xa[-1], xb[-1])
    if lo > hi:
        return None
    grid = np.union1d(xa, xb)
    lx = np.log(grid[(grid >= lo) & (grid <= hi)])
    if log_y:
        ya, yb = np.log(ya), np.log(yb)
    # d is linear in log x between grid points, so the interpolated root is exact for it
    d = np.interp(lx, np.log(xa), ya) - np.interp(lx, np.log(xb), yb)
    at = float(sign_change(lx, d))
    return None if math.isnan(at) else math.exp(at)


# ---------------------------------------------------------------- intervals over seeds


def _quantile(a: np.ndarray, q: float) -> np.ndarray:
    """Linear-interpolation quantile along the last axis (numpy's default) that keeps
    infinite bounds infinite instead of turning ∞ − ∞ into nan."""
    a = np.sort(a, axis=-1)
    pos = q / 100 * (a.shape[-1] - 1)
    i = int(math.floor(pos))
    frac = pos - i
    lo, hi = a[..., i], a[..., min(i + 1, a.shape[-1] - 1)]
    if frac == 0:
        return lo
    with np.errstate(invalid="ignore"):
        mid = lo + frac * (hi - lo)
    return np.where(lo == hi, lo, np.where(np.isneginf(lo), lo, np.where(np.isposinf(hi), hi, mid)))


def _median(a: np.ndarray) -> float:
    return float(_quantile(np.asarray(a, float), 50))


@dataclass(frozen=True)
class SeedInterval:
    """A median over seeds with its interval. ``method``: "range" (fewer than
    :data:`MIN_BOOTSTRAP_SEEDS` seeds) or "bootstrap". ``bound``: "" when ``value`` is
    the median, "more" / "less" when the median is only known to be at least / at most
    ``value`` (some seeds' values were bounds that move it), "unknown" when both."""

    value: float
    low: float
    high: float
    n_seeds: int
    method: str
    bound: str = ""

    @property
    def is_bound(self) -> bool:
        return self.bound != ""

    def text(self, suffix: str = "") -> str:
        """``0.1 [0.05, 0.2] (3 seeds, range)``, or ``more than 5`` when a bound."""
        if self.bound == "unknown":
            return "undetermined (bounds on both sides move the median)"
        if self.bound:
            word = "more than" if self.bound == "more" else "at most"
            return f"{word} {_num(self.value)}{suffix}"
        return (f"{_num(self.value)}{suffix} {_interval(self.low, self.high)} "
                f"({_seeds(self.n_seeds)}, {self.method})")


def seed_interval(values: ArrayLike, *, bounds: Sequence[str] | None = None,
                  confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
                  seed: int = BOOTSTRAP_SEED) -> SeedInterval:
    """Median of per-seed ``values`` with its interval: the range below
    :data:`MIN_BOOTSTRAP_SEEDS` seeds, else a percentile bootstrap of the median.

    ``bounds[i]`` is "more" when seed i's value is only a lower bound, "less" when only
    an upper one. The interval then runs from the low end with every "less" at −∞ to the
    high end with every "more" at +∞: it covers whatever the censored values are.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or len(v) == 0 or not np.all(np.isfinite(v)):
        raise ValueError("seed_interval needs one finite value per seed")
    b = np.array(bounds if bounds is not None else [""] * len(v), dtype=object)
    if len(b) != len(v) or not set(b) <= {"", "more", "less"}:
        raise ValueError("bounds must be '', 'more' or 'less', one per value")
    lo = np.where(b == "less", -np.inf, v)  # censored values at their worst on each side
    hi = np.where(b == "more", np.inf, v)
    value, m_lo, m_hi = _median(v), _median(lo), _median(hi)
    above, below = m_hi > value, m_lo < value
    bound = "unknown" if above and below else "more" if above else "less" if below else ""
    if len(v) < MIN_BOOTSTRAP_SEEDS:
        return SeedInterval(value, float(lo.min()), float(hi.max()), len(v), "range", bound)
    rng = np.random.default_rng(seed)
    idx = rng.integers(len(v), size=(n_resamples, len(v)))
    tail = 100 * (1 - confidence) / 2
    low = float(_quantile(_quantile(lo[idx], 50), tail))
    high = float(_quantile(_quantile(hi[idx], 50), 100 - tail))
    return SeedInterval(value, low, high, len(v), "bootstrap", bound)


# ---------------------------------------------------------------- claim 1: token multiplier


@dataclass(frozen=True)
class TokenMultiplier:
    """How many times more tokens the reference needs to reach the subject's final loss
    than the subject trained on, median over seeds. A seed whose reference never got
    there gives only a lower bound (its budget over the subject's); when such bounds
    move the median, ``value`` is that bound and ``bound`` says which side."""

    value: float
    low: float
    high: float
    n_seeds: int
    method: str
    bound: str
    per_seed: tuple[float, ...]
    per_seed_bound: tuple[str, ...]  # "" exact, "more" never reached, "less" at first eval
    reference_budgets: tuple[float, ...]
    subject_label: str = "subject"
    reference_label: str = "reference"

    @property
    def is_bound(self) -> bool:
        return self.bound != ""

    def text(self) -> str:
        """``10.3x [7.9, 12] (3 seeds, range)``, or ``more than 16x (reference never
        reached the subject's loss within its 1.6M tokens)``."""
        never = [t for t, b in zip(self.reference_budgets, self.per_seed_bound,
                                   strict=True) if b == "more"]
        n_first = self.per_seed_bound.count("less")
        of = f" in {len(never)} of {self.n_seeds} seeds" if len(never) < self.n_seeds else ""
        never_txt = (f"{self.reference_label} never reached the {self.subject_label}'s loss "
                     f"within its {count_text(max(never))} tokens{of}" if never else "")
        first_txt = (f"{self.reference_label} was already there at its first evaluation "
                     f"in {n_first} of {self.n_seeds} seeds" if n_first else "")
        notes = "; ".join(t for t in (never_txt, first_txt) if t)
        if self.bound == "unknown":
            return f"undetermined ({notes})"
        if self.bound:
            word = "more than" if self.bound == "more" else "at most"
            return f"{word} {_num(self.value)}x ({notes})"
        tail = f"; {notes}" if notes else ""
        return (f"{_num(self.value)}x {_interval(self.low, self.high)} "
                f"({_seeds(self.n_seeds)}, {self.method}{tail})")


def token_multiplier(subject: Seeds, reference: Seeds, *, subject_label: str = "subject",
                     reference_label: str = "reference", confidence: float = 0.95,
                     n_resamples: int = N_RESAMPLES,
                     seed: int = BOOTSTRAP_SEED) -> TokenMultiplier:
    """Per seed: the subject's loss at its last evaluation is the target; the reference's
    tokens to first reach it (:func:`first_reach`) over the subject's tokens. Seeds are
    paired (they share data order), so both sides must have the same seeds."""
    sub, ref = _by_seed(subject), _by_seed(reference)
    if set(sub) != set(ref):
        raise ValueError(f"the multiplier pairs seeds; subject has {sorted(map(str, sub))}, "
                         f"reference {sorted(map(str, ref))}")
    values, bounds, budgets = [], [], []
    for s in sub:
        r = first_reach(ref[s].tokens, ref[s].loss, sub[s].final)
        values.append((r.x if r.x is not None else r.x_max) / sub[s].budget)
        bounds.append("more" if r.x is None else "less" if r.at_first else "")
        budgets.append(r.x_max)
    iv = seed_interval(values, bounds=bounds, confidence=confidence, n_resamples=n_resamples,
                       seed=seed)
    return TokenMultiplier(iv.value, iv.low, iv.high, iv.n_seeds, iv.method, iv.bound,
                           tuple(values), tuple(bounds), tuple(budgets), subject_label,
                           reference_label)


def fewer_tokens(subject: Seeds, reference: Seeds, *, confidence: float = 0.95,
                 n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> SeedInterval:
    """The claim read the other way, where equal budgets can show it: per seed, the
    reference's loss at its last evaluation is the target, and the value is the
    reference's tokens over the subject's tokens to first reach it ("the same loss with
    10x fewer tokens"). A subject that never gets there gives an upper bound (the budgets'
    ratio: "less"), one there at its first evaluation a lower bound ("more")."""
    sub, ref = _by_seed(subject), _by_seed(reference)
    if set(sub) != set(ref):
        raise ValueError(f"the multiplier pairs seeds; subject has {sorted(map(str, sub))}, "
                         f"reference {sorted(map(str, ref))}")
    values, bounds = [], []
    for s in sub:
        r = first_reach(sub[s].tokens, sub[s].loss, ref[s].final)
        values.append(ref[s].budget / (r.x if r.x is not None else r.x_max))
        bounds.append("less" if r.x is None else "more" if r.at_first else "")
    return seed_interval(values, bounds=bounds, confidence=confidence,
                         n_resamples=n_resamples, seed=seed)


# ---------------------------------------------------------------- claims 2 and 3: loss gaps


def common_budget(*roles: Seeds) -> float:
    """The most tokens every curve of every role reached: where all compare at equal
    training without extrapolating."""
    curves = [c for r in roles for c in _by_seed(r).values()]
    tokens = min(c.budget for c in curves)
    if any(c.tokens[0] > tokens for c in curves):
        raise ValueError(f"the curves share no token count (one ends at {tokens:g}, "
                         f"one starts at {max(c.tokens[0] for c in curves):g})")
    return tokens


@dataclass(frozen=True)
class LossGain:
    """How much lower ``improved``'s loss is than ``base``'s at ``tokens``: per-seed
    differences when the seeds pair, else the difference of the two medians."""

    value: float
    low: float
    high: float
    n_seeds: int
    method: str
    tokens: float
    paired: bool
    per_seed: tuple[float, ...]  # base − improved per paired seed; empty when unpaired
    base_label: str = "base"
    improved_label: str = "improved"

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def text(self) -> str:
        """``0.1 [0.05, 0.2] lower for improved than base at 1.6M tokens (3 seeds, range)``."""
        how = f"{_seeds(self.n_seeds)}, {self.method}" + ("" if self.paired else ", unpaired")
        return (f"{_num(self.value)} {_interval(self.low, self.high)} lower for "
                f"{self.improved_label} than {self.base_label} at {count_text(self.tokens)} "
                f"tokens ({how})")


def loss_gain(base: Seeds, improved: Seeds, *, tokens: float | None = None,
              base_label: str = "base", improved_label: str = "improved",
              confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
              seed: int = BOOTSTRAP_SEED) -> LossGain:
    """``L_base − L_improved`` at ``tokens`` (default: the two roles' common budget).

    When both roles have the same seeds they are paired (same data order): the median and
    :func:`seed_interval` of the per-seed differences. Otherwise the difference of the
    medians, with the range rule [min − max, max − min] below :data:`MIN_BOOTSTRAP_SEEDS`
    seeds on either side, else a bootstrap resampling each side on its own.
    """
    b, m = _by_seed(base), _by_seed(improved)
    t = common_budget(b, m) if tokens is None else float(tokens)
    lb = {s: c.at(t) for s, c in b.items()}
    lm = {s: c.at(t) for s, c in m.items()}
    labels = dict(base_label=base_label, improved_label=improved_label)
    if set(lb) == set(lm):
        d = [lb[s] - lm[s] for s in lb]
        iv = seed_interval(d, confidence=confidence, n_resamples=n_resamples, seed=seed)
        return LossGain(iv.value, iv.low, iv.high, iv.n_seeds, iv.method, t, True, tuple(d),
                        **labels)
    vb, vm = np.array(list(lb.values())), np.array(list(lm.values()))
    value = _median(vb) - _median(vm)
    n = min(len(vb), len(vm))
    if n < MIN_BOOTSTRAP_SEEDS:
        low, high, method = vb.min() - vm.max(), vb.max() - vm.min(), "range"
    else:
        rng = np.random.default_rng(seed)
        diffs = (_quantile(vb[rng.integers(len(vb), size=(n_resamples, len(vb)))], 50)
                 - _quantile(vm[rng.integers(len(vm), size=(n_resamples, len(vm)))], 50))
        tail = 100 * (1 - confidence) / 2
        low, high = _quantile(diffs, tail), _quantile(diffs, 100 - tail)
        method = "bootstrap"
    return LossGain(float(value), float(low), float(high), n, method, t, False, (), **labels)


@dataclass(frozen=True)
class GapRatio:
    """(reference − subject) / (baseline − reference) at equal tokens: whether the subject
    improves on the reference about as much as the reference on the baseline. ``ratio`` is
    None when the lower gap's interval includes 0. ``low``/``high`` are the extremes of
    the ratio over the box of the two gaps' intervals (conservative: not a joint one)."""

    ratio: float | None
    low: float | None
    high: float | None
    upper_gap: LossGain  # reference − subject
    lower_gap: LossGain  # baseline − reference

    def text(self) -> str:
        """``1 [0.5, 2] (reference − subject 0.2 [0.1, 0.3] …)``, or why it is undefined."""
        u, g = self.upper_gap, self.lower_gap
        gaps = f"{_gap(u)}; {_gap(g)}; at {count_text(u.tokens)} tokens"
        if self.ratio is None:
            return (f"undefined: the {g.base_label}–{g.improved_label} gap's interval "
                    f"includes 0 ({gaps})")
        text = f"{_num(self.ratio)} {_interval(self.low, self.high)} ({gaps})"
        if g.value < 0:  # the claim presumes the reference beats the baseline
            text += (f"; {g.base_label} beat {g.improved_label} here, so the ratio's sign is "
                     "reversed and it does not measure the claim")
        return text


def _gap(d: LossGain) -> str:
    how = f"{_seeds(d.n_seeds)}, {d.method}" + ("" if d.paired else ", unpaired")
    return f"{d.base_label} − {d.improved_label} {_num(d.value)} {_interval(d.low, d.high)} ({how})"


def gap_ratio(subject: Seeds, reference: Seeds, baseline: Seeds, *,
              tokens: float | None = None, subject_label: str = "subject",
              reference_label: str = "reference", baseline_label: str = "baseline",
              confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
              seed: int = BOOTSTRAP_SEED) -> GapRatio:
    """d1 = L_reference − L_subject and d2 = L_baseline − L_reference at ``tokens``
    (default: the three roles' common budget), each by :func:`loss_gain`; their ratio of
    medians only where d2's interval excludes 0 (else a ratio of noise)."""
    t = common_budget(subject, reference, baseline) if tokens is None else float(tokens)
    kw = dict(tokens=t, confidence=confidence, n_resamples=n_resamples, seed=seed)
    d1 = loss_gain(reference, subject, base_label=reference_label,
                   improved_label=subject_label, **kw)
    d2 = loss_gain(baseline, reference, base_label=baseline_label,
                   improved_label=reference_label, **kw)
    if not d2.excludes_zero():
        return GapRatio(None, None, None, d1, d2)
    corners = [a / b for a in (d1.low, d1.high) for b in (d2.low, d2.high)]
    return GapRatio(d1.value / d2.value, float(min(corners)), float(max(corners)), d1, d2)


# ---------------------------------------------------------------- power laws


@dataclass(frozen=True)
class PowerLawFit:
    """``y ≈ prefactor · x**exponent`` by least squares in log–log space, with the
    exponent's interval: "bootstrap" over groups (seeds) or "t" (Student t on the
    regression's standard error, n − 2 degrees of freedom)."""

    exponent: float
    low: float
    high: float
    prefactor: float
    stderr: float
    r2: float
    n_points: int
    n_x: int  # distinct x values
    n_groups: int  # distinct groups (seeds); 0 when none were given
    method: str
    confidence: float

    def text(self) -> str:
        how = "bootstrap over seeds" if self.method == "bootstrap" else "t-interval"
        groups = f", {self.n_groups} seeds" if self.n_groups else ""
        return (f"{self.exponent:.3f} [{self.low:.3f}, {self.high:.3f}], R² {self.r2:.3f} "
                f"({self.n_points} points at {self.n_x} sizes{groups}; {how})")


def _weighted_slopes(lx: np.ndarray, ly: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Least-squares slopes, one per row of weights ``w`` (a resample's count of each
    point): the same as refitting the resampled points, without building them."""
    sw = w.sum(axis=1)
    mx, my = (w @ lx) / sw, (w @ ly) / sw
    dx = lx[None, :] - mx[:, None]
    sxx = (w * dx * dx).sum(axis=1)
    sxy = (w * dx * (ly[None, :] - my[:, None])).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sxx > 0, sxy / sxx, np.nan)


def fit_power_law(x: ArrayLike, y: ArrayLike, *, groups: Sequence[Hashable] | None = None,
                  confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
                  seed: int = BOOTSTRAP_SEED) -> PowerLawFit:
    """Exponent of ``y ∝ x**exponent`` over positive points, at least
    :data:`MIN_FIT_SIZES` distinct x.

    With ``groups`` (the seed of each point) and at least :data:`MIN_BOOTSTRAP_SEEDS`
    groups at every x, the interval is a percentile bootstrap over groups: a resample
    draws whole seeds, every point of a drawn seed with it, and refits. Otherwise it is a
    t-interval, which treats the points as independent.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    g = np.asarray(groups, dtype=object) if groups is not None else None
    if x.shape != y.shape or (g is not None and g.shape != x.shape):
        raise ValueError("x, y (and groups) must be the same length")
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[keep], y[keep]
    g = g[keep] if g is not None else None
    n_x = len(np.unique(x))
    if n_x < MIN_FIT_SIZES:
        raise ValueError(f"a power-law fit needs at least {MIN_FIT_SIZES} distinct x, "
                         f"got {sorted(set(x.tolist()))}")
    lx, ly = np.log(x), np.log(y)
    res = stats.linregress(lx, ly)
    slope, stderr = float(res.slope), float(res.stderr)
    n_groups = 0
    per_x = 0
    if g is not None:
        labels = np.unique(g.astype(str), return_inverse=True)[1]
        n_groups = int(labels.max()) + 1
        per_x = min(len(set(labels[x == v])) for v in np.unique(x))
    tail = 100 * (1 - confidence) / 2
    if g is not None and per_x >= MIN_BOOTSTRAP_SEEDS:
        rng = np.random.default_rng(seed)
        drawn = rng.integers(n_groups, size=(n_resamples, n_groups))
        counts = np.stack([np.bincount(row, minlength=n_groups) for row in drawn])
        slopes = _weighted_slopes(lx, ly, counts[:, labels].astype(float))
        slopes = slopes[np.isfinite(slopes)]  # a resample with one x left says nothing
        low, high = _quantile(slopes, tail), _quantile(slopes, 100 - tail)
        method = "bootstrap"
    else:
        t = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 2))
        low, high, method = slope - t * stderr, slope + t * stderr, "t"
    return PowerLawFit(slope, float(low), float(high), float(math.exp(res.intercept)), stderr,
                       float(res.rvalue**2), len(x), n_x, n_groups, method, confidence)


@dataclass(frozen=True)
class LossScaling:
    """``loss ≈ a · N**(−alpha)`` over parameter counts N at the budget; ``low``/``high``
    bound alpha (the fit's exponent is −alpha)."""

    alpha: float
    low: float
    high: float
    prefactor: float
    fit: PowerLawFit
    tokens: float | None  # the token count compared at; None: each run's last evaluation

    def text(self) -> str:
        f = self.fit
        how = "bootstrap over seeds" if f.method == "bootstrap" else "t-interval"
        at = f"at {count_text(self.tokens)} tokens" if self.tokens else "at each run's budget"
        return (f"loss ∝ N^−{self.alpha:.3f} [{self.low:.3f}, {self.high:.3f}], "
                f"R² {f.r2:.3f} {at} ({f.n_points} points at {f.n_x} sizes, "
                f"{f.n_groups} seeds; {how})")


def loss_scaling(params: ArrayLike, curves: Sequence[CurveLike], seeds: Sequence[Hashable],
                 *, tokens: float | None = None, confidence: float = 0.95,
                 n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> LossScaling:
    """Fit loss against parameter count, one point per run (``params[i]``, ``curves[i]``,
    ``seeds[i]``): the loss at ``tokens``, or at each run's last evaluation when None.
    The interval is :func:`fit_power_law`'s (a bootstrap over seeds from
    :data:`MIN_BOOTSTRAP_SEEDS` seeds per size, else a t-interval)."""
    cs = [_as_curve(c) for c in curves]
    if not len(params) == len(cs) == len(seeds):
        raise ValueError("params, curves and seeds must be the same length")
    loss = [c.final if tokens is None else c.at(tokens) for c in cs]
    f = fit_power_law(params, loss, groups=seeds, confidence=confidence,
                      n_resamples=n_resamples, seed=seed)
    return LossScaling(-f.exponent, -f.high, -f.low, f.prefactor, f, tokens)
