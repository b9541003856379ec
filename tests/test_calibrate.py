"""``python -m harness calibrate``: runs, prints the ratio table, rejects bad input."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest

from harness import cli
from harness.measure.calibrate import CalibrationRow, operations, run_calibration


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")  # keep rich table rows on one line
    return subprocess.run(
        [sys.executable, "-m", "harness", "calibrate", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )


def test_calibrate_prints_ratio_table():
    # one thread: two-thread ops on a loaded 2-core box can wait a whole scheduler slice
    # for their second thread, which makes any two timers disagree by 10x or more
    proc = _run("--seconds", "0.2", "--rounds", "1", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "ratio vs torch" in out
    import torch

    for name in operations(torch.device("cpu")):
        line = next(ln for ln in out.splitlines() if name in ln)
        ratio = float(re.findall(r"(\d+\.\d+)(?: OUTSIDE)?\s*│\s*$", line)[0])
        # a real ratio was measured; agreement itself needs a quiet machine (0.17 was seen
        # at load 10 on 2 cores), so it is reported, not asserted
        assert 0 < ratio < math.inf
    assert re.search(r"ratios (within|outside)", out)


@pytest.mark.parametrize(
    "args, needle",
    [(["--device", "mps"], "valid choices: cpu, cuda"), (["--seconds", "0"], "--seconds"),
     (["--rounds", "0"], "--rounds"), (["--threads", "-1"], "--threads")],
)
def test_bad_input_exit_2_one_line(args, needle, capsys):
    assert cli.main(["calibrate", *args]) == 2  # in-process: the CLI catches UsageError
    err = capsys.readouterr().err
    assert needle in err
    assert len(err.strip().splitlines()) == 1


def test_run_calibration_rows_consistent():
    rows = run_calibration("cpu", seconds=0.05, rounds=1)
    assert [r.op for r in rows] == list(operations(__import__("torch").device("cpu")))
    for r in rows:
        assert r.harness_s > 0 and r.torch_s > 0
        assert r.ratio_torch == pytest.approx(r.harness_s / r.torch_s)
        assert r.triton_s is None


def test_agreement_band():
    def row(rt, rtri=None):
        return CalibrationRow("op", "cpu", 1.0, 10, 0.01, False, 1.0, rt, None, rtri)

    assert row(0.9).agrees and row(1.1).agrees and row(1.0, 1.05).agrees
    assert not row(0.89).agrees and not row(1.11).agrees and not row(1.0, 1.2).agrees
