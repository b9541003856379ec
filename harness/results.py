"""Old import path of the results store, kept for the README's Python API
(``from harness.results import load``): runs load with :func:`harness.store.load.load_runs`
and live in a :class:`harness.store.rundir.RunDir`.
"""

from harness.store.load import load_runs as load
from harness.store.rundir import RunDir

__all__ = ["RunDir", "load"]
