"""Interleaved rounds on a simulated machine whose speed drifts over time.

A fake clock replaces the hardware: a sample of a cell with true time ``t`` taken at fake
time ``now`` lasts ``t · slowdown(now)`` and advances the clock by that. Sequential
measurement (cell after cell, as the runner did before rounds) puts one stretch of the
drift on each cell; the runner's rounds (``visiting_order`` and ``samples_needed`` from
``harness.run.rounds``) spread every cell over the whole sweep. Speedups are ratios of
pooled medians against the true ratios.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.measure.headline import HEADLINE_MIN_SAMPLES
from harness.run.rounds import Pool, pooled_fields, samples_needed, visiting_order

# six architectures, true seconds per call
TRUE = {"lmu": 0.040, "lmu-fft": 0.016, "lstm": 0.025, "transformer": 0.030, "s4d": 0.020,
        "mamba": 0.050}


class DriftingMachine:
    """Fake clock; ``slowdown(t)`` multiplies every call's time; small lognormal jitter."""

    def __init__(self, slowdown, seed: int = 0) -> None:
        self.now = 0.0
        self.slowdown = slowdown
        self.rng = np.random.default_rng(seed)

    def sample(self, true_s: float) -> float:
        s = true_s * self.slowdown(self.now) * float(self.rng.lognormal(0.0, 0.01))
        self.now += s
        return s


def sequential(machine: DriftingMachine, n: int) -> dict[str, list[float]]:
    return {arch: [machine.sample(t) for _ in range(n)] for arch, t in TRUE.items()}


def interleaved(machine: DriftingMachine, n: int, rounds: int, seed: int) -> dict[str, Pool]:
    pools = {arch: Pool() for arch in TRUE}
    for r in range(rounds):
        order = visiting_order(list(TRUE), r, seed=seed, slot="cpu")
        for pos, arch in enumerate(order):
            k = max(samples_needed(len(pools[arch].samples), r, rounds, HEADLINE_MIN_SAMPLES),
                    n // rounds)
            pools[arch].add(r, [machine.sample(TRUE[arch]) for _ in range(k)], position=pos)
    return pools


def worst_speedup_error(samples: dict[str, list[float]]) -> float:
    med = {a: float(np.median(s)) for a, s in samples.items()}
    errs = [
        abs((med["lmu"] / med[a]) / (TRUE["lmu"] / TRUE[a]) - 1) for a in TRUE if a != "lmu"
    ]
    return max(errs)


def ramp(total: float, amount: float = 0.6):
    return lambda t: 1.0 + amount * min(t, total) / total


def wave(period: float, amount: float = 0.4):
    return lambda t: 1.0 + amount * math.sin(2 * math.pi * t / period)


SWEEP_S = 25 * sum(TRUE.values()) * 1.3  # about how long 25 samples of every cell take


@pytest.mark.parametrize("drift", ["ramp", "wave"])
@pytest.mark.parametrize("rounds", [5, 10])
def test_interleaving_recovers_the_true_ratios_where_sequential_does_not(drift, rounds):
    # a machine slowing 60% over the sweep, or one slow 30% wave; 25 samples per cell
    seq, inter = [], []
    for seed in range(5):
        slow = ramp(SWEEP_S) if drift == "ramp" else wave(SWEEP_S, 0.3)
        seq.append(worst_speedup_error(sequential(DriftingMachine(slow, seed), 25)))
        pools = interleaved(DriftingMachine(slow, seed), 25, rounds=rounds, seed=seed)
        inter.append(worst_speedup_error({a: p.samples for a, p in pools.items()}))
    assert min(seq) > 0.25, f"sequential errors {seq}: the drift is too weak to test"
    # measured: ramp 0.06 (5 rounds) / 0.02 (10); wave 0.12 / 0.04 — sequential 0.30 / 0.61
    limit = {5: 0.2, 10: 0.1}[rounds]
    assert max(inter) < limit, f"interleaved errors {inter} (sequential {seq})"
    assert max(inter) < min(seq) / 2.5


def test_rounds_record_every_sample_and_its_round():
    pools = interleaved(DriftingMachine(lambda t: 1.0), 10, rounds=5, seed=0)
    for p in pools.values():
        assert p.rounds_done == 5 and len(p.samples) == 10
        assert p.sample_rounds == sorted(p.sample_rounds) and set(p.sample_rounds) == set(range(5))
        assert len(p.round_order) == 5 and p.round_order[0] == list(TRUE).index(
            next(a for a, q in pools.items() if q is p)
        )


def test_first_round_keeps_the_given_order_later_rounds_are_seeded_permutations():
    cells = [f"c{i}" for i in range(8)]
    assert visiting_order(cells, 0, seed=5) == cells  # length order from the scheduler
    orders = [visiting_order(cells, r, seed=5, slot="cpu") for r in range(1, 6)]
    assert all(sorted(o) == cells for o in orders)
    assert len({tuple(o) for o in orders}) == 5  # a fresh order each round
    assert orders == [visiting_order(cells, r, seed=5, slot="cpu") for r in range(1, 6)]
    assert orders != [visiting_order(cells, r, seed=5, slot="cpu:1") for r in range(1, 6)]


@pytest.mark.parametrize("rounds", [1, 3, 5, 8])
def test_every_cell_ends_with_the_minimum_samples(rounds):
    taken = 0
    for r in range(rounds):
        taken += samples_needed(taken, r, rounds, HEADLINE_MIN_SAMPLES)  # a slow cell: due only
    assert taken == max(HEADLINE_MIN_SAMPLES, rounds)


def test_pool_rejects_rounds_out_of_order():
    p = Pool()
    p.add(0, [1.0, 2.0], [0.0, 0.1])
    with pytest.raises(ValueError, match="round 2"):
        p.add(2, [1.0])
    p.add(1, [3.0])  # no contention measured this round: the pool drops the partial list
    assert p.contention == [] and p.sample_rounds == [0, 0, 1]


def test_a_cell_median_rests_on_its_quiet_samples_and_keeps_every_sample():
    pool = Pool()
    pool.add(0, [1.0, 3.5, 1.1], [0.0, 1.8, 0.05])  # 2 threads on a 2-core machine
    pool.add(1, [0.9, 1.0, 4.0, 1.05], [0.0, 0.1, 1.9, 0.0])
    static = {"params": 1, "tokens": 100}
    f = pooled_fields(static, pool, noise_threshold=0.1, threads=2, warmup_s=0.1,
                      stop_reason="budget", calls_per_sample=1)
    assert f["time_median_s"] == 1.0  # median of the five quiet samples
    assert f["samples"] == [1.0, 3.5, 1.1, 0.9, 1.0, 4.0, 1.05] and f["n_samples"] == 7
    assert "2 contended samples left out of the median" in f["message"]
    assert not f["contended"] and not f["thin"]
    pool.add(2, [5.0], [1.7])  # with the first sample contended too: four quiet, too few
    pool.samples[0], pool.contention[0] = 4.5, 1.6
    f = pooled_fields(static, pool, noise_threshold=0.1, threads=2, warmup_s=0.1,
                      stop_reason="budget", calls_per_sample=1)
    assert f["time_median_s"] == float(np.median(pool.samples)) and f["contended"]
