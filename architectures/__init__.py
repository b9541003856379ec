"""Sequence architectures behind one registry.

>>> import architectures
>>> architectures.available()            # names
>>> model = architectures.build("lmu-fft", input_size=1, output_size=10)
>>> model.info, model.num_params()
"""

from architectures.base import AdapterInfo, SequenceModel, state_nbytes
from architectures.registry import (
    DEFAULT_PRESET,
    REFERENCE_IO,
    available,
    build,
    info,
    preset_config,
    presets,
    register,
    spec,
    target_params,
)

# Importing the adapter modules registers them.
from architectures import lmu, lstm, transformer  # noqa: E402,F401  isort: skip
from architectures import linear_attention, mamba, mingru, s4d  # noqa: E402,F401  isort: skip

__all__ = [
    "AdapterInfo",
    "SequenceModel",
    "state_nbytes",
    "DEFAULT_PRESET",
    "REFERENCE_IO",
    "available",
    "build",
    "info",
    "preset_config",
    "presets",
    "register",
    "spec",
    "target_params",
]
