"""Test-only adapters that misbehave on purpose, loaded by the runner as a plugin.

Each fails only when the sequence is at least ``fail_at`` long, so one sweep shows both
the failure and the cells around it succeeding.
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn

from architectures import SequenceModel, register

HANGING = "SEQBENCH_TEST_HANGING"
COMMON = dict(family="test", parallel_training=True, stepwise=False,
              time_complexity="O(n)", memory_complexity="O(n)",
              presets={"tiny": {}, "small": {}})


class _Faulty(SequenceModel):
    def __init__(self, input_size: int = 1, output_size: int = 10, fail_at: int = 1 << 30,
                 hog_gb: float = 4.0) -> None:
        super().__init__(input_size, output_size)
        self.proj = nn.Linear(input_size, output_size)
        self.fail_at = fail_at
        self.hog_gb = hog_gb

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] >= self.fail_at:
            self.misbehave()
        return self.proj(x)

    def misbehave(self) -> None:
        pass


@register("test-ok", description="a linear map", **COMMON)
class Ok(_Faulty):
    pass


@register("test-raise", description="raises RuntimeError", **COMMON)
class Raise(_Faulty):
    def misbehave(self) -> None:
        raise RuntimeError("injected failure")


@register("test-abort", description="aborts the process (SIGABRT)", **COMMON)
class Abort(_Faulty):
    def misbehave(self) -> None:
        os.abort()


@register("test-hang", description="never returns", **COMMON)
class Hang(_Faulty):
    def misbehave(self) -> None:
        mark = os.environ.get(HANGING)  # a folder: say which process hangs
        if mark:
            open(os.path.join(mark, str(os.getpid())), "w").close()
        while True:
            time.sleep(0.05)


@register("test-hog", description="touches hog_gb GiB of memory", **COMMON)
class Hog(_Faulty):
    def misbehave(self) -> None:
        chunks = []
        for _ in range(int(self.hog_gb * 16)):  # 64 MiB at a time, every page touched
            chunks.append(torch.ones(16 * 2**20))
            time.sleep(0.005)
        raise AssertionError("the memory cap should have stopped this cell")


@register("test-slow", description="sleeps 30 ms per call", **COMMON)
class Slow(_Faulty):
    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.03)
        return self.proj(x)


@register("test-nan", description="outputs NaN (a broken model that is fast)", **COMMON)
class NaN(_Faulty):
    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(x)
        return y * float("nan") if x.shape[1] >= self.fail_at else y


@register("test-segv", description="dereferences NULL (SIGSEGV)", **COMMON)
class Segv(_Faulty):
    def misbehave(self) -> None:
        import ctypes

        ctypes.string_at(0)


@register("test-spawn", description="starts `sleep <fail_at + 1000>` once, leaves it running",
          **COMMON)
class Spawn(_Faulty):
    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        if not getattr(self, "_spawned", False):
            import subprocess

            self._spawned = True
            subprocess.Popen(["sleep", str(self.fail_at + 1000)])
        return self.proj(x)


@register("test-build", description="its constructor raises `build_error`, allocates "
          "`build_mb` MiB or sleeps `build_s` seconds", **COMMON)
class Build(_Faulty):
    def __init__(self, input_size: int = 1, output_size: int = 10, fail_at: int = 1 << 30,
                 hog_gb: float = 4.0, build_error: str = "", build_mb: int = 0,
                 build_s: float = 0.0) -> None:
        super().__init__(input_size, output_size, fail_at, hog_gb)
        time.sleep(build_s)
        if build_error:
            raise {"MemoryError": MemoryError, "RuntimeError": RuntimeError}[build_error](
                "injected at build")
        self.register_buffer("weight", torch.ones(build_mb * 2**18))  # every page touched


@register("test-late", description="sleeps 20 ms per call; raises once `stop_file` exists",
          **COMMON)
class Late(_Faulty):
    def __init__(self, input_size: int = 1, output_size: int = 10, fail_at: int = 1 << 30,
                 hog_gb: float = 4.0, stop_file: str = "") -> None:
        super().__init__(input_size, output_size, fail_at, hog_gb)
        self.stop_file = stop_file

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        if self.stop_file and os.path.exists(self.stop_file):
            raise RuntimeError("injected late failure")
        time.sleep(0.02)
        return self.proj(x)


@register("test-nan-later", description="finite on its first `fail_at` calls, NaN after",
          **COMMON)
class NaNLater(_Faulty):
    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        self.calls = getattr(self, "calls", 0) + 1
        y = self.proj(x)
        return y * float("nan") if self.calls > self.fail_at else y


@register("test-inplace", description="scales its input in place (x.mul_(1e30))", **COMMON)
class InPlace(_Faulty):
    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        x.mul_(1e30)
        return self.proj(x).clamp(-1, 1)


@register("test-output", description="forward_sequence returns `output` (none, tuple, shape, "
          "int64) instead of its (batch, n, output_size) tensor", **COMMON)
class BadOutput(_Faulty):
    def __init__(self, input_size: int = 1, output_size: int = 10, fail_at: int = 1 << 30,
                 hog_gb: float = 4.0, output: str = "none") -> None:
        super().__init__(input_size, output_size, fail_at, hog_gb)
        self.output = output

    def forward_sequence(self, x: torch.Tensor):
        y = self.proj(x)
        return {"none": None, "tuple": (y, y), "shape": y[:, :1],
                "int64": y.long()}[self.output]
