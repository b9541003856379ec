"""One device parser (harness.run.devices) for run, profile and the Python API."""

from __future__ import annotations

import pytest
import torch

from harness.cli import main as cli_main
from harness.errors import UsageError
from harness.run.devices import default_device, parse_devices, resolve_device
from harness.run.launchers.local import worker_slots


@pytest.fixture
def two_gpus(monkeypatch):
    """torch reports two CUDA devices (nothing is allocated on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_default_follows_what_torch_reports(no_cuda):
    assert default_device() == resolve_device(None) == "cpu"


def test_default_is_cuda_when_present(two_gpus):
    assert resolve_device(None) == "cuda"


@pytest.mark.parametrize("bad", ["tpu", "cpu:0", "cuda:", "cuda:x", "CUDA", " cpu", ""])
def test_unknown_names_list_the_valid_choices(no_cuda, bad):
    with pytest.raises(UsageError) as e:
        resolve_device(bad)
    assert str(e.value) == f"unknown device {bad!r}; valid choices: cpu, cuda, cuda:N"


@pytest.mark.parametrize("spec", ["cuda", "cuda:0"])
def test_cuda_without_cuda_says_so(no_cuda, spec):
    with pytest.raises(UsageError, match=rf"device '{spec}' requested but CUDA is not available"
                                         "; valid choices: cpu"):
        resolve_device(spec)


def test_indices_are_checked_against_the_machine(two_gpus):
    assert [resolve_device(d) for d in ("cpu", "cuda", "cuda:0", "cuda:1")] == [
        "cpu", "cuda", "cuda:0", "cuda:1"]  # returned as given: cell ids stay stable
    with pytest.raises(UsageError) as e:
        resolve_device("cuda:2")
    assert str(e.value) == "unknown device 'cuda:2'; valid choices: cpu, cuda, cuda:0, cuda:1"


def test_devices_all_is_every_gpu_indexed(two_gpus):
    assert parse_devices(["all"]) == ["cuda:0", "cuda:1"]
    assert parse_devices(["cuda:1", "cuda:0"]) == ["cuda:1", "cuda:0"]
    assert parse_devices(None) is None and parse_devices([]) is None
    with pytest.raises(UsageError, match="'cuda:7'"):
        parse_devices(["cuda:0", "cuda:7"])


def test_devices_all_without_cuda(no_cuda):
    with pytest.raises(UsageError, match="--devices all requested but CUDA is not available"):
        parse_devices(["all"])


def test_worker_slots_use_the_same_parser(two_gpus):
    assert worker_slots("cuda", 1, ["all"]) == (["cuda:0", "cuda:1"], 0)
    with pytest.raises(UsageError, match="cuda:2"):
        worker_slots("cuda", 1, ["cuda:2"])


@pytest.mark.parametrize("command", [
    ["run", "--suite", "smoke", "--device", "tpu"],
    ["profile", "--arch", "lmu", "--seq-len", "64", "--device", "tpu"],
])
def test_commands_reject_the_same_way(no_cuda, capsys, tmp_path, command):
    code = cli_main([*command, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1] == "error: unknown device 'tpu'; valid choices: cpu, cuda, cuda:N"
