"""Measuring one callable: time (``timing``), memory (``memory``), FLOPs (``flops``), and
the timer's agreement with reference timers (``calibrate``). Imports nothing else of the
harness but ``harness.errors``."""
