"""How cells are run: the one :class:`RunSettings`, with one set of defaults.

The timing defaults (budget, CI target, noise threshold) are :class:`TimingConfig`'s, so
a run and a bare ``Timer`` agree unless a suite's ``[settings]`` says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from architectures.optional import POLICIES
from harness.errors import UsageError
from harness.measure.timing import TimingConfig

_TIMING = TimingConfig()


@dataclass(frozen=True)
class RunSettings:
    """How cells are run; every field can be set in a suite's ``[settings]``."""

    budget_s: float = _TIMING.budget_s  # timing budget per cell (stops earlier when stable)
    timeout_s: float = 120.0  # wall-clock limit of one cell (build + warm-up + timing)
    mem_cap_gb: float = 0.0  # CPU resident-memory cap per cell (0: 75% of RAM)
    seed: int = 0
    target_rel_ci: float = _TIMING.target_rel_ci  # stop once the median's 95% CI is this tight
    noise_threshold: float = _TIMING.noise_threshold  # IQR/median above this: noisy
    count_flops: bool = True
    plugins: tuple[str, ...] = ()  # modules or .py files that register extra adapters
    rounds: int = 5  # interleaved rounds each timed cell's samples are taken in
    warm_mem_gb: float = 0.0  # memory (USS) idle warm cells may hold (0: half of free RAM)
    # float32 matmul/conv precision of every cell, set explicitly in each cell process:
    # "strict" (IEEE) or "tf32" (harness.run.devices.set_float32_policy)
    precision: str = "strict"

    def __post_init__(self) -> None:
        if not isinstance(self.plugins, (list, tuple)) or not all(
                isinstance(p, str) for p in self.plugins):
            raise UsageError(f"setting plugins must be a list of module names or .py paths, "
                             f"got {self.plugins!r}")
        object.__setattr__(self, "plugins", tuple(self.plugins))
        self.check()

    def check(self) -> None:
        """Every value finite, of its type and in its range, and the budget inside the
        timeout: a NaN limit would switch the limit off, and a budget past the timeout
        times out every cell. Names both the suite key and the command-line flag."""
        for name, low, high, zero_ok in (("budget_s", 0, None, False),
                                         ("timeout_s", 0, None, False),
                                         ("mem_cap_gb", 0, None, True),
                                         ("target_rel_ci", 0, 1, False),
                                         ("noise_threshold", 0, None, False)):
            v = getattr(self, name)
            ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  and (v >= low if zero_ok else v > low) and (high is None or v < high))
            if not ok:
                rng = f">= {low}" if zero_ok else f"> {low}"
                rng += f" and < {high}" if high is not None else ""
                raise UsageError(f"setting {_named(name)} must be a finite number {rng}, "
                                 f"got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UsageError(f"setting seed must be an integer >= 0, got {self.seed!r}")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise UsageError(f"setting rounds (--rounds) must be an integer >= 1, "
                             f"got {self.rounds!r}")
        wm = self.warm_mem_gb
        if isinstance(wm, bool) or not isinstance(wm, (int, float)) or not math.isfinite(wm) \
                or wm < 0:
            raise UsageError(f"setting warm_mem_gb must be a finite number >= 0, got {wm!r}")
        if not isinstance(self.count_flops, bool):
            raise UsageError(f"setting count_flops must be true or false, "
                             f"got {self.count_flops!r}")
        if self.budget_s >= self.timeout_s:
            raise UsageError(
                f"the timing budget (budget_s, --budget-s) {self.budget_s:g} s must be below "
                f"the cell timeout (timeout_s, --timeout-s) {self.timeout_s:g} s, which also "
                "covers building and warming up: every cell would time out"
            )
        if self.precision not in POLICIES:
            raise UsageError(f"unknown precision {self.precision!r}; valid choices: "
                             f"{', '.join(POLICIES)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> RunSettings:
        if not isinstance(d, dict):
            raise UsageError(f"{where}: [settings] must be a table of key = value, got {d!r}")
        names = {f.name for f in fields(cls)}
        for key in d:
            if key not in names:
                raise UsageError(
                    f"{where}: unknown setting {key!r}; valid choices: {', '.join(sorted(names))}"
                )
        try:
            return cls(**d)
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None

    def timing(self) -> TimingConfig:
        """The Timer's configuration for one cell of this run."""
        return TimingConfig(budget_s=self.budget_s, target_rel_ci=self.target_rel_ci,
                            noise_threshold=self.noise_threshold)


FLAGS = ("budget_s", "timeout_s", "mem_cap_gb")  # settings the run command takes as flags


def _named(name: str) -> str:
    """``budget_s (--budget-s)``: the suite key, and the flag where there is one."""
    return f"{name} (--{name.replace('_', '-')})" if name in FLAGS else name
