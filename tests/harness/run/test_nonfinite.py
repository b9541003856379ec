"""Non-finite results (issue 16, cases 1 and 2): NaN outputs or loss are checked once
before timing and recorded ``nonfinite``; a task whose train or test loss goes
non-finite stops as diverged. Neither is ever shown as a speedup."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from harness.cli import main as cli_main
from harness.run.checks import NonFinite, check_finite
from harness.store.rundir import RunDir
from tests.helpers import PLUGIN


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_check_finite_finds_nan_and_inf_anywhere(bad):
    ok = torch.ones(3)
    check_finite(ok)
    check_finite((ok, {"a": [ok, torch.arange(3)]}))  # integer tensors are skipped
    broken = torch.ones(2, 3)
    broken[1, 2] = bad
    for result in (broken, (ok, broken), {"y": [ok, broken]}):
        with pytest.raises(NonFinite, match="1 of 6"):
            check_finite(result)
    with pytest.raises(NonFinite, match="loss"):
        check_finite(torch.tensor(bad))


@pytest.mark.slow
@pytest.mark.parametrize("workload", ["forward", "train"])
def test_nan_outputs_are_nonfinite_and_never_a_speedup(tmp_path, capsys, workload):
    out = tmp_path / "run"
    code = cli_main(["run", "--plugin", PLUGIN, "--suite", "smoke", "--arch", "test-ok,test-nan",
                     "--workload", workload, "--seq-len", "8", "--batch", "1", "--set",
                     "fail_at=1", "--budget-s", "0.02", "--baseline", "test-ok",
                     "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    recs = {r.arch: r for r in RunDir(out).records()}
    assert recs["test-ok"].status == "ok"
    nan = recs["test-nan"]
    assert nan.status == "nonfinite", nan.message
    assert "NaN or infinity" in nan.message and nan.time_median_s is None and not nan.samples
    assert "non-finite" in printed.out and "×" not in printed.out  # the summary's speedups

    from harness.report.tables import speedup_table
    from harness.store.load import load_run

    table = speedup_table(load_run(out), "test-ok", n_resamples=50)
    row = table[table["arch"] == "test-nan"].iloc[0]
    assert row["status"] == "nonfinite" and not math.isfinite(row.get("speedup", math.nan))


@pytest.mark.slow
def test_compare_counts_nonfinite_as_a_new_failure(tmp_path, capsys):
    base = ["run", "--plugin", PLUGIN, "--suite", "smoke", "--arch", "test-nan", "--workload",
            "forward", "--seq-len", "8", "--batch", "1", "--budget-s", "0.02"]
    assert cli_main([*base, "--out", str(tmp_path / "a")]) == 0
    assert cli_main([*base, "--set", "fail_at=1", "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    # different --set: different cells; compare the same cell id by rewriting run b's ids
    a = RunDir(tmp_path / "a").records()[0]
    b = RunDir(tmp_path / "b").records()[0]
    assert a.status == "ok" and b.status == "nonfinite"
    from harness.report.compare import compare_runs
    from harness.store.load import load_run

    da, db = load_run(tmp_path / "a"), load_run(tmp_path / "b")
    db["cell_id"] = da["cell_id"]
    res = compare_runs(da, db)
    assert list(res["verdict"]) == ["new failure"] and math.isnan(res["ratio"].iloc[0])


class _Task:
    """A tiny regression task whose test loss turns NaN from ``nan_from`` evaluations on,
    while the train loss stays finite (the case of a model blowing up on held-out data)."""

    name, metric, higher_is_better, last_position = "fake", "mse", False, False

    def __init__(self, nan_from: int) -> None:
        self.evals, self.nan_from = 0, nan_from

    def outputs(self, net, x):
        return net(x)

    def loss(self, out, y):
        return ((out - y) ** 2).mean()

    def reduce(self, out):
        return out

    def score(self, out, y):
        self.evals += 1
        loss = float("nan") if self.evals > self.nan_from else float(self.loss(out, y))
        return loss, loss

    def reached(self, value, target):
        return value <= target


@pytest.mark.parametrize("nan_from", [0, 2])
def test_a_nonfinite_test_loss_stops_training_as_diverged(nan_from):
    from workloads.tasks.base import TaskData, TrainOptions
    from workloads.tasks.train_loop import train

    g = torch.Generator().manual_seed(0)
    data = TaskData(sample=lambda b, gen: (torch.randn(b, 4, 1, generator=gen),
                                           torch.zeros(b, 4, 1)),
                    test_x=torch.randn(8, 4, 1, generator=g), test_y=torch.zeros(8, 4, 1))
    opts = TrainOptions(lr=1e-3, max_steps=50, eval_every=5, eval_batch=8, target=-1.0)
    res = train(nn.Linear(1, 1), _Task(nan_from), data, opts, batch=4, seq_len=4,
                device=torch.device("cpu"), dtype=torch.float32, seed=0)
    assert res.stopped_by == "diverged"
    assert res.steps == 5 * nan_from  # stopped at the first non-finite evaluation
    assert res.curve[-1].test_loss is None


def test_diverging_task_cell_is_recorded_nonfinite_with_the_step():
    from harness.run.settings import RunSettings
    from harness.run.worker import run_cell
    from harness.store.records import Cell

    cell = Cell.make(arch="lmu-fft", workload="psdigits", seq_len=16, batch=16, preset="tiny",
                     overrides={"lr": 1e6, "max_steps": 60, "eval_every": 5, "eval_batch": 64})
    rec = run_cell(cell, RunSettings(count_flops=False))
    assert rec.status == "nonfinite", rec.message
    assert f"diverged at step {rec.metrics['steps']}" in rec.message
    assert rec.metrics["stopped_by"] == "diverged" and rec.metrics["steps"] < 60


def _run(tmp_path, capsys, arch: str, workload: str = "forward", *sets: str):
    out = tmp_path / f"run-{arch}-{workload}-{'-'.join(sets)}"
    args = ["run", "--plugin", PLUGIN, "--suite", "smoke", "--arch", f"test-ok,{arch}",
            "--workload", workload, "--seq-len", "8", "--batch", "1", "--budget-s", "0.05",
            "--rounds", "2", "--baseline", "test-ok", "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    code = cli_main(args)
    printed = capsys.readouterr()
    assert code == 0, printed.err
    recs = {r.arch: r for r in RunDir(out).records()}
    assert recs["test-ok"].status == "ok"
    return recs[arch], printed.out


@pytest.mark.slow
@pytest.mark.parametrize("workload", ["forward", "train"])
def test_outputs_turning_nan_after_the_first_call_are_nonfinite(tmp_path, capsys, workload):
    rec, printed = _run(tmp_path, capsys, "test-nan-later", workload, "fail_at=3")
    assert rec.status == "nonfinite" and "from call 3 on" in rec.message, rec.message
    assert rec.kernel_path == "pytorch"  # it ran: which implementation is kept
    assert rec.time_median_s is None and "×" not in printed


@pytest.mark.slow
def test_a_step_that_changes_its_input_in_place_is_an_error(tmp_path, capsys):
    rec, printed = _run(tmp_path, capsys, "test-inplace")
    assert rec.status == "error" and "changed its input in place" in rec.message, rec.message
    assert rec.time_median_s is None and "×" not in printed


@pytest.mark.slow
@pytest.mark.parametrize("output, says", [
    ("none", "returned NoneType"), ("tuple", "returned tuple"),
    ("shape", "shape (1, 1, 10); expected a float32 tensor of shape (1, 8, 10)"),
    ("int64", "returned a int64 tensor")])
def test_an_output_that_breaks_the_contract_is_an_error(tmp_path, capsys, output, says):
    rec, printed = _run(tmp_path, capsys, "test-output", "forward", f"output={output}")
    assert rec.status == "error" and says in rec.message, rec.message
    assert rec.kernel_path == "not run"  # failed before its timed calls: none recorded
    assert rec.time_median_s is None and "×" not in printed


@pytest.mark.slow
def test_float16_training_that_goes_nan_at_step_2_is_nonfinite(tmp_path, capsys):
    """AdamW's eps (1e-8) underflows in float16: the loss is finite on step 1 and NaN
    from step 2 on; it was timed as ok and read as a x3-4 speedup."""
    out = tmp_path / "fp16"
    code = cli_main(["run", "--arch", "lmu-fft,lstm", "--workload", "train,classify",
                     "--dtype", "float16", "--seq-len", "16", "--batch", "1", "--budget-s",
                     "0.2", "--rounds", "1", "--device", "cpu", "--baseline", "lstm",
                     "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    recs = RunDir(out).records()
    assert len(recs) == 4 and {r.status for r in recs} == {"nonfinite"}, [
        (r.arch, r.workload, r.status, r.message) for r in recs]
    assert "×" not in printed.out


def test_call_check_names_the_first_bad_call_and_any_input_change():
    from harness.run.checks import CallCheck, ChangedInput

    x = torch.ones(3)
    outs = iter([torch.ones(2), torch.ones(2), torch.tensor([1.0, math.inf])])
    check = CallCheck(lambda: next(outs), (x,))
    check()
    check.verify()  # finite: nothing
    check()
    check()
    with pytest.raises(NonFinite, match="from call 3 on"):
        check.verify()
    y = torch.ones(3)
    inplace = CallCheck(lambda: y.mul_(2), (y,))
    inplace()
    with pytest.raises(ChangedInput, match="by call 1"):
        inplace.verify()  # the version counter moved
    z = torch.ones(3)
    sneaky = CallCheck(lambda: z.data.mul_(2), (z,))  # .data: no version bump
    sneaky()
    sneaky.verify()
    with pytest.raises(ChangedInput):
        sneaky.compare()  # the round's full comparison sees it
