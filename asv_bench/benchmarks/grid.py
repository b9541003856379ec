"""The grids the asv suite is parameterised over, and the measurement of one cell.

Kept free of asv so ``tests/tools/test_asv.py`` can check it directly. No names here start
with ``time_``/``track_``/``peakmem_``/``mem_``: asv would take them for benchmarks.

Grid names (``SEQBENCH_ASV_GRID``):

* ``default``: a commit's CPU run in about a minute or two on a small machine: tiny
  presets, short sequences, at most about 1 s of timing per cell.
* ``test``: two cheap adapters, one length, ``forward`` only, for the end-to-end test.

When CUDA is present a second grid (:data:`CUDA_GRIDS`) is added by a separate benchmark
class, so the CPU benchmarks keep their names and parameters whatever the machine.
Changing a grid changes what a benchmark's history means: add cells, don't edit them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

GRID_ENV = "SEQBENCH_ASV_GRID"
BATCH = 4
SEED = 0


@dataclass(frozen=True)
class Grid:
    """architecture × sequence length × workload, plus how each cell is built and timed."""

    archs: tuple[str, ...]
    seq_lens: tuple[int, ...]
    workloads: tuple[str, ...]
    preset: str = "tiny"
    batch: int = BATCH
    # harness Timer per cell: enough warm-up and budget for several samples even when a
    # load spike stalls one call, so the median (not one unlucky call) is what is stored
    budget_s: float = 0.5
    warmup_max_s: float = 0.5
    # torch intra-op threads while a cell runs; None keeps torch's default. The CPU grids
    # use 1: with several threads, OpenMP's spinning barriers on a busy machine turned
    # 0.4 ms calls into 60-2000 ms ones here, and a history must compare like with like.
    threads: int | None = None

    @property
    def params(self) -> list[list]:
        """asv ``params``: one list per ``param_names`` entry."""
        return [list(self.archs), list(self.seq_lens), list(self.workloads)]

    def cells(self) -> list[tuple[str, int, str]]:
        return [(a, n, w) for a in self.archs for n in self.seq_lens for w in self.workloads]


CPU_GRIDS = {
    "default": Grid(
        # the sequential lmu is here so history would catch a slower honest baseline
        # (an O(n^2) backward once hid in it: 45x slower at n = 4096)
        archs=("lmu", "lmu-fft", "lstm", "transformer"),
        seq_lens=(128, 512),
        workloads=("forward", "train"),
        threads=1,
    ),
    "test": Grid(archs=("lmu-fft", "lstm"), seq_lens=(32,), workloads=("forward",), batch=1,
                 budget_s=0.5, warmup_max_s=0.3, threads=1),
}

CUDA_GRIDS = {
    "default": Grid(
        archs=("lmu", "lmu-fft", "lmu-chunked", "lstm", "transformer", "mamba", "s4d"),
        seq_lens=(1024, 4096, 16384),
        workloads=("forward", "train"),
        preset="small",
        batch=8,
        budget_s=0.5,
        warmup_max_s=0.5,
    ),
    "test": Grid(archs=("lmu-fft", "lstm"), seq_lens=(256,), workloads=("forward",), batch=1,
                 budget_s=0.2, warmup_max_s=0.1),
}

PARAM_NAMES = ["arch", "seq_len", "workload"]


def grid_name(environ: dict[str, str] | None = None) -> str:
    """The grid selected by ``SEQBENCH_ASV_GRID`` (default ``default``)."""
    env = os.environ if environ is None else environ
    name = env.get(GRID_ENV, "default") or "default"
    if name not in CPU_GRIDS:
        raise ValueError(f"{GRID_ENV}={name!r} is not a grid; valid choices: "
                         f"{', '.join(CPU_GRIDS)}")
    return name


@dataclass(frozen=True)
class CellResult:
    """One cell's figures, or why it could not run (kept so asv can skip it)."""

    time_s: float = math.nan
    tokens_per_s: float = math.nan
    cuda_peak_bytes: float = math.nan
    error: str = ""


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` (unchanged when None), then restored."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def prepare_cell(arch: str, seq_len: int, workload: str, grid: Grid, device: str):
    """Build the adapter and its inputs; returns the workload's ``Prepared``."""
    import torch

    import architectures
    import workloads

    model = architectures.build(arch, preset=grid.preset).to(device)
    return workloads.get(workload).prepare(
        model, batch=grid.batch, seq_len=seq_len, device=torch.device(device),
        dtype=torch.float32, seed=SEED,
    )


def measure_cell(arch: str, seq_len: int, workload: str, grid: Grid,
                 device: str = "cpu") -> CellResult:
    """Median seconds per call through the harness Timer (CUDA-synchronised on GPU),
    tokens/s from it, and on CUDA the peak allocated bytes of one call."""
    try:
        with torch_threads(grid.threads):
            return _measure(arch, seq_len, workload, grid, device)
    except Exception as exc:  # a cell this commit cannot run is skipped, not fatal
        return CellResult(error=f"{type(exc).__name__}: {exc}")


def _measure(arch: str, seq_len: int, workload: str, grid: Grid, device: str) -> CellResult:
    import torch

    from harness.timing import Timer, TimingConfig

    prepared = prepare_cell(arch, seq_len, workload, grid, device)
    cuda_peak = math.nan
    if device.startswith("cuda"):
        from harness.memory import MemoryTracker

        prepared.run()  # first call: lazy init and allocator growth are not the peak
        torch.cuda.synchronize(device)
        with MemoryTracker(device) as tracker:
            prepared.run()
            torch.cuda.synchronize(device)
        cuda_peak = float(tracker.peak_bytes)
    config = TimingConfig(warmup_max_s=grid.warmup_max_s,
                          warmup_min_s=min(0.2, grid.warmup_max_s),
                          budget_s=grid.budget_s,
                          # the asv suite keeps its own stopping rule on purpose: its history
                          # was measured with 0.03 (TimingConfig's default until issue 13)
                          target_rel_ci=0.03)
    m = Timer(prepared.run, device, config).measure()
    return CellResult(time_s=m.median, tokens_per_s=prepared.tokens / m.median,
                      cuda_peak_bytes=cuda_peak)


def measure_grid(grid: Grid, device: str = "cpu") -> dict[tuple[str, int, str], CellResult]:
    """Every cell of ``grid`` once (asv's ``setup_cache``: one measurement feeds the
    seconds and the tokens/s benchmarks, so they describe the same samples)."""
    return {cell: measure_cell(*cell, grid, device) for cell in grid.cells()}
