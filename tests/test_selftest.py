"""``python -m harness selftest``: a fast variant of the whole command on CPU, the timer
stage's retry rule, and the command line's bad input."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from harness.cli import main as cli_main
from harness.selftest import Check, SelftestConfig, check_timer, run_selftest, verdict

STAGES = ["environment", "contract", "kernels", "timer", "sweep", "report"]


def test_fast_selftest_runs_every_stage_and_writes_its_files(tmp_path):
    lines: list[str] = []
    cfg = SelftestConfig(calibrate_seconds=0.1, calibrate_attempts=2,
                         archs=("lmu", "lmu-fft"), seq_len=(64,))
    checks = run_selftest("cpu", tmp_path, cfg, log=lines.append)
    by = {c.name: c for c in checks}
    assert list(by) == STAGES
    # deterministic stages must pass here; the timer depends on a quiet machine
    for name in ("environment", "contract", "kernels", "sweep", "report"):
        assert by[name].passed, (name, by[name].summary)
    assert by["contract"].summary.startswith("2/2 adapters")
    assert by["kernels"].summary == "0 fused kernel(s) checked, 3 not run here"
    assert by["sweep"].data["cells"] == by["sweep"].data["ok"] >= 2
    data = json.loads((tmp_path / "selftest.json").read_text())
    assert data["passed"] == all(c.passed for c in checks)
    assert data["verdict"].startswith("selftest PASS on cpu" if data["passed"]
                                      else "selftest FAIL on cpu")
    md = (tmp_path / "selftest.md").read_text()
    assert "## contract: PASS" in md and "lmu-fft" in md
    assert (tmp_path / "report" / "index.md").is_file()
    assert json.loads((tmp_path / "env.json").read_text())["float32_policy"] == "strict"
    assert (tmp_path / "sweep" / "records.jsonl").is_file()


def _row(op: str, ratio: float):
    return SimpleNamespace(op=op, ratio_torch=ratio, ratio_triton=None, harness_s=1e-3 * ratio,
                           torch_s=1e-3, triton_s=None, agrees=0.95 <= ratio <= 1.05)


@pytest.fixture
def quiet(monkeypatch):
    """Readings taken on an idle machine (others used no cores)."""
    monkeypatch.setattr("harness.measure.contention.others_cores", lambda a, b: 0.0)


@pytest.fixture
def busy(monkeypatch):
    monkeypatch.setattr("harness.measure.contention.others_cores", lambda a, b: 5.0)


def test_timer_passes_an_op_that_agrees_on_a_later_reading(monkeypatch, quiet):
    readings = iter([[_row("matmul a", 1.0), _row("add b", 1.6)],
                     [_row("matmul a", 1.4), _row("add b", 1.03)]])
    monkeypatch.setattr("harness.measure.calibrate.run_calibration",
                        lambda device, seconds: next(readings))
    check = check_timer("cpu", 0.1, attempts=3)
    assert check.passed and check.data["readings"] == 2
    assert "2/2 operations agree" in check.summary


def test_timer_fails_an_op_that_never_agrees(monkeypatch, quiet):
    monkeypatch.setattr("harness.measure.calibrate.run_calibration",
                        lambda device, seconds: [_row("matmul a", 1.0), _row("add b", 1.5)])
    check = check_timer("cpu", 0.1, attempts=3)
    assert not check.passed and check.data["readings"] == 3
    assert "1/2 operations agree" in check.summary and "add 1.50" in check.summary


def test_timer_calls_disagreement_under_contention_inconclusive(monkeypatch, busy):
    monkeypatch.setattr("harness.measure.calibrate.run_calibration",
                        lambda device, seconds: [_row("matmul a", 1.0), _row("add b", 1.5)])
    check = check_timer("cpu", 0.1, attempts=2)
    assert check.passed and check.data["inconclusive"] == ["add b"]
    assert "inconclusive, every reading contended: add b" in check.summary
    assert check.data["others_cores"] == [5.0, 5.0]


def test_verdict_names_what_failed():
    checks = [Check("contract", True, "13/13", 2.0), Check("timer", False, "4/5 agree", 5.0)]
    assert verdict(checks, "cuda") == "selftest FAIL on cuda in 7 s: timer: 4/5 agree"
    assert verdict(checks[:1], "cpu") == "selftest PASS on cpu in 2 s: contract ok"


def test_cli_refuses_a_used_out_directory(tmp_path, capsys):
    (tmp_path / "old.txt").write_text("keep me")
    assert cli_main(["selftest", "--device", "cpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an empty directory" in err[0]
    assert (tmp_path / "old.txt").read_text() == "keep me"


@pytest.mark.parametrize("device", ["tpu", "cuda"])
def test_cli_bad_device_is_one_line(tmp_path, capsys, device):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA present")
    assert cli_main(["selftest", "--device", device, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "valid choices" in err[0]


def test_missing_packages_fail_with_an_offline_install_line(monkeypatch, capsys, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "psutil" else real(name, *a))
    assert cli_main(["selftest", "--device", "cpu", "--out", str(tmp_path / "x")]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("selftest FAIL: missing psutil")
    assert "--no-index --find-links wheels psutil" in out[0]
    assert not (tmp_path / "x").exists()


def test_cli_baseline_outside_the_sweep_is_one_line(tmp_path, capsys):
    assert cli_main(["selftest", "--device", "cpu", "--baseline", "mamba",
                     "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'mamba'" in err[0] and "valid choices: lmu" in err[0]


def test_timer_allows_do_bench_to_read_slower_never_faster():
    from harness.selftest import agrees

    row = _row("matmul a", 1.0)
    assert agrees(row)
    row.ratio_triton = 0.6  # harness faster than do_bench: its L2 flush, expected
    assert agrees(row)
    row.ratio_triton = 1.3  # harness slower than do_bench: a fault
    assert not agrees(row)
    assert not agrees(_row("add b", 1.3))
