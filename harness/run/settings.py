"""How cells are run: the one :class:`RunSettings`, with one set of defaults.

The timing defaults (budget, CI target, noise threshold) are :class:`TimingConfig`'s, so
a run and a bare ``Timer`` agree unless a suite's ``[settings]`` says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

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

    def __post_init__(self) -> None:
        object.__setattr__(self, "plugins", tuple(self.plugins))

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> RunSettings:
        names = {f.name for f in fields(cls)}
        for key in d:
            if key not in names:
                raise UsageError(
                    f"{where}: unknown setting {key!r}; valid choices: {', '.join(sorted(names))}"
                )
        return cls(**d)

    def timing(self) -> TimingConfig:
        """The Timer's configuration for one cell of this run."""
        return TimingConfig(budget_s=self.budget_s, target_rel_ci=self.target_rel_ci,
                            noise_threshold=self.noise_threshold)
