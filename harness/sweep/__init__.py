"""Old import path of :mod:`harness.run.sweep`, kept for the README's Python API
(``from harness.sweep import run``).

A package rather than a ``sweep.py`` file so that git follows ``harness/sweep.py`` to
``harness/run/sweep.py`` when branches written before the move are rebased.
"""

from harness.run.sweep import execute, plan, run

__all__ = ["execute", "plan", "run"]
