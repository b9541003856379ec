"""What a selftest does (``SelftestConfig``) and the suite its sweep stage runs; apart so
that the stages can import it without importing the package that runs them."""

from __future__ import annotations

from dataclasses import dataclass

SUITE = "selftest"


@dataclass(frozen=True)
class SelftestConfig:
    """How much to do. The defaults are the acceptance run; tests pass smaller ones."""

    calibrate_seconds: float = 0.6  # per operation and timer, split over calibrate's rounds
    calibrate_attempts: int = 3
    archs: tuple[str, ...] | None = None  # contract + sweep subset (None: all / the suite's)
    seq_len: tuple[int, ...] | None = None  # sweep lengths (None: the suite's)
    baseline: str | None = None  # None: the suite's, stored with the sweep
    strict: bool = False  # an installed kernel that did not run fails (always so on CUDA)
