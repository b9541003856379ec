"""One cell setup (harness.run.cell) for the worker's timed and task paths and profiling."""

from __future__ import annotations

import pytest
import torch

import architectures
from harness.run.cell import Placement, build_model, enter_cell, prepare_timed
from harness.store.records import Cell

CPU = Placement(torch.device("cpu"), torch.float64)


def _cell(**kw) -> Cell:
    base = dict(arch="lstm", workload="forward", seq_len=8, batch=2, preset="tiny",
                device="cpu", dtype="float64", compile="none")
    return Cell.make(**{**base, **kw})


def test_enter_seeds_and_places():
    at = enter_cell(_cell(), seed=3)
    a = torch.rand(4)
    enter_cell(_cell(), seed=3)
    assert torch.equal(a, torch.rand(4))  # the same seed, the same draws
    assert at == CPU


def test_enter_selects_an_indexed_cuda_device(monkeypatch):
    selected = []

    def set_device(device):  # torch's rule: an int or a device with an index
        if isinstance(device, torch.device) and device.index is None:
            raise ValueError("Expected a torch.device with a specified index")
        selected.append(device)

    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    at = enter_cell(_cell(device="cuda:1", dtype="bfloat16"), seed=0)
    assert selected == [torch.device("cuda:1")]
    assert at == Placement(torch.device("cuda:1"), torch.bfloat16)


def test_build_model_places_counts_and_keeps_the_declaration():
    model, params = build_model(_cell(overrides={"hidden_size": 12}), CPU)
    assert params == sum(p.numel() for p in model.parameters()) > 0
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert model.info == architectures.info("lstm")
    small, small_params = build_model(_cell(overrides={"hidden_size": 12}), CPU, {"hidden_size": 4})
    assert small_params < params  # an explicit config replaces the cell's overrides


def test_compiled_model_keeps_its_declaration(monkeypatch):
    class Compiled(torch.nn.Module):  # what torch.compile returns: a wrapper without .info
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

    monkeypatch.setattr(torch, "compile", lambda m, mode: Compiled(m))
    model, _ = build_model(_cell(compile="default"), CPU)
    assert isinstance(model, Compiled) and model.info == architectures.info("lstm")


def test_prepare_timed_builds_what_the_workload_runs():
    prep, params = prepare_timed(_cell(), CPU, seed=0)
    prep.run()  # the prepared step runs on the built model
    assert params == architectures.build("lstm", preset="tiny").num_params()
    assert prep.tokens == 2 * 8


@pytest.mark.parametrize("seed", [0, 1])
def test_the_same_seed_builds_the_same_model(seed):
    enter_cell(_cell(), seed)
    a, _ = build_model(_cell(), CPU)
    enter_cell(_cell(), seed)
    b, _ = build_model(_cell(), CPU)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values(), strict=True))
