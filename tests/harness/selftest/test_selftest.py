"""``python -m harness selftest``: a fast variant of the whole command on CPU, the three
outcomes (pass, not run, fail) of the kernels, timer and report stages, one agreement
rule shared with ``calibrate``, and the command line's bad input and exit codes."""

from __future__ import annotations

import json
import shutil

import pytest

from architectures import optional
from harness.cli import main as cli_main
from harness.measure.calibrate import CalibrationRow, Judgement
from harness.selftest import Check, Outcome, SelftestConfig, exit_code, run_selftest, verdict
from harness.selftest.kernels import check_kernels
from harness.selftest.report import check_report, speedup_gaps
from harness.selftest.timer import check_timer
from tests.fake_kernels import Calls, install, make_fla, make_mamba

STAGES = ["environment", "contract", "kernels", "timer", "sweep", "report"]


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    """One fast selftest on CPU (two adapters, one length), shared by the tests below."""
    out = tmp_path_factory.mktemp("selftest")
    lines: list[str] = []
    cfg = SelftestConfig(calibrate_seconds=0.1, calibrate_attempts=2,
                         archs=("lmu", "lmu-fft"), seq_len=(64,))
    return out, run_selftest("cpu", out, cfg, log=lines.append)


@pytest.mark.slow
def test_fast_selftest_runs_every_stage_and_writes_its_files(fast_run):
    tmp_path, checks = fast_run
    by = {c.name: c for c in checks}
    assert list(by) == STAGES
    # deterministic stages must pass here; the timer depends on a quiet machine
    for name in ("environment", "contract", "sweep", "report"):
        assert by[name].outcome is Outcome.PASS, (name, by[name].summary)
    assert by["contract"].brief.startswith("2 of 2 adapters")
    assert by["sweep"].data["cells"] == by["sweep"].data["ok"] >= 2
    assert "finite speedups over lmu for 2 architectures" in by["report"].brief
    data = json.loads((tmp_path / "selftest.json").read_text())
    assert data["exit_code"] == exit_code(checks)
    assert sum(data["counts"].values()) == len(STAGES)
    assert data["verdict"].startswith("selftest FAIL on cpu" if data["exit_code"]
                                      else "selftest PASS on cpu")
    md = (tmp_path / "selftest.md").read_text()
    assert "## contract: PASS" in md and "lmu-fft" in md
    assert (tmp_path / "report" / "index.md").is_file()
    assert json.loads((tmp_path / "env.json").read_text())["float32_policy"] == "strict"
    assert (tmp_path / "sweep" / "records.jsonl").is_file()


@pytest.mark.slow
def test_no_fused_kernel_run_reads_not_run_never_ok(fast_run):
    """On a CPU none of the three fused kernels runs: nothing was checked, so the stage
    and the verdict line say "not run" with the count, and the command still exits 0."""
    tmp_path, checks = fast_run
    kernels = next(c for c in checks if c.name == "kernels")
    assert kernels.outcome is Outcome.NOT_RUN
    assert kernels.brief == ("0 of 3 run; not installed: mamba-ssm, fla-linear-attn, "
                             "fla-delta-rule")
    line = verdict(checks, "cpu")
    assert f"kernels: not run ({kernels.brief})" in line
    assert "kernels ok" not in line and "kernels: pass" not in line
    assert "## kernels: NOT RUN" in (tmp_path / "selftest.md").read_text()


def _without_speedup_tables(monkeypatch):
    """build_report, then the report's speedup tables gone: its index.md still exists."""
    import harness.report

    real = harness.report.build_report

    def build(*args, **kwargs):
        index = real(*args, **kwargs)
        for f in (index.parent / "tables").glob("speedup_*"):
            f.unlink()
        return index

    monkeypatch.setattr(harness.report, "build_report", build)


@pytest.mark.slow
def test_report_stage_fails_without_its_speedup_table(fast_run, tmp_path, monkeypatch):
    run, _ = fast_run
    _without_speedup_tables(monkeypatch)
    check = check_report(run / "sweep", tmp_path / "report", None)
    assert (tmp_path / "report" / "index.md").is_file()
    assert check.outcome is Outcome.FAIL
    assert check.brief == "no speedup table over lmu"


