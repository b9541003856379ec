"""The harness's CUDA branches and measure path, driven on a CPU-only machine.

``fake_cuda`` is a ``torch.cuda`` surface that says a GPU is there and keeps torch's own
rule for ``set_device``: it resolves its argument with the real
``torch.cuda._utils._get_device_index`` (optional=False), which raises ``ValueError:
Expected a torch.device with a specified index`` for ``torch.device("cuda")``. Anything
past device selection then fails (this torch has no CUDA), which the tests expect.
"""

from __future__ import annotations

import json

import pytest
import torch

from harness.errors import UsageError
from harness.run import devices
from harness.run.launchers.local import worker_slots
from harness.run.settings import RunSettings
from harness.run.worker import measure_cell, run_cell
from harness.store.records import Cell


class FakeCuda:
    def __init__(self, monkeypatch, count: int = 1) -> None:
        self.selected: list[int] = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
        monkeypatch.setattr(torch.cuda, "set_device", self.set_device)

    def set_device(self, device) -> None:
        from torch.cuda._utils import _get_device_index

        self.selected.append(_get_device_index(device))  # torch's own index rule


@pytest.fixture
def fake_cuda(monkeypatch):
    return FakeCuda(monkeypatch)


@pytest.fixture(autouse=True)
def restore_tf32():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def cell(**kw) -> Cell:
    base = dict(arch="lmu-fft", workload="forward", seq_len=16, batch=2, preset="tiny")
    return Cell.make(**{**base, **kw})


FAST = RunSettings(budget_s=0.05, count_flops=False)


# -- fault 1: an index-less CUDA device ---------------------------------------------------------


def test_fake_cuda_keeps_torchs_index_rule(fake_cuda):
    with pytest.raises(ValueError, match="specified index"):
        torch.cuda.set_device(torch.device("cuda"))
    torch.cuda.set_device(torch.device("cuda", 0))
    assert fake_cuda.selected == [0]


def test_worker_selects_an_indexed_cuda_device(fake_cuda):
    rec = run_cell(cell(device="cuda"), FAST)
    assert fake_cuda.selected == [0]
    assert "specified index" not in rec.message  # before: every default GPU cell died here


def test_profile_selects_an_indexed_cuda_device(fake_cuda):
    from harness.profile.trace import prepare_cell

    with pytest.raises(Exception) as info:  # past selection: this torch has no CUDA
        prepare_cell(cell(device="cuda"), seed=0)
    assert "specified index" not in str(info.value)
    assert fake_cuda.selected == [0]


def test_resolve_keeps_an_explicit_index(fake_cuda):
    assert devices.index_of("cuda:1") == torch.device("cuda", 1)
    assert devices.index_of("cuda") == torch.device("cuda", 0)
    assert devices.index_of("cpu") == torch.device("cpu")


# -- fault 2: --compile must compile ------------------------------------------------------------


@pytest.mark.slow
def test_compiled_cell_compiles_and_still_counts_flops(monkeypatch):
    """FLOP counting on the first call used to put it under a dispatch mode, where dynamo
    skips the frame: 0 graphs, eager code measured as 'compile=default'."""
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()
    real = torch.compile
    monkeypatch.setattr(torch, "compile",
                        lambda model, mode=None, **kw: real(model, backend=counter))
    torch._dynamo.reset()
    settings = RunSettings(budget_s=0.05, count_flops=True)
    out = measure_cell(cell(compile="default", arch="transformer"), settings)
    assert counter.frame_count >= 1, "no graph was compiled"
    eager = measure_cell(cell(arch="transformer"), settings)
    if hasattr(torch.compiler, "set_stance"):
        assert out["flops"] == eager["flops"] and out["flops"] > 0
    else:  # torch < 2.6: no way to run the compiled model eagerly; not counted
        assert out["flops"] is None


# -- faults 6 and 7: precision policy and kernel path ---------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["strict", "tf32"])
def test_cell_sets_both_tf32_flags_explicitly(policy):
    torch.backends.cuda.matmul.allow_tf32 = policy == "strict"  # the opposite, to be undone
    torch.backends.cudnn.allow_tf32 = policy == "strict"
    out = measure_cell(cell(), RunSettings(budget_s=0.05, count_flops=False, precision=policy))
    want = policy == "tf32"
    assert torch.backends.cuda.matmul.allow_tf32 is want
    assert torch.backends.cudnn.allow_tf32 is want
    assert out["precision"] == policy and out["kernel_path"] == "pytorch"


@pytest.mark.slow
def test_record_carries_kernel_path_of_fused_kernel(monkeypatch):
    from architectures import optional
    from tests.fake_kernels import Calls, install, make_fla

    install(monkeypatch, make_fla("0.6.0", Calls()))
    try:
        c = cell(arch="linear-attention", seq_len=32)
        rec = run_cell(c, RunSettings(budget_s=0.05, count_flops=False, precision="tf32"))
        assert rec.status == "ok", rec.message
        assert rec.kernel_path == "flash-linear-attention 0.6.0" and rec.precision == "tf32"
        rec = run_cell(c, RunSettings(budget_s=0.05, count_flops=False))
        assert rec.kernel_path == "pytorch" and rec.precision == "strict"
        assert "fla-linear-attn not used" in rec.message and "strict" in rec.message
    finally:
        optional._import.cache_clear()


def test_precision_is_a_validated_run_setting():
    assert RunSettings().precision == "strict"
    with pytest.raises(UsageError, match="valid choices: strict, tf32"):
        RunSettings.from_dict({"precision": "fp16"}, "suite 'x'")


# -- fault 8: concurrent cells --------------------------------------------------------------------


def test_one_slot_per_gpu(fake_cuda, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert worker_slots("cuda", 4, None)[0] == ["cuda:0", "cuda:1"]  # never 4 on 2 GPUs
    assert worker_slots("cuda", 1, None)[0] == ["cuda"]
    assert worker_slots("cuda:1", 3, None)[0] == ["cuda:1"]
    with pytest.raises(UsageError, match="cuda:0 twice"):
        worker_slots("cuda", 1, ["cuda:0", "cuda"])


def test_cpu_slots_split_the_cores(monkeypatch):
    from harness.run.launchers import local

    monkeypatch.setattr(local, "usable_cores", lambda: 8)
    assert worker_slots("cpu", 2, None) == (["cpu", "cpu"], 4)
    assert worker_slots("cpu", 1, ["cpu", "cpu"]) == (["cpu", "cpu"], 4)  # was 0: all cores
    assert worker_slots("cpu", 1, ["cpu"]) == (["cpu"], 0)


@pytest.mark.slow
def test_env_json_records_policy_and_kernels(tmp_path):
    from harness.run.sweep import execute, plan

    p = plan("smoke", arch=["lmu-fft"], workload=["forward"], seq_len=[32], device="cpu",
             settings={"precision": "tf32"}, out=tmp_path / "run")
    recs = execute(p)
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env["float32_policy"] == "tf32"
    assert set(env["kernels"]) == {"mamba-ssm", "fla-linear-attn", "fla-delta-rule"}
    assert [r.precision for r in recs] == ["tf32"] and recs[0].kernel_path == "pytorch"
