"""Optional fused kernels (``mamba-ssm``, flash-linear-attention): used when they can run.

Each adapter has a pure-PyTorch path that runs everywhere; a CUDA/Triton kernel package is
only an accelerator for it. An :class:`OptionalKernel` states what the package's own
source requires, and :meth:`OptionalKernel.use` answers, per call, whether the fused
kernel runs (True) or the PyTorch path does (False):

* **imports and is built**: the module imports (at most once; ``reason()`` keeps why not),
  and, for mamba-ssm, ``selective_scan_interface.selective_scan_cuda`` is not None. Since
  mamba-ssm made its CUDA build opt-in (state-spaces/mamba PR #977, "Make CUDA selective
  scan install explicit opt-in"), the module imports with ``selective_scan_cuda = None``
  and fails only when called (PR #915: "already handles ``selective_scan_cuda = None``").
* **dtype**: fla's ``chunk_delta_rule`` asserts ``q.dtype != torch.float32``
  ("ChunkDeltaRuleFunction does not support float32", fla/ops/delta_rule/chunk.py, in
  0.4.2 and 0.6.0); mamba-ssm's ``selective_scan_fwd`` checks its input is float, half or
  bfloat16 (csrc/selective_scan/selective_scan.cpp). None of them computes in float64.
* **precision policy**: fla's Triton kernels call ``tl.dot`` with Triton's default input
  precision, TF32 for float32 inputs (e.g. ``tl.dot(b_q, b_k, b_A)`` in
  fla/ops/common/chunk_o.py), whatever torch's flags say. Under the strict float32 policy
  (``torch.backends.cuda.matmul.allow_tf32`` False, see :func:`float32_policy`) a float32
  call therefore takes the PyTorch path, so every architecture of a run computes at the
  same precision.
* **short sequences**: flash-linear-attention 0.4.2's ``chunk_linear_attn`` raises when
  ``seq_len < num_heads`` (it takes that for a head-first layout mix-up; fla/ops/
  linear_attn/chunk.py), later versions warn or accept it. Such calls take the PyTorch
  path on every version (a sequence that short is no place for a fused kernel anyway).

The decision is a pure function of (kernel, device type, dtype, sequence length, heads,
policy), marked as ``torch.compiler.assume_constant_result`` marks
(:func:`constant_when_compiled`), so a compiled model decides once while tracing instead
of breaking its graph. Inside :func:`kernel_log` every decision is
noted, which is how a measured cell records its ``kernel_path``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import torch

PYTORCH_PATH = "pytorch"
POLICIES = ("strict", "tf32")  # float32 matmul/conv precision of a run


def float32_policy() -> str:
    """The float32 precision policy this process runs under, read from torch's own flags:
    ``"tf32"`` when cuBLAS matmuls may use TF32, else ``"strict"``."""
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "strict"


def opaque_to_compile(fn: Any) -> Any:
    """``torch.compiler.disable`` without importing ``torch._dynamo`` now: that import
    costs 1.4 s at the start of every process that imports the adapters, and only the
    fused-kernel paths (CUDA) call what it marks. torch's own lazy form: dynamo is
    imported at the first call."""
    from torch._compile import _disable_dynamo

    return _disable_dynamo(fn)


def constant_when_compiled(fn: Any) -> Any:
    """``torch.compiler.assume_constant_result`` without importing ``torch._dynamo``: that
    decorator only marks ``fn`` (torch/_dynamo/decorators.py); a test checks the mark is
    the one torch sets."""
    fn._dynamo_marked_constant = True
    return fn


@cache
def _import(module: str, built: str | None) -> tuple[Any, str | None]:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken build raising at import time
        return None, f"{type(exc).__name__}: {exc}"
    if built is not None and getattr(mod, built, None) is None:
        return None, (f"{module}.{built} is None: the package is installed without its "
                      "compiled CUDA extension")
    return mod, None


@dataclass(frozen=True)
class OptionalKernel:
    """One optional kernel: its pip package, the module to import, and what it accepts."""

    package: str
    module: str
    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)
    built: str | None = None  # module attribute that is None when the extension is not built
    tf32_inside: bool = False  # computes float32 matmuls in TF32 whatever torch's flags say
    needs_len_ge_heads: bool = False  # refuses seq_len < num_heads on some versions
    device_types: tuple[str, ...] = ("cuda",)
    name: str = ""  # key in KERNELS

    def load(self) -> Any | None:
        return _import(self.module, self.built)[0]

    def reason(self) -> str | None:
        """Why it is unavailable (None when it imports and is built)."""
        return _import(self.module, self.built)[1]

    def version(self) -> str:
        """The package version (its top-level ``__version__``), "" when unknown."""
        try:
            top = importlib.import_module(self.module.split(".")[0])
        except Exception:  # noqa: BLE001
            return ""
        return str(getattr(top, "__version__", ""))

    def label(self) -> str:
        """``package version``: what a record's ``kernel_path`` says when this one ran."""
        return f"{self.package} {self.version()}".strip()

    def refusal(self, device_type: str, dtype: torch.dtype, seq_len: int | None = None,
                heads: int | None = None) -> str | None:
        """Why the fused kernel cannot take this call (None: it can)."""
        if device_type not in self.device_types:
            return f"not on {'/'.join(self.device_types)}"
        if self.load() is None:
            return self.reason()
        if dtype not in self.dtypes:
            return f"{str(dtype).removeprefix('torch.')} is not supported by {self.package}"
        if dtype == torch.float32 and self.tf32_inside and float32_policy() == "strict":
            return (f"{self.package} computes float32 in TF32; the run's float32 policy "
                    "is strict")
        if self.needs_len_ge_heads and seq_len is not None and heads is not None \
                and seq_len < heads:
            return f"seq_len {seq_len} < heads {heads} (rejected by some {self.package} versions)"
        return None

    def use(self, x: torch.Tensor, *, seq_len: int | None = None,
            heads: int | None = None) -> bool:
        """True when the fused kernel should run on ``x`` (noted inside ``kernel_log``).

        Decided by ``KERNELS[self.name]`` (tests swap in variants there)."""
        return _decide(self.name, x.device.type, x.dtype,
                       None if seq_len is None else int(seq_len),
                       None if heads is None else int(heads))


