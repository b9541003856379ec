"""Every ok timed record carries the analytic FLOPs and bytes of its timed call
(``analytic_flops``, ``analytic_bytes``), from the workload's formula, whether or not the
run counts FLOPs; a plugin without a formula leaves them None, never 0; records and
rounds stored before the fields read as None."""

from __future__ import annotations

import json

import pytest

import architectures
from harness.cli import main as cli_main
from harness.run.plugins import load_plugin
from harness.run.rounds import Pool, pooled_fields
from harness.run.settings import RunSettings
from harness.run.worker import run_cell
from harness.store.records import Cell, Record
from harness.store.rundir import RunDir
from tests.helpers import PLUGIN, record
from workloads.cost import SEQUENCE, mse_loss, training_cost

FAST = RunSettings(budget_s=0.05, rounds=1, count_flops=False)


def test_the_worker_stores_the_formulas_cost_on_a_real_cell():
    """lmu-fft tiny, train, n 32, batch 2: the record's figures are the training step's
    cost from the adapter's formula, with FLOP counting off (nothing is dispatched)."""
    cell = Cell.make(arch="lmu-fft", workload="train", seq_len=32, batch=2, preset="tiny")
    rec = run_cell(cell, FAST)
    assert rec.status == "ok", rec.message
    assert rec.flops is None  # count_flops = false: no dispatch pass
    model = architectures.build("lmu-fft", preset="tiny")
    want = training_cost(model, SEQUENCE, batch=2, n=32, itemsize=4,
                         loss=mse_loss(2 * 32 * 10, 4))
    assert rec.analytic_flops == pytest.approx(want.flops, rel=1e-12)
    assert rec.analytic_bytes == pytest.approx(want.bytes, rel=1e-12)
    stored = json.loads(rec.to_json())
    assert Record.problem(stored) is None and Record.from_dict(stored) == rec


def test_a_counted_cell_keeps_both_figures():
    cell = Cell.make(arch="lstm", workload="forward", seq_len=16, batch=2, preset="tiny")
    rec = run_cell(cell, RunSettings(budget_s=0.05, rounds=1, count_flops=True))
    assert rec.status == "ok", rec.message
    # FlopCounterMode sees the head only (nn.LSTM's recurrence is a fused kernel); the
    # formula counts the recurrence too
    assert rec.flops == 2 * 32 * 47 * 10
    assert rec.analytic_flops > 10 * rec.flops


def test_a_plugin_without_a_formula_records_none():
    load_plugin(PLUGIN)  # test-ok: a linear map, no cost declared
    cell = Cell.make(arch="test-ok", workload="forward", seq_len=8, batch=1, preset="tiny")
    rec = run_cell(cell, FAST)
    assert rec.status == "ok" and rec.analytic_flops is None and rec.analytic_bytes is None


def test_old_records_and_rounds_read_as_unknown():
    old = {k: v for k, v in record("lmu", 8).__dict__.items()
           if k not in ("analytic_flops", "analytic_bytes")}
    assert Record.problem(old) is None
    rec = Record.from_dict(old)
    assert rec.analytic_flops is None and rec.analytic_bytes is None
    pool = Pool()
    pool.add(0, [1.0] * 5)
    fields = pooled_fields({"tokens": 8}, pool, noise_threshold=0.1, threads=1, warmup_s=0.0,
                           stop_reason="budget", calls_per_sample=1)
    assert fields["analytic_flops"] is None and fields["analytic_bytes"] is None
    fields = pooled_fields({"tokens": 8, "analytic_flops": 3.0, "analytic_bytes": 4.0}, pool,
                           noise_threshold=0.1, threads=1, warmup_s=0.0,
                           stop_reason="budget", calls_per_sample=1)
    assert (fields["analytic_flops"], fields["analytic_bytes"]) == (3.0, 4.0)
    bad = {**record("lmu", 8).__dict__, "analytic_flops": -1.0}
    assert "analytic_flops" in Record.problem(bad)


@pytest.mark.slow  # a sweep through the runner: cell processes, rounds, records.jsonl
def test_a_sweep_stores_them_through_the_runner(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli_main(["run", "--plugin", PLUGIN, "--suite", "smoke", "--arch", "test-ok,s4d",
                     "--workload", "forward", "--seq-len", "8", "--batch", "1",
                     "--budget-s", "0.05", "--rounds", "2", "--baseline", "test-ok",
                     "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    recs = {r.arch: r for r in RunDir(out).records()}
    assert recs["test-ok"].status == "ok" and recs["test-ok"].analytic_flops is None
    s4d = recs["s4d"]
    assert s4d.status == "ok", s4d.message
    want = architectures.build("s4d", preset=s4d.preset).cost(SEQUENCE, batch=1, n=8,
                                                               itemsize=4)
    assert (s4d.analytic_flops, s4d.analytic_bytes) == (want.flops, want.bytes)
