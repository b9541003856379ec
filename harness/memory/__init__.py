"""Old import path of :mod:`harness.measure.memory`, kept because the asv suite
(``asv_bench/``) imports ``harness.memory`` at every commit of its history.

A package rather than a ``memory.py`` file so that git follows ``harness/memory.py`` to
``harness/measure/memory.py`` when branches written before the move are rebased.
"""

from harness.measure.memory import MemoryTracker

__all__ = ["MemoryTracker"]