MAMBA_SSM = OptionalKernel(
    "mamba-ssm", "mamba_ssm.ops.selective_scan_interface", built="selective_scan_cuda",
    name="mamba-ssm",
)
FLA_LINEAR_ATTN = OptionalKernel(
    "flash-linear-attention", "fla.ops.linear_attn", tf32_inside=True, needs_len_ge_heads=True,
    name="fla-linear-attn",
)
FLA_DELTA_RULE = OptionalKernel(
    "flash-linear-attention", "fla.ops.delta_rule", dtypes=(torch.float16, torch.bfloat16),
    tf32_inside=True, needs_len_ge_heads=True, name="fla-delta-rule",
)
KERNELS: dict[str, OptionalKernel] = {
    "mamba-ssm": MAMBA_SSM,
    "fla-linear-attn": FLA_LINEAR_ATTN,
    "fla-delta-rule": FLA_DELTA_RULE,
}


@dataclass
class KernelLog:
    """The kernel decisions taken inside one ``kernel_log()`` block."""

    used: set[str] = field(default_factory=set)  # labels of fused kernels that ran
    refused: dict[str, str] = field(default_factory=dict)  # kernel → why the PyTorch path ran

    @property
    def path(self) -> str:
        """``"pytorch"``, or the fused packages (with versions) that ran."""
        return ", ".join(sorted(self.used)) or PYTORCH_PATH

    def note(self) -> str:
        """Why installed kernels were not used (empty when none was refused)."""
        return "; ".join(f"{k} not used: {why}" for k, why in sorted(self.refused.items()))


_LOG: ContextVar[KernelLog | None] = ContextVar("seqbench_kernel_log", default=None)


@contextmanager
def kernel_log() -> Iterator[KernelLog]:
    """Collect which fused kernels the calls inside the block took (or why not)."""
    log = KernelLog()
    token = _LOG.set(log)
    try:
        yield log
    finally:
        _LOG.reset(token)


@constant_when_compiled
def _decide(key: str, device_type: str, dtype: torch.dtype, seq_len: int | None,
            heads: int | None) -> bool:
    kernel = KERNELS[key]
    why = kernel.refusal(device_type, dtype, seq_len, heads)
    log = _LOG.get()
    if log is not None:
        if why is None:
            log.used.add(kernel.label())
        elif device_type in kernel.device_types and kernel.load() is not None:
            log.refused[key] = why  # installed, but not for this call: worth saying
    return why is None


def kernel_status() -> dict[str, str]:
    """``{kernel: "available (version)" | reason}``: for ``harness list``/env records."""
    return {name: f"available ({k.label()})" if k.reason() is None else str(k.reason())
            for name, k in KERNELS.items()}
