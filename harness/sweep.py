"""Old import path of :mod:`harness.run.sweep`, kept for the README's Python API
(``from harness.sweep import run``).
"""

from harness.run.sweep import execute, plan, run

__all__ = ["execute", "plan", "run"]
