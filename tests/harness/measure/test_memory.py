"""MemoryTracker against known allocations (every page touched, so RSS really grows)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from harness.measure.memory import MemoryTracker, reset_peak_rss

MB = 1_000_000
HAS_HWM = reset_peak_rss()
CPU_METHODS = ["sampling"] + (["hwm"] if HAS_HWM else [])


@pytest.mark.parametrize("method", CPU_METHODS)
def test_numpy_buffer_peak_within_15_percent(method):
    size = 200 * MB
    with MemoryTracker("cpu", method=method) as mt:
        buf = np.ones(size // 8)  # ones, not empty: every page is written
        time.sleep(0.02)  # give the sampler a few ticks (the hwm method needs none)
        del buf
    assert mt.method == method
    assert mt.peak_bytes == pytest.approx(size, rel=0.15)


@pytest.mark.skipif(not HAS_HWM, reason="needs /proc/self/clear_refs")
def test_hwm_catches_short_spike_torch_buffer():
    size = 200 * MB
    with MemoryTracker("cpu") as mt:
        t = torch.ones(size // 4)  # float32
        del t  # freed at once: no sleep, so only the kernel's high-water mark sees it
    assert mt.method == "hwm"
    assert mt.peak_bytes == pytest.approx(size, rel=0.15)


@pytest.mark.parametrize("method", CPU_METHODS)
def test_nothing_allocated_is_small(method):
    with MemoryTracker("cpu", method=method) as mt:
        time.sleep(0.01)
    assert 0 <= mt.peak_bytes < 5 * MB


@pytest.mark.parametrize("method", CPU_METHODS)
def test_peak_is_relative_to_baseline(method):
    held = np.ones(150 * MB // 8)  # live before the tracker: not the block's memory
    with MemoryTracker("cpu", method=method) as mt:
        extra = np.ones(50 * MB // 8)
        time.sleep(0.02)
        del extra
    assert mt.peak_bytes == pytest.approx(50 * MB, rel=0.15)
    del held


def test_tracker_reusable_and_reports_each_block():
    mt = MemoryTracker("cpu")
    with mt:
        a = np.ones(100 * MB // 8)
        time.sleep(0.02)
        del a
    first = mt.peak_bytes
    with mt:
        pass
    assert first == pytest.approx(100 * MB, rel=0.15)
    assert mt.peak_bytes < 5 * MB


def test_bad_arguments():
    with pytest.raises(ValueError, match="valid choices: auto, hwm, sampling"):
        MemoryTracker("cpu", method="guess")
    with pytest.raises(ValueError, match="valid choices: cpu, cuda"):
        MemoryTracker("tpu")
    with pytest.raises(ValueError, match="interval_s"):
        MemoryTracker("cpu", interval_s=0)


@pytest.mark.gpu
def test_cuda_peak_allocated_and_reserved():
    size = 256 * 2**20
    with MemoryTracker("cuda") as mt:
        t = torch.empty(size, dtype=torch.uint8, device="cuda")
        del t
    assert mt.method == "cuda"
    assert mt.peak_bytes == size  # the caching allocator's count is exact
    assert mt.reserved_bytes >= size
