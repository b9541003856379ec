"""One cell setup: select the device, seed, build → to(device, dtype) → compile → prepare.

The worker's timed path, its task path and ``harness profile`` all set a cell up here, so
a profile shows exactly the work that was timed and a task trains the model a timed cell
measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

import architectures
import workloads
from harness.run import devices
from harness.store.records import Cell
from workloads.base import Prepared


@dataclass(frozen=True)
class Placement:
    """Where a cell's model and inputs live."""

    device: torch.device
    dtype: torch.dtype


def enter_cell(cell: Cell, seed: int, precision: str = devices.DEFAULT_POLICY) -> Placement:
    """Select the cell's device for this process (CUDA: by index, as ``set_device`` needs),
    set the float32 ``precision`` policy explicitly and seed torch, before anything is built.
    The device comes back with its index."""
    device = devices.enter(cell.device)
    devices.set_float32_policy(precision)
    torch.manual_seed(seed)
    return Placement(device, getattr(torch, cell.dtype))


def build_model(cell: Cell, at: Placement,
                config: dict[str, Any] | None = None) -> tuple[torch.nn.Module, int]:
    """The cell's model on its device and dtype, compiled when the cell asks, and its
    parameter count. ``config``: the adapter's keys (default: the cell's overrides)."""
    keys = dict(cell.overrides) if config is None else config
    model = architectures.build(cell.arch, preset=cell.preset, **keys)
    params = model.num_params()
    model = model.to(device=at.device, dtype=at.dtype)
    if cell.compile != "none":
        info = model.info
        model = torch.compile(model, mode=cell.compile)
        model.info = info  # type: ignore[attr-defined]  # the registry's declaration stays
    return model, params


def prepare_timed(cell: Cell, at: Placement, seed: int) -> tuple[Prepared, int]:
    """A timed cell's model built and its workload prepared (not yet called); and the
    model's parameter count."""
    model, params = build_model(cell, at)
    prep = workloads.get(cell.workload).prepare(
        model, batch=cell.batch, seq_len=cell.seq_len, device=at.device, dtype=at.dtype,
        seed=seed,
    )
    return prep, params
