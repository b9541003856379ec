"""Old import path of :mod:`harness.measure.memory`, kept because the asv suite
(``asv_bench/``) imports ``harness.memory`` at every commit of its history.
"""

from harness.measure.memory import MemoryTracker

__all__ = ["MemoryTracker"]
