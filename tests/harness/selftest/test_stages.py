"""The environment, contract and sweep stages of ``selftest`` one by one, in this process:
what each writes, when it passes and what a failure says (the whole command on CPU, with
its real sweep: tests/harness/selftest/test_selftest.py, marked slow)."""

from __future__ import annotations

import json
import types

import pytest
import torch

from harness.run import sweep
from harness.run.plugins import load_plugins
from harness.selftest.config import SUITE, SelftestConfig
from harness.selftest.contract import ContractResult, check_contract
from harness.selftest.environment import check_environment
from harness.selftest.sweep import check_sweep
from harness.selftest.verdict import Outcome
from harness.store.records import Cell, Record
from tests.helpers import PLUGIN


def test_the_environment_stage_writes_env_json_and_computes_on_the_device(monkeypatch,
                                                                         tmp_path):
    monkeypatch.setattr("harness.store.env._git", lambda *args: None)  # no git: no child
    check = check_environment("cpu", tmp_path)
    assert check.name == "environment" and check.outcome is Outcome.PASS and check.brief == ""
    env = json.loads((tmp_path / "env.json").read_text())
    assert env == json.loads(json.dumps(check.data, default=str))
    assert env["device"] == "cpu" and env["float32_policy"] == "strict"
    assert set(env["kernels"]) == {"mamba-ssm", "fla-linear-attn", "fla-delta-rule"}
    assert check.summary == f"torch {torch.__version__}, {env['device_name']}, float32 strict"
    assert "- git_dirty: None" in check.lines and "- float32 policy: strict" in check.lines


def test_the_contract_stage_passes_keeping_adapters_and_names_a_broken_one():
    load_plugins([PLUGIN])  # test-output returns None instead of its outputs
    check = check_contract("cpu", ("lstm", "test-output"))
    assert check.outcome is Outcome.FAIL
    assert check.brief.startswith("1 of 2 adapters keep the contract; failed: test-output "
                                  "(raised AttributeError")
    rows = {line.split("|")[1].strip(): line for line in check.lines[2:]}
    assert rows["lstm"].endswith("| ok |") and "raised AttributeError" in rows["test-output"]
    kept, broken = (ContractResult(**r) for r in check.data["results"])
    assert kept.arch == "lstm" and kept.passed and kept.causal_leak < 1e-10
    assert kept.last_err < 1e-10 and kept.step_err < 1e-9 and kept.f32_err < 1e-3
    assert broken.arch == "test-output" and not broken.passed and broken.causal_leak is None


CELLS = [Cell.make(arch=a, workload="forward", seq_len=8, batch=1) for a in ("lmu", "lstm", "s4d")]


@pytest.fixture
def fake_sweep(monkeypatch):
    """``sweep.plan`` and ``sweep.execute`` of the stage replaced: the plan is ``CELLS``,
    the run stores the records the test gives (and tells each as a real run does)."""
    seen: dict = {}

    def plan(suite, **kw):
        seen.update(suite=suite, **kw)
        return types.SimpleNamespace(cells=CELLS)

    def execute(p, on_record):
        for r in seen["records"]:
            on_record(r)
        return seen["records"]

    monkeypatch.setattr(sweep, "plan", plan)
    monkeypatch.setattr(sweep, "execute", execute)
    return seen


def test_the_sweep_stage_passes_when_every_cell_is_ok(fake_sweep, tmp_path):
    fake_sweep["records"] = [Record.for_cell(c, "ok", time_median_s=1e-3) for c in CELLS]
    log: list[str] = []
    config = SelftestConfig(archs=("lmu", "lstm", "s4d"), seq_len=(8,))
    check = check_sweep("cpu", tmp_path / "sweep", config, log.append)
    assert fake_sweep["suite"] == SUITE and fake_sweep["device"] == "cpu"
    assert fake_sweep["arch"] == ["lmu", "lstm", "s4d"] and fake_sweep["seq_len"] == [8]
    assert check.outcome is Outcome.PASS and check.brief == "3 of 3 cells ok"
    assert check.data == {"cells": 3, "ok": 3}
    assert [line.split() for line in log][0] == ["ok", "lmu", "forward", "n=8", "1.00", "ms"]


def test_the_sweep_stage_names_a_cell_not_ok_and_counts_one_that_never_ran(fake_sweep,
                                                                          tmp_path):
    fake_sweep["records"] = [Record.for_cell(CELLS[0], "ok", time_median_s=1e-3),
                             Record.for_cell(CELLS[1], "oom", message="over the CPU cap")]
    check = check_sweep("cpu", tmp_path / "sweep", SelftestConfig(), lambda line: None)
    assert fake_sweep["arch"] is None and fake_sweep["seq_len"] is None  # the suite's own
    assert check.outcome is Outcome.FAIL
    assert check.brief == "1 of 3 cells ok; not ok: lstm/forward/n8 oom; 1 never ran"
    assert "- lstm forward n=8: oom: over the CPU cap" in check.lines
