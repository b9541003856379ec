"""Crossover lengths: the sequence length where two architectures' curves of median time
(or peak memory) against n cross, with a bootstrap interval.

A crossing is where ``log(value_a / value_b)`` changes sign over the lengths both
measured, interpolated on log–log between the two lengths that bracket the change
(:func:`harness.report.lm_claims.crossing`, ``log_y=True``; the first one when the curves
cross more than once). Its interval resamples every cell as the speedup intervals do
(:func:`harness.report.bootstrap.resampled_medians`: runs when pooled, then rounds, then
samples within them), finds the crossing of each resample's medians again and takes
percentiles (tails expanded for few pooled runs, as the speedups'). A resample whose
curves do not cross in the measured range counts as crossing beyond the end its curves
point to (past the longest length when they keep the order the measured curves have at
the shortest, before the shortest otherwise), so an interval reaching past the range is
open ("> 2048") and the share of such resamples is said. Peak memory is one
reading per cell: its crossing has no interval.

Pairs: every architecture against the baseline, plus the pairs a suite's ``[report]``
table names as ``crossover_pairs = ["a:b", ...]`` (:func:`parse_pairs`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from harness.errors import UsageError
from harness.measure.headline import headline_rounds_of
from harness.report.bootstrap import MIN_CI_SAMPLES, expanded_tail, resampled_medians, run_ids
from harness.report.lm_claims import _quantile, count_text, crossing, sign_change
from harness.report.output import by_facet
from harness.store.load import FACET_KEYS

N_RESAMPLES = 2000
CONFIDENCE = 0.95
PAIRS_KEY = "crossover_pairs"  # the [report] key naming extra pairs, "a:b"
METRICS = {"time": "time_median_s", "memory": "peak_mem_bytes"}
LOWER = {"time": "faster", "memory": "uses less memory"}  # what the lower curve is


def length_text(v: float) -> str:
    """A length: a measured one exactly (``2048``), an estimate as a reader says it
    (``740``, ``1.01k``, ``3.1M``; beyond ``T``, ``8.1e+25``)."""
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if float(v).is_integer() and v < 1e6:
        return str(int(v))
    r = float(f"{v:.3g}")  # three figures first, so 999.9 reads 1k, not 1e+03
    if r < 1000:
        return f"{r:.0f}"
    return count_text(r) if r < 1e15 else f"{r:.2g}"


def parse_pairs(values: Iterable[object], where: str = "[report]") -> list[tuple[str, str]]:
    """``["a:b", ...]`` → ``[("a", "b"), ...]``; a UsageError naming ``where`` otherwise."""
    pairs = []
    for v in values:
        parts = v.split(":") if isinstance(v, str) else []
        if len(parts) != 2 or not all(p.strip() for p in parts) or parts[0] == parts[1]:
            raise UsageError(f"{where}: {PAIRS_KEY} entries must be 'arch_a:arch_b' (two "
                             f"different architectures), got {v!r}")
        pairs.append((parts[0].strip(), parts[1].strip()))
    return pairs


# ---------------------------------------------------------------- one pair


@dataclass(frozen=True)
class Crossover:
    """Where ``a``'s curve crosses ``b``'s over the lengths both measured.

    ``point``: the crossing of the measured values, None when there is none in
    [``n_min``, ``n_max``]. ``low``/``high``: its percentile interval, −∞/+∞ where it
    reaches before/past the range (open), NaN without an interval (``why_no_interval``).
    ``no_cross``: the share of resamples with no crossing in range (NaN: no bootstrap).
    ``ratio_min``/``ratio_max``: ``value_a / value_b`` at ``n_min`` and ``n_max``.
    ``crossings``: how many times the measured curves change order.
    """

    a: str
    b: str
    metric: str  # "time" or "memory"
    n_min: int
    n_max: int
    n_lengths: int
    point: float | None
    low: float
    high: float
    no_cross: float
    n_resamples: int
    ratio_min: float
    ratio_max: float
    crossings: int
    why_no_interval: str = ""
    confidence: float = CONFIDENCE

    @property
    def has_interval(self) -> bool:
        return not math.isnan(self.low)

    @property
    def is_open(self) -> bool:
        return math.isinf(self.low) or math.isinf(self.high)

    def _lower_at_min(self) -> tuple[str, str]:
        return (self.a, self.b) if self.ratio_min < 1 else (self.b, self.a)

    def _bound(self, v: float) -> str:
        if v == -math.inf:
            return f"< {self.n_min}"
        if v == math.inf:
            return f"> {self.n_max}"
        return length_text(v)

    def interval_text(self) -> str:
        """``[520, 980]``, ``[520, > 2048)``, or why there is none."""
        if not self.has_interval:
            return self.why_no_interval
        return (f"{'(' if math.isinf(self.low) else '['}{self._bound(self.low)}, "
                f"{self._bound(self.high)}{')' if math.isinf(self.high) else ']'}")

    def _times(self, r: float) -> str:
        """How many times lower the lower curve is, ``3.2×``."""
        x = 1 / r if r < 1 else r
        return f"{x:.0f}×" if x >= 10 else f"{x:.1f}×"

    def text(self) -> str:
        """``n ≈ 740 [560, 1.01k]: b faster below, a above (…)`` or
        ``no crossover in n = 128..2048: a faster throughout (3.2× at 128, 41× at
        2048)``, with the share of resamples that disagree."""
        word = LOWER[self.metric]
        ends = (f"{self._times(self.ratio_min)} at {self.n_min}, "
                f"{self._times(self.ratio_max)} at {self.n_max}")
        if self.point is None:
            if self.n_lengths < 2:
                return f"one shared length ({self.n_min}): no crossover to find"
            lower = self.a if self.ratio_min < 1 else self.b
            out = (f"no crossover in n = {self.n_min}..{self.n_max}: "
                   f"{lower} {word} throughout ({ends})")
            if self.no_cross < 1:  # some resamples crossed
                out += f"; a crossing in {_pct(1 - self.no_cross)} of resamples"
            return out
        first, then = self._lower_at_min()
        interval = (self.interval_text() if self.has_interval
                    else f"({self.why_no_interval})")
        out = (f"n ≈ {length_text(self.point)} {interval}: {first} {word} below, "
               f"{then} above ({ends})")
        if self.crossings > 1:
            out += f"; the curves cross {self.crossings} times, the first shown"
        if self.has_interval and self.no_cross > 0:
            out += (f"; {'open: ' if self.is_open else ''}no crossing in range in "
                    f"{_pct(self.no_cross)} of resamples")
        return out


def _pct(share: float) -> str:
    p = 100 * share
    return f"{p:.0f}%" if p >= 1 or p == 0 else "<1%"


def _n_changes(d: np.ndarray) -> int:
    s = np.sign(d)
    s = s[s != 0]
    return int(np.count_nonzero(s[1:] != s[:-1]))


def crossover(n: Sequence[float], value_a: Sequence[float], value_b: Sequence[float], *,
              a: str = "a", b: str = "b", metric: str = "time",
              resampled_a: np.ndarray | None = None, resampled_b: np.ndarray | None = None,
              why_no_interval: str = "", confidence: float = CONFIDENCE,
              runs: int = 1) -> Crossover:
    """The crossover of two curves measured at the same lengths ``n`` (increasing).

    ``resampled_a``/``resampled_b``: bootstrap replicates of each curve, shape
    (resamples, len(n)) (e.g. each cell's :func:`resampled_medians`); without them there
    is no interval and ``why_no_interval`` says why. ``runs``: the fewest runs a cell was
    pooled from (the interval's tails expand for few, as the speedups' do)."""
    n = np.asarray(n, dtype=float)
    va, vb = np.asarray(value_a, dtype=float), np.asarray(value_b, dtype=float)
    if not (n.ndim == 1 and n.shape == va.shape == vb.shape) or len(n) == 0:
        raise ValueError("n and both curves must be 1-d and the same nonzero length")
    if np.any(np.diff(n) <= 0) or np.any(n <= 0) or np.any(va <= 0) or np.any(vb <= 0):
        raise ValueError("lengths must be positive and increasing, values positive")
    lx, d = np.log(n), np.log(va) - np.log(vb)
    point = crossing(n, va, n, vb, log_y=True) if len(n) >= 2 else None
    base = dict(a=a, b=b, metric=metric, n_min=int(n[0]), n_max=int(n[-1]),
                n_lengths=len(n), point=point, ratio_min=float(va[0] / vb[0]),
                ratio_max=float(va[-1] / vb[-1]), crossings=_n_changes(d),
                confidence=confidence)
    nan = float("nan")
    if resampled_a is None or resampled_b is None or len(n) < 2:
        why = why_no_interval or ("one shared length" if len(n) < 2 else "no resamples")
        return Crossover(**base, low=nan, high=nan, no_cross=nan, n_resamples=0,
                         why_no_interval=why)
    ra, rb = np.asarray(resampled_a, dtype=float), np.asarray(resampled_b, dtype=float)
    if ra.shape != rb.shape or ra.ndim != 2 or ra.shape[1] != len(n):
        raise ValueError("resamples must be (resamples, lengths) arrays of one shape")
    dd = np.log(ra) - np.log(rb)
    at = sign_change(lx, dd)
    none = np.isnan(at)
    share = float(none.mean())
    if point is None:
        return Crossover(**base, low=nan, high=nan, no_cross=share, n_resamples=len(dd))
    # a resample without a crossing in range: past the range if its curves keep the order
    # the measured ones have at the shortest length, before it otherwise
    s0 = np.sign(d[np.flatnonzero(d)[0]])
    first = np.sign(np.take_along_axis(dd, (dd != 0).argmax(axis=1)[:, None], axis=1)[:, 0])
    at = np.where(none, np.where(first == s0, np.inf, -np.inf), np.exp(at))
    tail = 100 * expanded_tail(1 - confidence, runs)
    low, high = float(_quantile(at, tail)), float(_quantile(at, 100 - tail))
    return Crossover(**base, low=low, high=high, no_cross=share, n_resamples=len(dd))


# ---------------------------------------------------------------- records


def _cell_resamples(row: object, n_resamples: int, rng: np.random.Generator
                    ) -> tuple[np.ndarray | None, str]:
    """A cell's bootstrap medians of its headline samples, or None and why not."""
    samples, rounds = headline_rounds_of(row)
    if not samples:
        return None, "no samples stored"
    if len(samples) < max(2, MIN_CI_SAMPLES):
        return None, "too few samples"
    r = None if rounds is None else np.asarray(rounds)
    return resampled_medians(np.asarray(samples, float), r, n_resamples, rng), ""


def pair_crossovers(g: pd.DataFrame, pairs: Iterable[tuple[str, str]], *,
                    n_resamples: int = N_RESAMPLES, seed: int = 0,
                    confidence: float = CONFIDENCE) -> list[Crossover]:
    """The time and memory crossovers of ``pairs`` within one facet's records ``g``:
    over the lengths where both cells finished (``ok``) with a positive value."""
    ok = g[g["status"] == "ok"].drop_duplicates(["arch", "seq_len"], keep="last")
    pairs = [p for p in dict.fromkeys(pairs) if {p[0], p[1]} <= set(ok["arch"])]
    cells = {(r.arch, int(r.seq_len)): r for r in ok.itertuples(index=False)}
    rng = np.random.default_rng(seed)
    drawn: dict[tuple[str, int], tuple[np.ndarray | None, str]] = {}
    for key in sorted(cells):  # in a fixed order: a report reads the same every time
        drawn[key] = _cell_resamples(cells[key], n_resamples, rng) if n_resamples else (
            None, "no resamples")
    out = []
    for a, b in pairs:
        for metric, col in METRICS.items():
            def values(arch: str, col: str = col) -> dict[int, float]:
                return {n: float(getattr(r, col)) for (x, n), r in cells.items() if x == arch
                        and pd.notna(getattr(r, col)) and float(getattr(r, col)) > 0}
            va, vb = values(a), values(b)
            lengths = sorted(set(va) & set(vb))
            if not lengths:
                continue
            kw: dict[str, object] = {}
            if metric == "time":
                got = [drawn[(x, n)] for n in lengths for x in (a, b)]
                why = next((w for r, w in got if r is None), "")
                if why:
                    kw["why_no_interval"] = f"{why}, no interval"
                else:
                    kw["resampled_a"] = np.stack([drawn[(a, n)][0] for n in lengths], axis=1)
                    kw["resampled_b"] = np.stack([drawn[(b, n)][0] for n in lengths], axis=1)
                    kw["runs"] = min(len(run_ids(headline_rounds_of(cells[(x, n)])[1]))
                                     for n in lengths for x in (a, b))
            else:
                kw["why_no_interval"] = "one reading per cell, no interval"
            out.append(crossover(lengths, [va[n] for n in lengths], [vb[n] for n in lengths],
                                 a=a, b=b, metric=metric, confidence=confidence, **kw))
    return out


def report_pairs(archs: Iterable[str], baseline: str,
                 named: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """Every architecture against ``baseline``, then the named pairs (each once)."""
    archs = list(archs)
    pairs = [(x, baseline) for x in archs if x != baseline]
    seen = {frozenset(p) for p in pairs}
    for p in named:
        if frozenset(p) not in seen:
            pairs.append(p)
            seen.add(frozenset(p))
    return pairs


def crossover_table(df: pd.DataFrame, baseline: str, named: Iterable[tuple[str, str]] = (),
                    *, n_resamples: int = N_RESAMPLES, seed: int = 0,
                    confidence: float = CONFIDENCE) -> pd.DataFrame:
    """One row per facet × pair × metric: the :class:`Crossover` fields and its ``text``;
    ``vs_baseline`` marks the pairs against the baseline."""
    named = list(named)
    rows = []
    facet_cols = [k for k in FACET_KEYS if k in df.columns]
    for values, g in df.groupby(facet_cols, sort=True, dropna=False):
        key = dict(zip(facet_cols, values, strict=True))
        archs = sorted(set(g["arch"]))
        pairs = report_pairs(archs, baseline, named)
        for c in pair_crossovers(g, pairs, n_resamples=n_resamples, seed=seed,
                                 confidence=confidence):
            rows.append({**key, **asdict(c), "vs_baseline": c.b == baseline,
                         "text": c.text()})
    return pd.DataFrame(rows)


INTRO = (
    "Where two architectures' curves against n cross: the sign change of log(value_a / "
    "value_b) over the lengths both finished, interpolated on log–log between the two "
    "lengths that bracket it. Time: the records' medians, and in brackets a {conf:.0%} "
    "percentile-bootstrap interval ({r} resamples; each cell's rounds, then the samples "
    "within them, as the speedups; the crossing found again per resample). A resample "
    "whose curves do not cross in the measured range counts as crossing beyond the end "
    "they point to, so an interval that reaches past the range is open ('> 2048') and "
    "the share of such resamples is given. Memory: peak memory, one reading per cell, no "
    "interval. Every architecture against `{b}`, and the pairs the suite's [report] "
    f"`{PAIRS_KEY}` names ([crossover.csv](crossover.csv))."
)


def crossover_markdown(table: pd.DataFrame, baseline: str, n_resamples: int) -> list[str]:
    """``index.md`` lines: per facet, one row per pair, time and memory columns."""
    from harness.report.tables import markdown_table

    if table.empty:
        return []
    conf = float(table["confidence"].iloc[0])
    lines = ["## Crossover lengths", "",
             INTRO.format(conf=conf, r=n_resamples, b=baseline), ""]
    for heading, g in by_facet(table):
        lines += [heading, ""]
        rows = []
        for (a, b), p in g.groupby(["a", "b"], sort=False):
            by = dict(zip(p["metric"], p["text"], strict=True))
            rows.append({"pair": f"`{a}` vs `{b}`", "time": by.get("time", "n/a"),
                         "peak memory": by.get("memory", "n/a")})
        lines += [markdown_table(pd.DataFrame(rows), left=["pair", "time", "peak memory"]),
                  ""]
    return lines
