"""The harness's own cost in the report (``sections.overhead_section``): the spread over
the cells that measured it, the largest first, and nothing for runs without it."""

from __future__ import annotations

import pandas as pd

from harness.report.output import Output, prepare_out
from harness.report.sections import overhead_section
from harness.store.load import load_runs
from tests.helpers import record, write_run


def _section(tmp_path, recs) -> tuple[str, pd.DataFrame | None]:
    df = load_runs(write_run(tmp_path / "run", recs))
    out = prepare_out(tmp_path / "rep")
    text = "\n".join(overhead_section(df, Output(out, ("single",), ("png",))))
    csv = out / "overhead.csv"
    return text, pd.read_csv(csv) if csv.exists() else None


def test_the_harness_cost_is_summarised_with_the_largest_first(tmp_path):
    ratios = {("a", 8): 1.02, ("a", 16): 0.97, ("b", 8): 1.31}
    recs = [record(a, n, samples=[0.002] * 5,
                   metrics={"bare_call_s": 0.002 / r, "harness_over_bare": r, "bare_pairs": 6})
            for (a, n), r in ratios.items()]
    recs.append(record("b", 16, samples=[0.5] * 5))  # a slow cell: no pairs
    text, csv = _section(tmp_path, recs)
    assert "## The harness's own cost" in text
    assert "3 cell(s): harness over bare loop median 1.020, range 0.970 to 1.310" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert "`b`" in rows[0] and "1.310" in rows[0] and "1.53 ms" in rows[0]  # 2 ms / 1.31
    assert list(csv["harness_over_bare"]) == sorted(ratios.values(), reverse=True)


def test_a_run_without_the_figure_has_no_section(tmp_path):
    text, csv = _section(tmp_path, [record("a", 8, samples=[0.01] * 5)])
    assert text == "" and csv is None
