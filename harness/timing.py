"""Old import path of :mod:`harness.measure.timing`, kept because the asv suite
(``asv_bench/``) imports ``harness.timing`` at every commit of its history.
"""

from harness.measure.timing import Measurement, Timer, TimingConfig, parse_device

__all__ = ["Measurement", "Timer", "TimingConfig", "parse_device"]
