"""The machine-states tool alternates real cells and prints each one's median per window."""

from __future__ import annotations

import re

import pytest

from tools.machine_states import main


def test_prints_each_cells_median_and_the_ratio_per_window(capsys):
    main(["--arch", "lmu,lmu-fft,lstm", "--seq-len", "16", "--batch", "2",
          "--minutes", "0.02", "--window-s", "0.4"])
    lines = capsys.readouterr().out.splitlines()
    assert lines
    number = r"([\d.]+(?:e[-+]\d+)?)"
    pattern = (rf"\d\d:\d\d:\d\d  lmu {number} ms  lmu-fft {number} ms  lstm {number} ms  "
               rf"lmu/lmu-fft {number}  lmu/lstm {number}")
    for line in lines:
        lmu, fft, lstm, r1, r2 = map(float, re.fullmatch(pattern, line).groups())
        assert min(lmu, fft, lstm) > 0
        assert r1 == pytest.approx(lmu / fft, rel=0.005, abs=0.006)
        assert r2 == pytest.approx(lmu / lstm, rel=0.005, abs=0.006)


def test_one_architecture_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--arch", "lmu"])
    assert e.value.code == 2
    assert "--arch 'lmu': give at least two architectures" in capsys.readouterr().err
