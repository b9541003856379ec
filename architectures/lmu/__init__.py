"""The Legendre Memory Unit family: the LTI memory's math and the models that use it.

Importing this package registers its adapters: ``lmu`` (the original, sequential, the
baseline, so it is listed first), ``lmu-fft``, ``lmu-conv``, ``lmu-chunked`` and the
LMU + self-attention hybrid ``lmu-attention``.
"""

from architectures.lmu.legendre import legendre_ab, legendre_ab_ref, zoh
from architectures.lmu.memory import (
    DEFAULT_CHUNK_SIZE,
    MODES,
    MemoryKernels,
    impulse_response,
    impulse_response_ref,
    last_state_kernel,
    lmu_last_state,
    lmu_last_state_ref,
    lmu_memory,
    lmu_memory_ref,
    memory_kernels,
)

# Importing the model modules registers their adapters.
from architectures.lmu import original  # noqa: E402,F401  isort: skip
from architectures.lmu import parallel  # noqa: E402,F401  isort: skip
from architectures.lmu import hybrid  # noqa: E402,F401  isort: skip

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MODES",
    "MemoryKernels",
    "impulse_response",
    "impulse_response_ref",
    "last_state_kernel",
    "legendre_ab",
    "legendre_ab_ref",
    "lmu_last_state",
    "lmu_last_state_ref",
    "lmu_memory",
    "lmu_memory_ref",
    "memory_kernels",
    "zoh",
]
