"""Old import path of :mod:`harness.store.rundir`, kept for the README's Python API
(``from harness.results import load``).

A package rather than a ``results.py`` file so that git follows ``harness/results.py`` to
``harness/store/rundir.py`` when branches written before the move are rebased.
"""

from harness.store.rundir import ResultStore, RunDir, load

__all__ = ["ResultStore", "RunDir", "load"]
