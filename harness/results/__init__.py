"""Old import path of the results store, kept for the README's Python API
(``from harness.results import load``): runs load with :func:`harness.store.load.load_runs`
and live in a :class:`harness.store.rundir.RunDir`.

A package rather than a ``results.py`` file so that git follows ``harness/results.py`` to
``harness/store/rundir.py`` when branches written before the move are rebased.
"""

from harness.store.load import load_runs as load
from harness.store.rundir import ResultStore, RunDir

__all__ = ["ResultStore", "RunDir", "load"]