@pytest.mark.slow
def test_report_stage_fails_on_a_speedup_that_is_not_finite(fast_run, tmp_path):
    import pandas as pd

    from harness.report.tasks import split_tasks
    from harness.store.load import load_run

    run, _ = fast_run
    report = shutil.copytree(run / "report", tmp_path / "report")
    timed, _ = split_tasks(load_run(run / "sweep"))
    assert speedup_gaps(report, timed, "lmu") == []
    table = sorted((report / "tables").glob("speedup_*.csv"))[0]
    df = pd.read_csv(table)
    df.loc[df["arch"] == "lmu-fft", "speedup"] = float("nan")
    df.to_csv(table, index=False)
    gaps = speedup_gaps(report, timed, "lmu")
    assert len(gaps) == 1 and gaps[0].startswith("no finite speedup for lmu-fft (")
    table.write_text("")
    assert f"{table.name} is empty" in speedup_gaps(report, timed, "lmu")


def _row(op: str, ratio: float, contended: int = 0, triton: float | None = None):
    """A calibration reading: ``contended`` of its 40 rounds under others' load."""
    return CalibrationRow(op, "cpu", 1e-3 * ratio, 100, 0.01, False, 1e-3, ratio,
                          triton_s=None if triton is None else 1e-3 * ratio / triton,
                          ratio_triton=triton, rounds=40, rounds_contended=contended)


def _readings(monkeypatch, *readings: list[CalibrationRow]) -> None:
    it = iter(readings)
    monkeypatch.setattr("harness.measure.calibrate.run_calibration",
                        lambda device, seconds: next(it))


def test_timer_passes_an_op_that_agrees_on_a_later_reading(monkeypatch):
    _readings(monkeypatch, [_row("matmul a", 1.0), _row("add b", 1.6)],
              [_row("matmul a", 1.4), _row("add b", 1.03)])
    check = check_timer("cpu", 0.1, attempts=3)
    assert check.outcome is Outcome.PASS and check.data["readings"] == 2
    assert check.brief == "2 of 2 agree"


def test_timer_fails_an_op_that_never_agrees(monkeypatch):
    _readings(monkeypatch, *[[_row("matmul a", 1.0), _row("add b", 1.5)]] * 3)
    check = check_timer("cpu", 0.1, attempts=3)
    assert check.outcome is Outcome.FAIL and check.data["readings"] == 3
    assert check.brief == "1 of 2 agree; outside: add b" and "add 1.50" in check.summary


def test_timer_read_only_under_contention_is_not_run_never_ok(monkeypatch):
    """Every reading of ``add b`` disagreed while others' load contended its rounds: the
    timer was not checked on it. Before, the stage passed and the verdict said "timer ok"."""
    _readings(monkeypatch, *[[_row("matmul a", 1.0), _row("add b", 1.5, contended=30)]] * 2)
    check = check_timer("cpu", 0.1, attempts=2)
    assert check.outcome is Outcome.NOT_RUN
    assert check.brief == "1 of 2 agree; contended: add b"
    assert check.data["judgements"]["add b"] == ["busy", "busy"]
    line = verdict([check], "cpu")
    assert "timer: not run (1 of 2 agree; contended: add b)" in line
    assert "timer ok" not in line and exit_code([check]) == 0


def test_timer_fails_an_op_that_disagreed_on_one_quiet_reading(monkeypatch):
    _readings(monkeypatch, [_row("add b", 1.5, contended=30)], [_row("add b", 1.5)])
    assert check_timer("cpu", 0.1, attempts=2).outcome is Outcome.FAIL


SELFTEST_READS = {Judgement.AGREES: Outcome.PASS, Judgement.BUSY: Outcome.NOT_RUN,
                  Judgement.OUTSIDE: Outcome.FAIL}


