"""Optional fast kernels (``mamba-ssm``, flash-linear-attention): used when present, never needed.

Each adapter has a pure-PyTorch path that runs everywhere; a CUDA/Triton kernel package is
only an accelerator for it. ``OptionalKernel.load()`` imports the package at most once and
remembers why it could not (``reason``), so a machine without it loses speed, not the
adapter, and ``kernel_status()`` can say which accelerators a run actually had.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch

# dtypes the CUDA/Triton kernels accept (none of them compute in float64)
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@cache
def _import(module: str) -> tuple[Any, str | None]:
    try:
        return importlib.import_module(module), None
    except Exception as exc:  # ImportError, or a broken build raising at import time
        return None, f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class OptionalKernel:
    """One optional kernel: the pip package that provides it and the module to import."""

    package: str
    module: str

    def load(self) -> Any | None:
        return _import(self.module)[0]

    def reason(self) -> str | None:
        """Why it is unavailable (None when it imports)."""
        return _import(self.module)[1]

    def usable_for(self, x: torch.Tensor) -> bool:
        """True when ``x`` is on CUDA in a kernel dtype and the package imports."""
        return x.is_cuda and x.dtype in KERNEL_DTYPES and self.load() is not None


MAMBA_SSM = OptionalKernel("mamba-ssm", "mamba_ssm.ops.selective_scan_interface")
FLA_LINEAR_ATTN = OptionalKernel("flash-linear-attention", "fla.ops.linear_attn")
FLA_DELTA_RULE = OptionalKernel("flash-linear-attention", "fla.ops.delta_rule")
KERNELS = {
    "mamba-ssm": MAMBA_SSM,
    "fla-linear-attn": FLA_LINEAR_ATTN,
    "fla-delta-rule": FLA_DELTA_RULE,
}


def kernel_status() -> dict[str, str]:
    """``{kernel: "available" | reason}``: for ``harness list``/env records."""
    return {name: k.reason() or "available" for name, k in KERNELS.items()}
