"""The language-modelling comparison end to end: seeds and sweeps in suites, log-spaced
evaluations, the roles of ``[report.lm]``, the report's section and the published claims,
and the suites' size matching. Curves are synthetic with known answers: the transformer's
curve is the LMU's shifted 10x in tokens, the LSTM's is shifted again so that the gap
ratio is known, and the losses fall as a power law in parameters with exponent 0.3."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import architectures
from harness.errors import UsageError
from harness.report import build_report
from harness.report.lm_paper import analyse, lm_runs, parse_roles
from harness.report.published import load as load_published
from harness.report.published import parse as parse_published
from harness.report.tasks import split_tasks
from harness.run.eta import PROBE_STEPS, estimate
from harness.run.settings import RunSettings
from harness.run.suites import load_suite
from harness.store.load import load_runs
from harness.store.records import Cell, Record
from harness.store.rundir import RunDir
from workloads.tasks.base import TrainOptions
from workloads.tasks.train_loop import log_spaced_steps

COLUMNS = ["step", "wall_s", "tokens_seen", "metric", "test_loss", "train_loss"]
ROLES = {
    "subject": {"label": "LMU", "arch": "lmu-attention", "match": {"attention": False}},
    "improved": {"label": "LMU + attention", "arch": "lmu-attention",
                 "match": {"attention": True}},
    "reference": {"label": "transformer", "arch": "transformer"},
    "baseline": {"label": "LSTM", "arch": "lstm"},
}
TOKENS = np.geomspace(1e3, 1e6, 16)  # every curve's evaluations


def loss(tokens, params, seed=0):
    """A learning curve whose level at the end falls as params**-0.3."""
    return 2.0 * (params / 1e4) ** -0.3 * (1 + 5 * (tokens / 1e3) ** -0.5) + 0.01 * seed


def record(arch: str, params: int, seed: int, curve, **overrides) -> Record:
    cell = Cell.make(arch=arch, workload="textlm", seq_len=128, batch=16,
                     overrides={"seed": seed, "lr": 1e-2, **overrides})
    rows = [[i + 1, 0.01 * t / 1e3, float(t), float(v), None, None]
            for i, (t, v) in enumerate(zip(TOKENS, curve, strict=True))]
    metrics = {"task": "textlm", "metric": "bits_per_byte", "higher_is_better": False,
               "target": 0.0, "final": rows[-1][3], "best": min(r[3] for r in rows),
               "curve_columns": COLUMNS, "curve": rows, "steps": len(rows),
               "tokens_seen": rows[-1][2], "train_s": rows[-1][1], "eval_s": 0.1,
               "stopped_by": "max_steps", "params": params + 8192, "model_params": params}
    return Record.for_cell(cell, "ok", params=params + 8192, time_median_s=0.01,
                           metrics=metrics)


def paper_run(root: Path, *, seeds=(0, 1, 2), sizes=(5_000, 50_000, 500_000),
              shift=10.0, lstm_shift=None) -> RunDir:
    """Four roles at every size and seed. The transformer needs ``shift`` times the LMU's
    tokens for any loss; the LSTM's curve sits as far above the transformer's as the
    transformer's above the LMU's (gap ratio 1) unless ``lstm_shift`` is given."""
    run = RunDir(root).ensure()
    recs = []
    for p in sizes:
        for s in seeds:
            lmu = loss(TOKENS, p, s)
            tf = loss(TOKENS / shift, p, s)
            lstm = 2 * tf - lmu if lstm_shift is None else loss(TOKENS / lstm_shift, p, s)
            d = {"d_model": p // 100}  # a configuration per size: a cell per size
            recs += [record("lmu-attention", p, s, lmu, attention=False, **d),
                     record("lmu-attention", p + 7, s, lmu - 0.05, attention=True, **d),
                     record("transformer", p + 3, s, tf, **d),
                     record("lstm", p - 3, s, lstm, hidden_size=p // 100)]
    for r in recs:
        run.append(r)
    cells = [Cell.make(arch=r.arch, workload=r.workload, seq_len=r.seq_len, batch=r.batch,
                       overrides=dict(r.overrides)) for r in recs]
    run.write_plan(cells, {"suite": "lm-test", "baseline": "lstm", "report": {
        "paper_archs": ["lmu-attention", "transformer", "lstm"],
        "paper_workloads": ["textlm"], "lm": ROLES}})
    return run


def findings(run: RunDir):
    roles = parse_roles(ROLES, "test")
    runs = lm_runs(split_tasks(load_runs([run.root]))[1], roles)
    return runs, analyse(runs, roles)


# ---------------------------------------------------------------- the analysis


def test_the_roles_pick_their_runs_and_pair_sizes_by_rank(tmp_path):
    runs, (f,) = findings(paper_run(tmp_path / "r"))
    assert len(runs) == 36
    assert [s.params for s in f.sizes] == [
        {"subject": p, "improved": p + 7, "reference": p + 3, "baseline": p - 3}
        for p in (5_000, 50_000, 500_000)]
    assert all(s.seeds == dict.fromkeys(ROLES, 3) for s in f.sizes)
    assert all(s.budget == pytest.approx(1e6) for s in f.sizes)


def test_a_curve_shifted_ten_times_in_tokens_reads_ten_times_fewer_tokens(tmp_path):
    _, (f,) = findings(paper_run(tmp_path / "r"))
    for s in f.sizes:
        assert s.fewer.value == pytest.approx(10, rel=0.02)  # interpolation between evals
        assert s.fewer.bound == ""
        assert s.fewer.method == "range" and s.fewer.n_seeds == 3
        # the reading at equal budgets: the transformer never gets there
        assert s.multiplier.bound == "more"
        assert s.multiplier.value == pytest.approx(1.0)


def test_gap_ratio_and_attention_gain_come_out_as_built(tmp_path):
    _, (f,) = findings(paper_run(tmp_path / "r"))
    for s in f.sizes:
        assert s.gap.ratio == pytest.approx(1.0)
        assert s.gap.upper_gap.value > 0
        assert s.gain.value == pytest.approx(0.05)
        assert s.gain.paired and s.gain.excludes_zero()


def test_a_gap_whose_interval_includes_zero_gives_no_ratio(tmp_path):
    _, (f,) = findings(paper_run(tmp_path / "r", lstm_shift=10.0))  # LSTM = transformer
    assert all(s.gap.ratio is None for s in f.sizes)
    assert "undefined" in f.sizes[0].gap.text()


def test_a_baseline_that_beats_the_reference_is_said_to_reverse_the_ratio(tmp_path):
    _, (f,) = findings(paper_run(tmp_path / "r", lstm_shift=2.0))  # LSTM between the two
    gap = f.sizes[0].gap
    assert gap.lower_gap.value < 0 and gap.ratio < 0
    assert "LSTM beat transformer here, so the ratio's sign is reversed" in gap.text()


def test_the_power_law_in_parameters_is_fitted_back(tmp_path):
    _, (f,) = findings(paper_run(tmp_path / "r"))
    fit = f.scaling["subject"]
    assert fit.low <= 0.3 <= fit.high
    assert fit.alpha == pytest.approx(0.3, abs=0.01)


def test_two_sizes_are_too_few_for_a_fit(tmp_path):
    _, (f,) = findings(paper_run(tmp_path / "r", sizes=(5_000, 50_000)))
    assert f.scaling["subject"] == "2 size(s): a fit needs 3"


def test_a_role_that_selects_two_runs_per_seed_is_refused(tmp_path):
    run = paper_run(tmp_path / "r", sizes=(5_000,), seeds=(0,))
    run.append(record("transformer", 5_003, 0, loss(TOKENS, 5_003), lr=3e-2))
    with pytest.raises(UsageError, match="role 'reference' selects 2 runs"):
        findings(run)


@pytest.mark.parametrize(("table", "message"), [
    ({"subject": ROLES["subject"]}, "needs the role"),
    ({**ROLES, "judge": ROLES["baseline"]}, "unknown \\[report.lm\\] role"),
    ({**ROLES, "subject": {"label": "LMU"}}, "needs a non-empty label and arch"),
    ({**ROLES, "baseline": {**ROLES["baseline"], "label": "LMU"}}, "labels must differ"),
    ({**ROLES, "baseline": {**ROLES["baseline"], "match": 3}}, "match must be a table"),
])
def test_bad_roles_are_one_line_naming_them(table, message):
    with pytest.raises(UsageError, match=message):
        parse_roles(table, "suite x")


# ---------------------------------------------------------------- the report


def test_the_report_prints_the_claims_beside_the_published_ones(tmp_path):
    run = paper_run(tmp_path / "r")
    index = build_report([run.root], tmp_path / "rep", widths=("double",), formats=("png",),
                         n_resamples=200)
    text = index.read_text()
    assert "## Language modelling" in text
    assert "LMU reached transformer's final loss with" in text
    assert "gap ratio 1 [" in text
    for fig in ("lmu-lm-token-multiplier", "lmu-lm-gap-ratio", "lmu-lm-attention-gain"):
        row = next(line for line in text.splitlines() if line.startswith(f"| `{fig}`")
                   or line.startswith(f"| {fig}"))
        assert "not in these runs" not in row
        assert "subword tokens" in row  # the conditions that differ: bytes vs tokens
    figures = tmp_path / "rep" / "figures"
    assert (figures / "lm_cpu_curves_double.png").stat().st_size > 10_000
    assert (figures / "lm_cpu_scaling_double.png").stat().st_size > 10_000
    assert (tmp_path / "rep" / "tables" / "lm_cpu.csv").read_text().count("\n") == 4
    paper = build_report([run.root], tmp_path / "paper", preset="paper", widths=("double",),
                         formats=("png",), n_resamples=200).read_text()
    assert "## Language modelling" in paper


def test_lm_claims_in_published_toml_need_a_workload_and_a_value_or_direction():
    figs = {f.id: f for f in load_published()}
    assert figs["lmu-lm-token-multiplier"].value == 10.0
    assert figs["lmu-lm-gap-ratio"].shown() == "about 1"
    assert figs["lmu-lm-attention-gain"].shown().startswith("> 0")
    entry = {"id": "x", "quantity": "loss-gain", "claim": "c", "source": "s", "seen_in": "s",
             "conditions": "c", "hardware": "h", "measure": {"workload": "textlm"}}
    with pytest.raises(ValueError, match="a 'value' or a 'qualifier'"):
        parse_published({"figure": [entry]})
    with pytest.raises(ValueError, match="needs 'workload'"):
        parse_published({"figure": [{**entry, "qualifier": "> 0", "measure": {}}]})


# ---------------------------------------------------------------- suites, seeds, sweeps


def write_suite(path: Path, grid: str, report: str = "") -> Path:
    path.write_text(f'name = "t"\n{report}\n[cpu]\nworkload = "textlm"\nseq_len = 32\n'
                    f'batch = 2\npreset = "tiny"\n\n[[cpu.grid]]\n{grid}\n')
    return path


def test_a_sweep_makes_one_cell_per_value_with_the_value_in_its_key(tmp_path):
    suite = load_suite(str(write_suite(
        tmp_path / "s.toml", 'arch = "lstm"\nset = { lr = 1e-2 }\nsweep = { seed = [0, 1] }')))
    cells = suite.cells("cpu")
    assert [dict(c.overrides) for c in cells] == [{"lr": 1e-2, "seed": 0},
                                                   {"lr": 1e-2, "seed": 1}]
    assert len({c.cell_id for c in cells}) == 2
    plain = load_suite(str(write_suite(tmp_path / "p.toml", 'arch = "lstm"\nset = { lr = 1e-2 }')))
    (before,) = plain.cells("cpu")  # no seed given: the cell's key (and id) is as it was
    assert dict(before.overrides) == {"lr": 1e-2}
    assert before.cell_id not in {c.cell_id for c in cells}
    # --set wins over a sweep
    (only,) = {c.cell_id: c for c in suite.cells("cpu", overrides={"seed": 5})}.values()
    assert dict(only.overrides)["seed"] == 5


@pytest.mark.parametrize(("grid", "message"), [
    ('arch = "lstm"\nsweep = { lr = 3 }', "sweep must be a table of key = \\[values\\]"),
    ('arch = "lstm"\nsweep = { seed = [] }', "sweep must be a table"),
    ('arch = "lstm"\nsweep = { order = [1, 2] }', "sweep key\\(s\\) \\['order'\\] do not apply"),
])
def test_a_bad_sweep_is_one_line(tmp_path, grid, message):
    with pytest.raises(UsageError, match=message):
        load_suite(str(write_suite(tmp_path / "s.toml", grid))).cells("cpu")


def test_a_suite_with_bad_lm_roles_is_refused_before_any_cell(tmp_path):
    report = '[report.lm]\nsubject = { label = "a", arch = "nope" }\n' \
             'reference = { label = "b", arch = "lstm" }\n'
    with pytest.raises(UsageError, match="unknown architecture 'nope'"):
        load_suite(str(write_suite(tmp_path / "s.toml", 'arch = "lstm"', report)))


def test_the_cell_seed_is_its_own_else_the_runs():
    assert TrainOptions().cell_seed(7) == 7
    assert TrainOptions(seed=3).cell_seed(7) == 3
    with pytest.raises(ValueError, match="seed must be >= 0"):
        TrainOptions(seed=-2).validate("t")
    with pytest.raises(ValueError, match="eval_log_points must be >= 0"):
        TrainOptions(eval_log_points=-1).validate("t")


def test_log_spaced_steps_cover_every_decade_and_end_at_the_last_step():
    steps = sorted(log_spaced_steps(300, 12))
    assert steps[0] == 1 and steps[-1] == 300
    assert len(steps) <= 12 and len(steps) >= 10  # small steps merge: they are whole
    ratios = np.diff(np.log(steps[3:]))
    assert np.allclose(ratios, ratios.mean(), rtol=0.2)  # even on a log scale
    assert log_spaced_steps(300, 0) == set()


# ---------------------------------------------------------------- the suites' sizes


def adapter_params(arch: str, config: dict) -> int:
    model = architectures.build(arch, preset="tiny", input_size=32, output_size=256, **config)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("suite", "nominal", "device"), [
    ("lm-smoke", (5_000, 50_000, 500_000), "cpu"),
    ("lm-paper", (25_000, 250_000, 2_500_000), "cuda"),
])
def test_each_role_is_matched_within_five_percent_at_every_size(suite, nominal, device):
    s = load_suite(suite)
    roles = parse_roles(s.report["lm"], suite)
    cells = s.cells(device)
    for name, role in roles.items():
        mine = [c for c in cells if role.selects(c.arch, dict(c.overrides))]
        seeds = {dict(c.overrides)["seed"] for c in mine}
        assert len(seeds) >= 3, (name, seeds)
        configs = {tuple((k, v) for k, v in c.overrides if k != "seed"): c for c in mine}
        counts = sorted(
            adapter_params(c.arch, {k: v for k, v in c.overrides if k in
                                    architectures.spec(c.arch).config_keys})
            for c in configs.values())
        assert len(counts) == 3, (name, counts)
        for got, want in zip(counts, nominal, strict=True):
            assert abs(got / want - 1) <= 0.05, (suite, name, got, want)
    # one token budget per size for every role: the same steps, batch and length
    budgets = {(dict(c.overrides)["max_steps"], c.batch, c.seq_len) for c in cells}
    assert len(budgets) == 1, budgets


def test_lm_lr_sweeps_every_configuration_lm_smoke_trains():
    lr = load_suite("lm-lr")
    assert all(g["sweep"]["lr"] == [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
               for g in lr.sections["cpu"]["grid"])
    smoke = load_suite("lm-smoke")

    def model(c: Cell) -> tuple:  # what was tuned: all but the seed, rate and time guard
        return (c.arch, tuple((k, v) for k, v in c.overrides
                              if k not in ("seed", "lr", "max_wall_s")))

    rates: dict[tuple, set] = {}
    for c in smoke.cells("cpu"):
        rates.setdefault(model(c), set()).add(dict(c.overrides)["lr"])
    assert {model(c) for c in lr.cells("cpu")} == set(rates)
    assert all(len(v) == 1 for v in rates.values()), rates  # one rate per model and size


# ---------------------------------------------------------------- the ETA


@pytest.mark.slow  # the probes run in a child process
def test_the_eta_probes_each_model_once_and_counts_every_cell():
    cells = [Cell.make(arch="lstm", workload="textlm", seq_len=16, batch=2, preset="tiny",
                       overrides={"seed": s, "max_steps": 50, "eval_every": 10**6,
                                  "eval_every_s": 1e6}) for s in (0, 1, 2)]
    timed = Cell.make(arch="lstm", workload="forward", seq_len=16, batch=2, preset="tiny")
    settings = RunSettings(budget_s=1.0, timeout_s=30.0)
    eta = estimate([*cells, timed], settings)
    assert (eta.task_cells, eta.timed_cells, eta.probed) == (3, 1, 1)
    assert eta.upper_s == 4 * 30.0
    assert 3 * 4.0 + 1.0 + 4.0 < eta.seconds <= eta.upper_s
    assert f"median of {PROBE_STEPS - 1} probe steps of each of 1 model(s)" in eta.text()
    half = estimate([*cells, timed], settings, workers=2)  # probes are timed afresh
    assert half.upper_s == eta.upper_s / 2 and math.isfinite(half.seconds)


# ---------------------------------------------------------------- a seeded task cell


def test_a_cells_seed_fixes_its_model_and_data_and_its_own_parameters_are_stored():
    from harness.run.worker import run_cell

    def run(seed: int, run_seed: int = 0) -> Record:
        cell = Cell.make(arch="lstm", workload="textlm", seq_len=16, batch=2, preset="tiny",
                         overrides={"hidden_size": 5, "seed": seed, "max_steps": 6,
                                    "eval_log_points": 4, "eval_every": 10**6,
                                    "eval_every_s": 1e6})
        return run_cell(cell, RunSettings(seed=run_seed, count_flops=False))

    a, b, c = run(1), run(1, run_seed=9), run(2)
    assert a.status == b.status == c.status == "ok", (a.message, c.message)
    curve = [r[3] for r in a.metrics["curve"]]
    assert curve == [r[3] for r in b.metrics["curve"]]  # the cell's seed, not the run's
    assert curve != [r[3] for r in c.metrics["curve"]]
    assert [r[0] for r in a.metrics["curve"]] == [0, *sorted(log_spaced_steps(6, 4))]
    assert a.metrics["model_params"] == adapter_params("lstm", {"hidden_size": 5})
    assert a.metrics["params"] > a.metrics["model_params"]  # plus the task's byte embedding


@pytest.mark.slow  # the probe runs in a child process
def test_the_run_command_says_why_it_gives_no_estimate(tmp_path):
    from argparse import Namespace
    from types import SimpleNamespace

    from harness.cli.run import _eta

    cell = Cell.make(arch="lstm", workload="textlm", seq_len=16, batch=2, preset="tiny",
                     overrides={"max_steps": 3, "hidden_size": 0})  # fails when built
    plan = SimpleNamespace(out=tmp_path / "run", cells=[cell], settings=RunSettings())
    args = Namespace(retry_failed=False, launcher="local", devices=None, workers=1)
    assert _eta(plan, Namespace(**{**vars(args), "launcher": "slurm"})).startswith(
        "not estimated: the slurm launcher runs cells on other machines")
    assert _eta(plan, args).startswith("not estimated: ")  # the probe's error, one line
    RunDir(plan.out).ensure().append(Record.for_cell(cell, "ok"))
    assert _eta(plan, args) == "nothing to run: every cell is stored"