@pytest.mark.parametrize("row", [
    _row("op", 1.0), _row("op", 1.3), _row("op", 1.3, contended=30),
    _row("op", 1.0, triton=0.6),  # harness faster than do_bench: its L2 flush, expected
    _row("op", 1.0, triton=1.3),  # harness slower than do_bench: a fault
], ids=["agrees", "outside", "busy", "do_bench-slower", "do_bench-faster"])
def test_calibrate_and_selftest_judge_one_reading_alike(monkeypatch, capsys, row):
    """One rule: calibrate's printed judgement and selftest's outcome of the same reading.
    Before, calibrate failed a harness faster than do_bench that selftest passed, and
    selftest judged contention by its own measure."""
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr("harness.cli.calibrate.run_calibration", lambda *a: [row])
    assert cli_main(["calibrate", "--seconds", "0.1"]) == 0
    out = capsys.readouterr().out
    printed = {Judgement.AGREES: "all 1 operations agree",
               Judgement.BUSY: "while the machine was busy",
               Judgement.OUTSIDE: "1 of 1 operations outside"}
    said = [j for j, text in printed.items() if text in out]
    assert said == [row.judgement]
    _readings(monkeypatch, [row])
    assert check_timer("cpu", 0.1, attempts=1).outcome is SELFTEST_READS[row.judgement]


@pytest.fixture
def fakes(monkeypatch):
    """Install fake kernel packages with ``fakes(modules)``; import results forgotten after."""
    yield lambda modules: install(monkeypatch, modules)
    optional._import.cache_clear()


def test_strict_fails_an_installed_kernel_whose_extension_did_not_build(fakes):
    """mamba-ssm installed without its CUDA extension: "not run" by default, a failure
    under --strict (as on CUDA). Not-installed fla stays "not run" either way."""
    fakes(make_mamba("2.2.4", built=False, calls=Calls()))
    plain, strict = check_kernels("cpu"), check_kernels("cpu", strict=True)
    assert plain.outcome is Outcome.NOT_RUN and exit_code([plain]) == 0
    assert strict.outcome is Outcome.FAIL and exit_code([strict]) == 1
    for check in (plain, strict):
        assert check.brief == ("0 of 3 run; installed, not run: mamba-ssm; "
                               "not installed: fla-linear-attn, fla-delta-rule")
    assert [r["outcome"] for r in strict.data["rows"]] == ["fail", "not run", "not run"]
    assert "| mamba-ssm | - | float32 | - | 0.0001 | fail: " in "\n".join(strict.lines)


def test_not_installed_kernels_are_not_run_even_under_strict():
    check = check_kernels("cpu", strict=True)
    assert check.outcome is Outcome.NOT_RUN and exit_code([check]) == 0


@pytest.mark.slow
def test_kernels_pass_only_when_every_kernel_ran(fakes):
    calls = Calls()
    fakes(make_mamba("2.2.4", built=True, calls=calls) | make_fla("0.6.0", calls))
    check = check_kernels("cpu", strict=True)
    assert check.outcome is Outcome.PASS and check.brief == "3 of 3 run"
    assert set(calls.counts) == {"selective_scan_cuda.fwd", "chunk_linear_attn",
                                 "chunk_delta_rule"}


def test_verdict_counts_each_outcome_and_names_every_stage():
    checks = [Check("contract", Outcome.PASS, "13/13", "13 of 13 adapters", 2.0),
              Check("kernels", Outcome.NOT_RUN, "", "0 of 3 run; not on cuda", 1.0),
              Check("timer", Outcome.FAIL, "", "4 of 5 agree; outside: add", 5.0)]
    assert verdict(checks, "cuda") == (
        "selftest FAIL on cuda in 8 s (1 pass, 1 not run, 1 fail): contract: pass (13 of 13 "
        "adapters); kernels: not run (0 of 3 run; not on cuda); timer: fail (4 of 5 agree; "
        "outside: add)")
    assert verdict(checks[:2], "cpu").startswith(
        "selftest PASS on cpu in 3 s (1 pass, 1 not run, 0 fail): ")


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("outcome, code", [(Outcome.PASS, 0), (Outcome.NOT_RUN, 0),
                                           (Outcome.FAIL, 1)])
def test_cli_exit_code_follows_the_outcomes_and_passes_strict(tmp_path, capsys, monkeypatch,
                                                              strict, outcome, code):
    seen = []

    def stages(device, out, config, log=print):
        seen.append(config)
        return [Check("kernels", outcome, "", "3 of 3 run")]

    monkeypatch.setattr("harness.selftest.run_selftest", stages)
    args = ["selftest", "--device", "cpu", "--out", str(tmp_path / "x")]
    assert cli_main(args + ["--strict"] * strict) == code
    assert seen[0].strict is strict
    assert f"kernels: {outcome.value} (3 of 3 run)" in capsys.readouterr().out


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
