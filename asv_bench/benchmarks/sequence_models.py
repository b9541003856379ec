"""Speed, throughput and memory of sequence models, one history per grid cell.

Parameterised over architecture × sequence length × workload (``grid.py``). Times come
from the harness's own Timer (CUDA events + synchronisation on GPU), reported as
``track_`` benchmarks so asv stores exactly the harness's median:

* ``CPU.track_time_s`` (seconds per call) and ``CPU.track_tokens_per_s``, with torch on
  one thread (``grid.Grid.threads``: comparable across commits on a busy machine);
* ``CPUMemory.peakmem_run``: asv's peak RSS of the benchmark process (interpreter, torch,
  model and one call: compare it across commits, not across adapters' absolute sizes);
* with CUDA present, ``CUDA.track_time_s``, ``CUDA.track_tokens_per_s`` and
  ``CUDA.track_cuda_peak_bytes`` (the caching allocator's peak of one call) on a larger
  grid. The CPU classes are the same on every machine, so their names stay stable.

asv counts any increase as a regression. For ``track_tokens_per_s`` a slowdown therefore
shows as an *improvement*; read regressions from ``track_time_s``.

A cell the benchmarked commit cannot run (an adapter that did not exist yet) is skipped.
"""

from __future__ import annotations

import dataclasses

import torch

from .grid import CPU_GRIDS, CUDA_GRIDS, PARAM_NAMES, grid_name, measure_grid, prepare_cell

# asv keys history by this version instead of a hash of the source, so editing the code
# (not the grids) keeps the history. Bump it when what a figure means changes.
SUITE_VERSION = "seqbench-asv-1"
_GRID = grid_name()


def _cell_or_skip(cache: dict, arch: str, seq_len: int, workload: str) -> dict:
    cell = cache[(arch, seq_len, workload)]
    if cell["error"]:
        raise NotImplementedError(cell["error"])  # asv records the cell as skipped
    return cell


class _Timed:
    """What the CPU and CUDA classes share: one cell's figures read from the grid's cache.

    Each subclass defines its own ``setup_cache``: asv keys that cache by the defining
    function's source line, so one inherited definition would hand the CPU grid's cache to
    the CUDA benchmarks. (A leading underscore keeps asv from collecting this class.)
    """

    param_names = PARAM_NAMES
    version = SUITE_VERSION

    def setup(self, cache: dict, arch: str, seq_len: int, workload: str) -> None:
        _cell_or_skip(cache, arch, seq_len, workload)

    def track_time_s(self, cache: dict, arch: str, seq_len: int, workload: str) -> float:
        return _cell_or_skip(cache, arch, seq_len, workload)["time_s"]

    track_time_s.unit = "seconds"

    def track_tokens_per_s(self, cache: dict, arch: str, seq_len: int, workload: str) -> float:
        return _cell_or_skip(cache, arch, seq_len, workload)["tokens_per_s"]

    track_tokens_per_s.unit = "tokens/s"


class CPU(_Timed):
    """Median seconds per call and tokens/s on the CPU, one setup_cache per commit."""

    params = CPU_GRIDS[_GRID].params
    timeout = 900  # the whole grid is measured once, in setup_cache

    def setup_cache(self) -> dict:
        results = measure_grid(CPU_GRIDS[_GRID], "cpu")
        return {cell: dataclasses.asdict(r) for cell, r in results.items()}


class CPUMemory:
    """Peak RSS of building a cell and running it once on the CPU."""

    params = CPU_GRIDS[_GRID].params
    param_names = PARAM_NAMES
    version = SUITE_VERSION
    timeout = 300

    def setup(self, arch: str, seq_len: int, workload: str) -> None:
        grid = CPU_GRIDS[_GRID]
        if grid.threads is not None:  # as in the timed cells (this process runs one cell)
            torch.set_num_threads(grid.threads)
        try:
            self.prepared = prepare_cell(arch, seq_len, workload, CPU_GRIDS[_GRID], "cpu")
        except Exception as exc:
            raise NotImplementedError(f"{type(exc).__name__}: {exc}") from exc

    def peakmem_run(self, arch: str, seq_len: int, workload: str) -> None:
        self.prepared.run()


if torch.cuda.is_available():  # the grid grows on a GPU machine

    class CUDA(_Timed):
        """Seconds per call (CUDA events), tokens/s and allocator peak bytes on cuda:0."""

        params = CUDA_GRIDS[_GRID].params
        timeout = 1800

        def setup_cache(self) -> dict:
            results = measure_grid(CUDA_GRIDS[_GRID], "cuda")
            return {cell: dataclasses.asdict(r) for cell, r in results.items()}

        def track_cuda_peak_bytes(self, cache: dict, arch: str, seq_len: int,
                                  workload: str) -> float:
            return _cell_or_skip(cache, arch, seq_len, workload)["cuda_peak_bytes"]

        track_cuda_peak_bytes.unit = "bytes"
