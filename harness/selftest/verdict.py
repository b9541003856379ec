"""A stage's outcome and the selftest's verdict: pass, not run (what and why), or fail.

Three words, not two: a stage that could not check something here (no fused kernel on
this device, a timer reading pushed out by a neighbour's load) says so and is counted as
such, instead of passing what it never checked. Only a failure makes the exit code
non-zero; what turns a "not run" into a failure (``--strict``, an installed kernel on
CUDA) is decided by the stage itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any


class Outcome(Enum):
    """A stage's (or one item's) verdict, worst last."""

    PASS = "pass"
    NOT_RUN = "not run"
    FAIL = "fail"


def worst(outcomes: Iterable[Outcome]) -> Outcome:
    """A failure wins, then a "not run": a stage passes only when all of it was checked."""
    found = set(outcomes)
    for o in (Outcome.FAIL, Outcome.NOT_RUN):
        if o in found:
            return o
    return Outcome.PASS


@dataclass
class Check:
    """One stage: its outcome, the counts for the verdict line (``brief``: what ran, what
    did not and why, what failed), a fuller one-line ``summary`` for the log and
    selftest.md, and its section of selftest.md."""

    name: str
    outcome: Outcome
    summary: str
    brief: str = ""
    seconds: float = 0.0
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAIL

    def label(self) -> str:
        """``kernels: not run (0 of 3 run; not on cuda: …)``: the stage in the verdict."""
        return f"{self.name}: {self.outcome.value}" + (f" ({self.brief})" if self.brief else "")


def exit_code(checks: list[Check]) -> int:
    """0 unless a stage failed: "not run" alone does not fail the command."""
    return 1 if any(c.failed for c in checks) else 0


def counts(checks: list[Check]) -> dict[str, int]:
    """How many stages ended in each outcome, every outcome named."""
    return {o.value: sum(c.outcome is o for c in checks) for o in Outcome}


def verdict(checks: list[Check], device: str) -> str:
    """The one line a person reads: PASS/FAIL (the exit code), the device, the time, the
    count of each outcome, then every stage with its counts."""
    total = sum(c.seconds for c in checks)
    head = f"selftest {'FAIL' if exit_code(checks) else 'PASS'} on {device} in {total:.0f} s"
    tally = ", ".join(f"{n} {o}" for o, n in counts(checks).items())
    return f"{head} ({tally}): " + "; ".join(c.label() for c in checks)


def heading(check: Check) -> str:
    return f"{check.outcome.value.upper()} ({check.seconds:.1f} s)"


def write(checks: list[Check], device: str, out: Path) -> None:
    """``selftest.md`` (the figures, a section a stage) and ``selftest.json``."""
    line = verdict(checks, device)
    lines = ["# seqbench selftest", "", f"**{line}**", ""]
    for c in checks:
        lines += [f"## {c.name}: {heading(c)}", "", c.summary, "", *c.lines, ""]
    (out / "selftest.md").write_text("\n".join(lines))
    payload = {"device": device, "verdict": line, "exit_code": exit_code(checks),
               "counts": counts(checks),
               "checks": [{k: v for k, v in asdict(c).items() if k != "lines"}
                          | {"outcome": c.outcome.value} for c in checks]}
    (out / "selftest.json").write_text(json.dumps(payload, indent=2, default=str))
