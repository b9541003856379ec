"""Interleaved, randomised rounds: how a sweep spreads each cell's samples over time.

Measuring cell after cell puts whatever the machine does during one stretch (a neighbour's
burst, thermal or frequency drift, a hypervisor's steal) onto one architecture, and a
speedup then states the machine's mood. Instead each cell's samples are taken in
``rounds`` rounds, and each worker visits its cells in a fresh random order every round
(as asv's interleaved rounds and Google Benchmark's random interleaving do), so drift
falls on every architecture alike and averages out in the pooled samples.

- Round 0 runs in the scheduler's length order, so the rule that skips an architecture's
  longer lengths after an OOM or a timeout still holds (failures happen in round 0).
- Rounds 1… visit the worker's surviving cells in an order drawn from
  ``random.Random(f"{seed}/{slot}/{round}")``: seeded, so a rerun repeats it, and recorded
  per record (``round_order``: the cell's position in each round).
- Each round measures for ``budget_s / rounds`` and at least as many samples as still
  needed to reach ``min_samples`` over the remaining rounds, so every finished cell has
  at least ``min_samples`` samples.
- Samples are pooled; ``sample_rounds`` keeps each sample's round.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from harness.measure.headline import (
    HEADLINE_MIN_SAMPLES,
    cell_contended,
    headline_samples,
    uncontended,
)
from harness.measure.timing import Measurement

T = TypeVar("T")


def visiting_order(items: Sequence[T], round_index: int, *, seed: int, slot: str = "") -> list[T]:
    """The order a worker visits its cells in a round: as given in round 0, then shuffled."""
    out = list(items)
    if round_index > 0:
        random.Random(f"{seed}/{slot}/{round_index}").shuffle(out)
    return out


def samples_needed(taken: int, round_index: int, rounds: int, min_samples: int) -> int:
    """The fewest samples this round must take so the cell ends with ``min_samples``
    (spread evenly over the rounds left; always at least one)."""
    left = max(1, rounds - round_index)
    return max(1, math.ceil(max(0, min_samples - taken) / left))


@dataclass
class Pool:
    """A cell's samples pooled over rounds, with each sample's round and contention."""

    samples: list[float] = field(default_factory=list)
    sample_rounds: list[int] = field(default_factory=list)
    contention: list[float] = field(default_factory=list)
    round_order: list[int] = field(default_factory=list)  # position in each round's order
    rounds_done: int = 0

    def add(self, round_index: int, samples: Sequence[float],
            contention: Sequence[float] = (), position: int = 0) -> None:
        if round_index != self.rounds_done:
            raise ValueError(f"round {round_index} added after {self.rounds_done} rounds")
        self.samples += [float(s) for s in samples]
        self.sample_rounds += [round_index] * len(samples)
        # contention is per sample when measured; absent (off Linux) it stays empty
        if len(contention) == len(samples) and len(self.contention) == len(self.samples) - len(
            samples
        ):
            self.contention += [float(c) for c in contention]
        else:
            self.contention = []
        self.round_order.append(position)
        self.rounds_done += 1

    def quiet(self, threads: int) -> int:
        """Samples that count towards the cell's minimum: contended ones do not."""
        return len(uncontended(self.samples, self.contention, threads))


def pooled_fields(
    static: dict[str, Any],
    pool: Pool,
    *,
    noise_threshold: float,
    threads: int,
    warmup_s: float | None,
    stop_reason: str,
    calls_per_sample: int,
) -> dict[str, Any]:
    """A finished cell's Record fields from its pooled samples and what its setup measured.

    ``static`` holds ``params``, ``peak_mem_bytes``, ``peak_reserved_bytes``, ``flops``,
    ``analytic_flops`` and ``analytic_bytes`` (absent from rounds stored before them),
    ``tokens`` (per call), ``per_token`` (divide the median by this for a per-token time,
    or None), ``kernel_path``, ``precision``, ``kernel_note`` and optionally ``state_bytes``
    and ``metrics`` (the record's, e.g. ``bare_call_s``).
    """
    used = headline_samples(pool.samples, pool.contention, threads)
    m = Measurement.from_samples(
        used, noise_threshold=noise_threshold, warmup_s=warmup_s or 0.0,
        calls_per_sample=calls_per_sample, stop_reason=stop_reason,
    )
    left_out = len(pool.samples) - m.n
    # a cell whose median rests on enough quiet samples is not one to distrust
    contended = not left_out and cell_contended(pool.contention, threads)
    flops = static.get("flops")
    per_token = static.get("per_token")
    message = f"{m.summary()}, {pool.rounds_done} rounds"
    if left_out:
        message += f", {left_out} contended samples left out of the median"
    out: dict[str, Any] = dict(
        params=static.get("params"),
        time_median_s=m.median,
        time_iqr_s=m.iqr,
        time_min_s=m.min,
        samples=list(pool.samples),  # every sample; the statistics rest on headline_samples
        n_samples=len(pool.samples),
        noisy=m.noisy,
        rel_ci=m.rel_ci,
        warmup_s=warmup_s,
        stop_reason=stop_reason,
        calls_per_sample=calls_per_sample,
        peak_mem_bytes=static.get("peak_mem_bytes"),
        peak_reserved_bytes=static.get("peak_reserved_bytes"),
        tokens_per_s=static["tokens"] / m.median if m.median > 0 else None,
        time_per_token_s=m.median / per_token if per_token else None,
        flops=flops,
        flops_per_s=flops / m.median if flops and m.median > 0 else None,
        analytic_flops=static.get("analytic_flops"),
        analytic_bytes=static.get("analytic_bytes"),
        rounds=pool.rounds_done,
        sample_rounds=list(pool.sample_rounds),
        round_order=list(pool.round_order),
        contention=list(pool.contention),
        contended=contended,
        thin=len(pool.samples) < HEADLINE_MIN_SAMPLES,
        message=message + (" CONTENDED" if contended else "")
        + (f"; {static['kernel_note']}" if static.get("kernel_note") else ""),
        kernel_path=static.get("kernel_path", ""),  # which implementation ran (worker)
        precision=static.get("precision", ""),  # the float32 policy it ran under
    )
    if static.get("state_bytes") is not None:
        out["state_bytes"] = int(static["state_bytes"])
    if static.get("metrics"):  # the harness-vs-bare figures (harness.run.worker.bare_metrics)
        out["metrics"] = dict(static["metrics"])
    return out
