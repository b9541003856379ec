"""The harness's own cost on a cell: its timed samples against a bare loop of the same call
(``harness.measure.overhead``), and the figures a timed record carries in ``metrics``."""

from __future__ import annotations

import time

import pytest
import torch

from harness.measure.overhead import Overhead, bare_overhead, bare_sample
from harness.run import worker
from harness.run.rounds import Pool, pooled_fields
from harness.run.settings import RunSettings
from harness.run.worker import BARE_MIN_PAIRS, measure_cell
from harness.store.records import Cell

CPU = torch.device("cpu")


def spin(seconds: float):
    """A call that busy-waits ``seconds`` (sleep's wake-up jitter would swamp the figure)."""

    def call() -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    return call


def test_bare_sample_is_seconds_per_call():
    calls = []
    t = bare_sample(lambda: calls.append(spin(1e-3)()), 5, CPU)
    assert len(calls) == 5 and 0.9e-3 <= t < 5e-3


def test_a_wrapper_that_adds_a_fifth_reads_as_a_fifth_over_bare():
    bare = spin(1e-3)
    extra = spin(2e-4)

    def timed() -> None:
        bare()
        extra()

    checks = []
    o = bare_overhead(timed, bare, CPU, calls_per_sample=2, pairs=9,
                      check=lambda: checks.append(1))
    assert o.pairs == 9 and len(checks) == 9  # one Timer sample (and its check) a pair
    assert 1.05 < o.ratio < 2.0, o  # 1.2 on a quiet machine; busy cores add to both
    assert 0.9e-3 <= o.bare_s < 5e-3
    same = bare_overhead(bare, bare, CPU, calls_per_sample=2, pairs=9)
    assert 0.7 < same.ratio < 1.4, same


def test_budget_stops_the_pairs_after_the_minimum():
    o = bare_overhead(spin(2e-3), spin(2e-3), CPU, calls_per_sample=1, pairs=50,
                      min_pairs=3, budget_s=0.0)
    assert o.pairs == 3
    with pytest.raises(ValueError, match="min_pairs <= pairs"):
        bare_overhead(spin(0), spin(0), CPU, calls_per_sample=1, pairs=2, min_pairs=3)


def test_metrics_keys_and_none_for_a_zero_bare_time():
    o = Overhead(harness_s=2e-3, bare_s=1.9e-3, ratio=1.05, pairs=5)
    assert o.metrics() == {"bare_call_s": 1.9e-3, "harness_over_bare": 1.05, "bare_pairs": 5}
    assert Overhead(harness_s=0.0, bare_s=0.0, ratio=float("nan"), pairs=3).metrics() == {}


def test_pooled_fields_carry_the_setups_metrics_into_the_record():
    pool = Pool()
    pool.add(0, [1e-3] * 8)
    static = dict(tokens=10, metrics={"bare_call_s": 9e-4, "harness_over_bare": 1.1,
                                      "bare_pairs": 4})
    f = pooled_fields(static, pool, noise_threshold=0.1, threads=1, warmup_s=0.0,
                      stop_reason="ci", calls_per_sample=1)
    assert f["metrics"] == static["metrics"]
    assert "metrics" not in pooled_fields(dict(tokens=10), pool, noise_threshold=0.1,
                                          threads=1, warmup_s=0.0, stop_reason="ci",
                                          calls_per_sample=1)


def cell() -> Cell:
    return Cell.make(arch="lmu-fft", workload="classify", seq_len=16, batch=2, preset="tiny")


def test_a_fast_cell_records_its_bare_call_time(monkeypatch):
    # a share the pairs always fit: a neighbour's burst must not make the cell look slow
    monkeypatch.setattr(worker, "BARE_SHARE", 100.0)
    out = measure_cell(cell(), RunSettings(budget_s=0.2, rounds=2, count_flops=False))
    m = out["metrics"]
    assert set(m) == {"bare_call_s", "harness_over_bare", "bare_pairs"}
    # no bound on the ratio here: on a shared 2-core machine a neighbour's burst stalls
    # torch's two threads for tens of milliseconds at a time (the spin tests bound it)
    assert m["bare_pairs"] >= BARE_MIN_PAIRS and m["bare_call_s"] > 0
    assert m["harness_over_bare"] > 0


def test_a_cell_whose_pairs_do_not_fit_its_share_gets_none():
    out = measure_cell(cell(), RunSettings(budget_s=1e-4, count_flops=False))
    assert "metrics" not in out and out["time_median_s"] > 0
