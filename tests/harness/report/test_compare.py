"""compare: ratios and Mann–Whitney verdicts on seeded synthetic runs, exit codes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.cli import main as cli_main
from harness.report.compare import can_reach_significance, compare_runs, failing, min_pvalue
from harness.store.load import load_run
from harness.store.rundir import RunDir
from tests.helpers import record, write_run

LENS = (256, 1024, 4096)
ARCHS = ("lmu", "lstm", "transformer")


def make_run(
    root,
    *,
    seed: int,
    slow: dict | None = None,
    status: dict | None = None,
    drop=(),
    extra=(),
    k: int = 12,
):
    """A run whose cells draw ``k`` lognormal samples (3% spread) around a fixed law.

    ``slow`` multiplies the times of the given (arch, n) cells; ``status`` replaces their
    status; ``drop`` leaves cells out; ``extra`` adds cells.
    """
    rng = np.random.default_rng(seed)
    records = []
    for arch, n in [(a, n) for a in ARCHS for n in LENS if (a, n) not in drop] + list(extra):
        st = (status or {}).get((arch, n), "ok")
        if st != "ok":
            records.append(record(arch, n, st, batch=2, message="synthetic"))
            continue
        base = 1e-6 * n * (1 + ARCHS.index(arch) if arch in ARCHS else 1)
        samples = base * (slow or {}).get((arch, n), 1.0) * rng.lognormal(0, 0.03, k)
        records.append(record(arch, n, samples=samples, batch=2))
    return write_run(root, records)


def test_same_distribution_passes(tmp_path, capsys):
    a = make_run(tmp_path / "a", seed=1)
    b = make_run(tmp_path / "b", seed=2)
    res = compare_runs(load_run(a), load_run(b))
    assert len(res) == len(ARCHS) * len(LENS)
    assert set(res["verdict"]) <= {"same"}
    assert cli_main(["compare", str(a), str(b), "--fail-on-regression"]) == 0


def test_injected_slowdown_is_flagged(tmp_path, capsys):
    a = make_run(tmp_path / "a", seed=1)
    b = make_run(tmp_path / "b", seed=2, slow={("lstm", 1024): 1.3, ("lmu", 4096): 0.7})
    res = compare_runs(load_run(a), load_run(b)).set_index(["arch", "seq_len"])
    reg = res.loc[("lstm", 1024)]
    assert reg["verdict"] == "regression"
    # reference values computed here from the stored records
    ra, rb = (RunDir(d).latest_by_cell() for d in (a, b))
    cid = reg["cell_id"]
    assert reg["ratio"] == pytest.approx(rb[cid].time_median_s / ra[cid].time_median_s)
    assert reg["ratio"] == pytest.approx(1.3, rel=0.05)
    ref_p = stats.mannwhitneyu(rb[cid].samples, ra[cid].samples).pvalue
    assert reg["p_value"] == pytest.approx(ref_p) and reg["p_value"] < 1e-4
    assert res.loc[("lmu", 4096), "verdict"] == "improvement"
    assert (res.drop(index=[("lstm", 1024), ("lmu", 4096)])["verdict"] == "same").all()
    assert cli_main(["compare", str(a), str(b)]) == 0  # reported, not failing by default
    assert cli_main(["compare", str(a), str(b), "--fail-on-regression"]) == 1
    # a 30% slowdown is within a 50% threshold
    assert cli_main(["compare", str(a), str(b), "--threshold", "0.5", "--fail-on-regression"]) == 0
    assert "regression" in capsys.readouterr().out


def one_cell_run(root, samples: list[float], status: str = "ok"):
    """A run with a single lstm cell holding exactly ``samples``."""
    return write_run(root, [record("lstm", 256, status, samples=samples, batch=2)])


@pytest.mark.parametrize("n_a,n_b", [(2, 2), (3, 3), (4, 4), (3, 4), (3, 5), (2, 30), (6, 6)])
def test_min_pvalue_is_the_exact_tests_best_case(n_a, n_b):
    # reference: scipy's exact test on perfectly separated samples (its smallest p-value)
    a, b = np.arange(n_a, dtype=float), 100 + np.arange(n_b, dtype=float)
    ref = stats.mannwhitneyu(b, a, alternative="two-sided", method="exact").pvalue
    assert min_pvalue(n_a, n_b) == pytest.approx(ref, rel=1e-9)
    assert can_reach_significance(n_a, n_b, 0.05) == (ref < 0.05)


def test_too_few_samples_are_insufficient_not_same(tmp_path):
    # three samples per side: no Mann–Whitney outcome reaches p < 0.05 (best case 0.1)
    a = make_run(tmp_path / "a", seed=1, k=3)
    b = make_run(tmp_path / "b", seed=2, k=3, slow={("lstm", 1024): 1.3})
    res = compare_runs(load_run(a), load_run(b)).set_index(["arch", "seq_len"])
    assert (res["verdict"] == "insufficient samples").all()  # neither "same" nor "(n.s.)"
    assert (res[["n_a", "n_b"]] == 3).all().all()
    # every B sample of the slowed cell is >10% slower than every A sample (3% spread)
    assert res.loc[("lstm", 1024), "all_slower"]
    assert not res.drop(index=[("lstm", 1024)])["all_slower"].any()
    assert cli_main(["compare", str(a), str(b)]) == 0
    assert cli_main(["compare", str(a), str(b), "--fail-on-regression"]) == 1
    # the same runs with the slowdown inside a 50% threshold pass
    assert cli_main(["compare", str(a), str(b), "--threshold", "0.5", "--fail-on-regression"]) == 0


@pytest.mark.parametrize(
    "a,b,fails",
    [
        ([1.00, 1.01, 1.02], [1.13, 1.20, 1.30], True),  # all B > 1.1 × max A
        ([1.00, 1.01, 1.02], [1.05, 1.30, 1.40], False),  # median +30%, one B overlaps
        ([1.00, 1.01], [1.00, 1.02], False),  # unchanged
        ([1.0], [2.0], True),  # a single sample each: clearly slower
    ],
)
def test_fail_rule_for_untestable_cells(tmp_path, capsys, a, b, fails):
    ra, rb = one_cell_run(tmp_path / "a", a), one_cell_run(tmp_path / "b", b)
    res = compare_runs(load_run(ra), load_run(rb))
    assert res["verdict"].item() == "insufficient samples"
    assert cli_main(["compare", str(ra), str(rb), "--fail-on-regression"]) == int(fails)
    assert "too few samples" in capsys.readouterr().out


def test_four_per_side_can_regress(tmp_path):
    # 4 vs 4 fully separated: exact p = 2/70 = 0.029 < 0.05, a real regression verdict
    ra = one_cell_run(tmp_path / "a", [1.00, 1.01, 1.02, 1.03])
    rb = one_cell_run(tmp_path / "b", [1.30, 1.31, 1.32, 1.33])
    res = compare_runs(load_run(ra), load_run(rb))
    assert res["verdict"].item() == "regression"
    assert res["p_value"].item() == pytest.approx(2 / 70)


def test_insignificant_change_with_enough_samples_is_not_a_regression(tmp_path):
    # 6 per side, heavily overlapping: testable, but the 20% median shift is n.s.
    ra = one_cell_run(tmp_path / "a", [1.0, 1.1, 1.2, 1.3, 1.8, 2.0])
    rb = one_cell_run(tmp_path / "b", [0.9, 1.2, 1.5, 1.6, 1.7, 2.1])
    res = compare_runs(load_run(ra), load_run(rb))
    assert res["ratio"].item() == pytest.approx(1.55 / 1.25)
    assert res["p_value"].item() > 0.05
    assert res["verdict"].item() == "slower (n.s.)"
    assert cli_main(["compare", str(ra), str(rb), "--fail-on-regression"]) == 0


def test_failures_and_unmatched_cells_are_listed(tmp_path, capsys):
    a = make_run(tmp_path / "a", seed=1, status={("lmu", 256): "oom"}, drop=[("lstm", 256)])
    b = make_run(
        tmp_path / "b",
        seed=2,
        status={("transformer", 4096): "oom", ("lmu", 1024): "timeout"},
        extra=[("lmu", 8192)],
    )
    res = compare_runs(load_run(a), load_run(b)).set_index(["arch", "seq_len"])
    assert res.loc[("lmu", 256), "verdict"] == "fixed"
    assert res.loc[("transformer", 4096), "verdict"] == "new failure"
    assert res.loc[("lstm", 256), "verdict"] == "only in B"
    assert res.loc[("lmu", 8192), "verdict"] == "only in B"
    assert len(res) == len(ARCHS) * len(LENS) + 1
    csv = tmp_path / "cmp.csv"
    assert cli_main(["compare", str(b), str(a), "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "only in A" in out and "TIMEOUT" in out
    assert csv.read_text().count("\n") == len(res) + 1
    assert cli_main(["compare", str(a), str(b), "--fail-on-regression"]) == 1  # new failures


def test_bad_inputs_exit_2(tmp_path, capsys):
    a = make_run(tmp_path / "a", seed=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["compare", str(a), str(empty)]) == 2
    assert "has no records" in capsys.readouterr().err
    assert cli_main(["compare", str(a), str(a), "--threshold", "1.5"]) == 2
    assert "--threshold" in capsys.readouterr().err
    old = tmp_path / "old"
    old.mkdir()
    (old / "records.jsonl").write_text('{"schema": 0}\n')
    assert cli_main(["compare", str(old), str(a)]) == 2
    assert cli_main(["compare", str(a), str(a), "--csv", str(tmp_path / "no" / "x.csv")]) == 2


def test_a_negative_time_in_a_frame_is_invalid_not_an_improvement(tmp_path):
    """A frame holding what the store's reader would refuse (a median of -1 ms over
    negative samples): the cell is an invalid time that fails the gate, never the
    significant improvement its ratio would make it."""
    a = one_cell_run(tmp_path / "a", [1.0, 1.01, 1.02, 1.03, 1.04, 1.05])
    b = one_cell_run(tmp_path / "b", [1.0] * 6)
    da, db = load_run(a), load_run(b)
    db["time_median_s"], db["samples"] = -1e-3, pd.Series([[-1e-3] * 6], index=db.index)
    res = compare_runs(da, db)
    assert res["verdict"].item() == "invalid time" and failing(res).all()
    assert res["problem"].item() == "B: median -0.001 s" and np.isnan(res["ratio"].item())
    db["time_median_s"] = 1.0  # a plausible median over a negative sample
    res = compare_runs(da, db)
    assert res["problem"].item() == "B: a sample of -0.001 s"


@pytest.mark.parametrize("zero_side", ["a", "b"])
def test_a_zero_median_is_no_ratio(tmp_path, capsys, zero_side):
    """A median of 0 s (every sample below the clock's resolution) reads, but no ratio
    rests on it: compare shows an invalid time and --fail-on-regression fails it."""
    runs = {side: one_cell_run(tmp_path / side, [0.0] * 6 if side == zero_side
                               else [1.0, 1.01, 1.02, 1.03, 1.04, 1.05])
            for side in "ab"}  # fmt: skip
    res = compare_runs(load_run(runs["a"]), load_run(runs["b"]))
    assert res["verdict"].item() == "invalid time"
    assert res["problem"].item() == f"{zero_side.upper()}: median 0.0 s"
    code = cli_main(["compare", str(runs["a"]), str(runs["b"]), "--fail-on-regression"])
    out = capsys.readouterr().out
    assert code == 1 and "invalid time" in out and "improvement" not in out
