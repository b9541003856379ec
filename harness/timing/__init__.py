"""Old import path of :mod:`harness.measure.timing`, kept because the asv suite
(``asv_bench/``) imports ``harness.timing`` at every commit of its history.

A package rather than a ``timing.py`` file so that git follows ``harness/timing.py`` to
``harness/measure/timing.py`` when branches written before the move are rebased.
"""

from harness.measure.timing import Measurement, Timer, TimingConfig, parse_device

__all__ = ["Measurement", "Timer", "TimingConfig", "parse_device"]
