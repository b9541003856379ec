"""Crossover lengths (``harness.report.crossover``) and memory frontiers
(``harness.report.frontier``) on synthetic curves whose crossing and frontier are known:
the point, its interval, "faster throughout", open intervals, "too few lengths", the
limit each device's memory sets, and the report's sections and figure marks built on
records, old ones without samples included."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from harness.errors import UsageError
from harness.report import build_report, load_runs
from harness.report.bootstrap import resampled_medians
from harness.report.crossover import (
    crossover,
    crossover_table,
    pair_crossovers,
    parse_pairs,
    report_pairs,
)
from harness.report.figures import plot_vs_length
from harness.report.frontier import frontier_table, memory_frontier
from harness.report.lm_claims import crossing, sign_change
from harness.report.style import arch_styles
from harness.run.suites import load_suite
from harness.store.rundir import RunDir
from tests.helpers import ENV, record, samples_around, write_run, write_schema_1

ROUNDS, PER_ROUND = 5, 4
LIN, QUAD = 1e-5, 1e-8  # LIN·n = QUAD·n² at n = 1000
TRUE_N = LIN / QUAD
LENS = [128, 256, 512, 1024, 2048, 4096, 8192]


def cell_samples(median: float, rng: np.random.Generator, drift: float = 0.05,
                 noise: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """One cell: each round on a machine ``exp(N(0, drift))`` times its usual speed,
    ``noise`` within a round; the true median is ``median``."""
    shift = np.exp(rng.normal(0, drift, ROUNDS))
    s = median * np.repeat(shift, PER_ROUND) * np.exp(rng.normal(0, noise, ROUNDS * PER_ROUND))
    return s, np.repeat(np.arange(ROUNDS), PER_ROUND)


def lin_vs_quad(rng: np.random.Generator, n_resamples: int = 1000, lens=LENS):
    cells = {(arch, n): cell_samples(c * n ** p, rng)
             for arch, c, p in (("lin", LIN, 1), ("quad", QUAD, 2)) for n in lens}
    boot = np.random.default_rng(rng.integers(2**32))
    res = {k: resampled_medians(s, r, n_resamples, boot) for k, (s, r) in cells.items()}
    med = {k: float(np.median(s)) for k, (s, _) in cells.items()}
    return crossover(lens, [med[("lin", n)] for n in lens], [med[("quad", n)] for n in lens],
                     a="lin", b="quad",
                     resampled_a=np.stack([res[("lin", n)] for n in lens], axis=1),
                     resampled_b=np.stack([res[("quad", n)] for n in lens], axis=1))


# ---------------------------------------------------------------- the crossing itself


def test_sign_change_of_many_curves_is_crossing_of_each():
    rng = np.random.default_rng(0)
    lx = np.log([128.0, 256, 512, 1024, 2048])
    d = rng.choice([-1.0, 0.0, 1.0, 2.0], size=(300, 5))
    at = sign_change(lx, d)
    for row, got in zip(d, at, strict=True):
        want = crossing(np.exp(lx), np.exp(row), np.exp(lx), np.ones(5), log_y=True)
        assert (want is None and np.isnan(got)) or math.exp(got) == pytest.approx(want)


def test_a_known_crossing_is_found_and_its_interval_holds_it():
    c = lin_vs_quad(np.random.default_rng(3))
    assert c.point == pytest.approx(TRUE_N, rel=0.1)
    assert c.low < TRUE_N < c.high and not c.is_open
    assert c.low > 512 and c.high < 2048  # narrow: the curves part fast on log-log
    assert c.no_cross == 0 and c.crossings == 1
    assert c.text().startswith(f"n ≈ {c.point:.3g} [")
    assert "quad faster below, lin above" in c.text()


def test_the_interval_covers_the_true_crossing_most_of_the_time():
    rng = np.random.default_rng(7)
    runs = [lin_vs_quad(rng, n_resamples=400, lens=[256, 512, 1024, 2048, 4096])
            for _ in range(40)]
    held = np.mean([c.low <= TRUE_N <= c.high for c in runs])
    assert held >= 0.85  # nominal 95%; the rounds carry the drift between them
    assert np.median([c.high / c.low for c in runs]) < 2  # and it is not trivially wide


def test_no_crossing_in_range_says_who_is_faster_with_the_ratios_at_both_ends():
    lens = [128, 512, 2048]
    lin = [1e-5 * n for n in lens]
    quad = [1e-10 * n * n for n in lens]  # equal only at n = 1e5
    c = crossover(lens, lin, quad, a="lin", b="quad")
    assert c.point is None
    assert c.ratio_min == pytest.approx(1e5 / 128) and c.ratio_max == pytest.approx(1e5 / 2048)
    assert c.text() == ("no crossover in n = 128..2048: quad faster throughout "
                        "(781× at 128, 49× at 2048)")


def test_an_ambiguous_crossing_has_an_open_interval():
    """Two curves 1.4% apart at the ends with 30% scatter: the measured medians cross at
    512 exactly, but many resamples do not cross in range at all."""
    lens = [128, 256, 1024, 2048]
    rng = np.random.default_rng(1)
    med_a = {n: n * 1e-5 for n in lens}
    med_b = {n: n * 1e-5 * (n / 512) ** 0.01 for n in lens}
    res = {}
    for arch, med in (("a", med_a), ("b", med_b)):
        for n in lens:
            s = samples_around(med[n], 21, 0.3, rng)
            res[(arch, n)] = resampled_medians(s, np.arange(21) % 3, 1000, rng)
    c = crossover(lens, [med_a[n] for n in lens], [med_b[n] for n in lens], a="a", b="b",
                  resampled_a=np.stack([res[("a", n)] for n in lens], axis=1),
                  resampled_b=np.stack([res[("b", n)] for n in lens], axis=1))
    assert c.point == pytest.approx(512)
    assert c.is_open and c.no_cross > 0.05  # most resamples cross somewhere, at random
    assert c.low == -math.inf or c.high == math.inf
    text = c.text()
    assert "open: no crossing in range in" in text and ("< 128" in text or "> 2048" in text)


def test_memory_crosses_without_an_interval():
    lens = [256, 512, 2048, 4096]
    c = crossover(lens, [1e6 * n for n in lens], [1e3 * n * n for n in lens], a="rnn",
                  b="attn", metric="memory", why_no_interval="one reading per cell")
    assert c.point == pytest.approx(1000)  # exact: log(mem_a/mem_b) is linear in log n
    assert not c.has_interval
    assert c.text().startswith("n ≈ 1k (one reading per cell): attn uses less memory below")


def test_pairs_are_the_baselines_then_the_named_ones_once():
    assert parse_pairs(["a:b", " c : d "]) == [("a", "b"), ("c", "d")]
    for bad in ("a", "a:b:c", "a:a", ":b", 3):
        with pytest.raises(UsageError, match="crossover_pairs"):
            parse_pairs([bad])
    assert report_pairs(["base", "x", "y"], "base", [("x", "y"), ("base", "x"), ("y", "x")]) \
        == [("x", "base"), ("y", "base"), ("x", "y")]


def test_a_suite_naming_an_unknown_pair_is_refused(tmp_path):
    bad = tmp_path / "s.toml"
    bad.write_text('[report]\ncrossover_pairs = ["lmu:nosuch"]\n[cpu]\n[[cpu.grid]]\n'
                   'arch = ["lmu"]\nworkload = ["forward"]\nseq_len = [8]\n')
    with pytest.raises(UsageError, match="nosuch"):
        load_suite(str(bad))


# ---------------------------------------------------------------- records and the report


def lin_quad_run(root: Path, *, env: dict | None = None, named: list[str] | None = None,
                 seed: int = 0) -> Path:
    """``base`` (∝ n), ``quad`` (∝ n², crossing base at 1000) and ``flat`` (always
    10× faster than base), 5 rounds each; peak memory base 1e6·n, quad 1e3·n²."""
    rng = np.random.default_rng(seed)
    recs = []
    laws = {"base": lambda n: LIN * n, "quad": lambda n: QUAD * n * n,
            "flat": lambda n: LIN * n / 10}
    mems = {"base": lambda n: 1e6 * n, "quad": lambda n: 1e3 * n * n,
            "flat": lambda n: 5e5 * n}
    for arch, law in laws.items():
        for n in LENS[:5]:
            s, r = cell_samples(law(n), rng)
            recs.append(record(arch, n, samples=s, sample_rounds=r.tolist(), batch=4,
                               peak_mem_bytes=int(mems[arch](n))))
    meta = {"baseline": "base"}
    if named:
        meta["report"] = {"crossover_pairs": named}
    return write_run(root, recs, env=env or ENV, plan=([], meta))


def test_crossover_table_of_a_run(tmp_path):
    df = load_runs(lin_quad_run(tmp_path))
    t = crossover_table(df, "base", [("flat", "quad")], n_resamples=300)
    by = {(r.a, r.b, r.metric): r for r in t.itertuples()}
    assert set(by) == {(a, b, m) for a, b in (("flat", "base"), ("quad", "base"),
                                              ("flat", "quad")) for m in ("time", "memory")}
    q = by[("quad", "base", "time")]
    assert q.point == pytest.approx(TRUE_N, rel=0.1) and q.low < TRUE_N < q.high
    assert q.vs_baseline and not by[("flat", "quad", "time")].vs_baseline
    flat = by[("flat", "base", "time")]
    assert math.isnan(flat.point) and flat.ratio_min == pytest.approx(0.1, rel=0.1)
    assert flat.text.startswith("no crossover in n = 128..2048: flat faster throughout (")
    assert by[("quad", "base", "memory")].point == pytest.approx(1000)
    assert "one reading per cell" in by[("quad", "base", "memory")].text


def test_thin_or_sampleless_cells_give_the_point_without_an_interval(tmp_path):
    recs = [record(a, n, samples=samples_around(c * n ** p, 3, 0.05,
                                                np.random.default_rng(n)), batch=4)
            for a, c, p in (("base", LIN, 1), ("quad", QUAD, 2)) for n in LENS[:5]]
    df = load_runs(write_run(tmp_path, recs))
    (time,) = [c for c in pair_crossovers(df, [("quad", "base")], n_resamples=100)
               if c.metric == "time"]
    assert time.point == pytest.approx(TRUE_N, rel=0.02) and not time.has_interval
    assert "(too few samples, no interval)" in time.text()


def test_report_shows_crossovers_frontiers_and_marks_the_time_figure(tmp_path):
    env = {**ENV, "mem_total_bytes": 2**34, "suite": {"settings": {"mem_cap_gb": 0}}}
    run = lin_quad_run(tmp_path / "run", env=env, named=["flat:quad"])
    index = build_report([run], tmp_path / "rep", formats=("png",), widths=("single",),
                         dpi=50, n_resamples=200).read_text()
    xo = index[index.index("## Crossover lengths"):index.index("## Memory frontier")]
    assert "| `quad` vs `base` | n ≈ 1" in xo and "`flat` vs `quad`" in xo
    assert "no crossover in n = 128..2048: flat faster throughout" in xo
    fr = index[index.index("## Memory frontier"):index.index("## Tables")]
    assert "host memory 16 GiB (no cap set)" in fr
    # base: 1e6·n reaches 2^34 bytes at n = 17.2k; quad: 1e3·n² at n = 4.14k
    assert "| `base` |" in fr and "≈ 17.2k [17.2k, 17.2k] (extrapolated from n ≤ 2048)" in fr
    assert "≈ 4.14k [4.14k, 4.14k] (extrapolated from n ≤ 2048)" in fr
    assert "crossover with the baseline" not in index  # the caption says it otherwise
    assert "◆ where an architecture's curve crosses the baseline's" in index
    assert (tmp_path / "rep" / "crossover.csv").is_file()
    assert (tmp_path / "rep" / "frontier.csv").is_file()


def test_the_time_figure_marks_each_crossover_with_the_baseline(tmp_path):
    df = load_runs(lin_quad_run(tmp_path))
    styles = arch_styles(df["arch"], first="base")
    t = crossover_table(df, "base", n_resamples=200)
    fig = plot_vs_length(df, "time_median_s", styles=styles, width="single", ylabel="t",
                         baseline="base", crossovers=t)
    diamonds = [ln for ln in fig.axes[0].lines if ln.get_gid() == "crossover"]
    assert len(diamonds) == 1  # quad crosses base; flat never does
    q = t[(t["a"] == "quad") & (t["metric"] == "time")].iloc[0]
    assert diamonds[0].get_xdata()[0] == pytest.approx(q.point)
    assert diamonds[0].get_color() == styles["quad"].color
    bars = [ln for ln in fig.axes[0].lines if ln.get_gid() == "crossover interval"]
    assert [tuple(b.get_xdata()) for b in bars] == [pytest.approx((q.low, q.high))]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "crossover with baseline (95% CI)" in legend
    plain = plot_vs_length(df, "time_median_s", styles=styles, width="single", ylabel="t",
                           baseline="base")
    assert not [ln for ln in plain.axes[0].lines if ln.get_gid() == "crossover"]


def test_paper_preset_shows_the_suites_named_pairs(tmp_path):
    rng = np.random.default_rng(0)
    recs = []
    for arch, c in [("lmu", 1e-5), ("lmu-fft", 1e-6), ("lstm", 2e-5)]:
        for n in (256, 1024, 4096):
            s, r = cell_samples(c * n, rng)
            recs.append(record(arch, n, samples=s, sample_rounds=r.tolist(), batch=4,
                               workload="train"))
    run = write_run(tmp_path / "run", recs, plan=([], {"suite": "paper"}))
    text = build_report([run], tmp_path / "p", preset="paper", formats=("png",),
                        widths=("single",), dpi=50, n_resamples=50).read_text()
    assert "## Crossover lengths" in text
    assert "| `lmu-fft` vs `lstm` | no crossover in n = 256..4096: lmu-fft faster" in text


def test_an_old_run_without_samples_rounds_or_memory_sizes_still_reports(tmp_path):
    recs = [record(a, n, samples=[c * n * n ** 0.01 * f for f in (0.9, 1.0, 1.1, 1.0, 0.95)],
                   batch=4, peak_mem_bytes=1000 * n)
            for a, c in (("lmu", 1e-5), ("fast", 1e-6)) for n in (256, 1024, 4096)]
    recs.append(record("nos", 256, time_median_s=1e-3, batch=4))  # no samples at all
    recs.append(record("nos", 1024, time_median_s=1e-1, batch=4))
    write_schema_1(tmp_path / "old", recs)  # no sample_rounds, no memory in env.json
    index = build_report([tmp_path / "old"], tmp_path / "rep", formats=("png",),
                         widths=("single",), dpi=50, n_resamples=50, baseline="lmu").read_text()
    assert "no crossover in n = 256..4096: fast faster throughout (10× at 256" in index
    assert "(no samples stored, no interval)" in index  # nos crosses lmu near 290
    assert "no frontier: limit unknown: env.json records no memory size" in index


# ---------------------------------------------------------------- memory frontier


def test_frontier_of_a_known_power_law_with_noise():
    rng = np.random.default_rng(2)
    n = np.array([256, 512, 1024, 2048, 4096, 8192], float)
    cap = 2.0**34
    truth = cap / 5e4  # peak = 5e4 · n
    hits = 0
    for _ in range(100):
        f = memory_frontier(n, 5e4 * n * np.exp(rng.normal(0, 0.03, len(n))), cap)
        hits += f.low <= truth <= f.high
    assert 0.88 <= hits / 100  # nominal 95%
    assert f.point == pytest.approx(truth, rel=0.25) and f.extrapolated
    assert f.power == 1 and f.model() == "c + a·n"
    assert f.text().startswith("≈ ") and "(extrapolated from n ≤ 8192)" in f.text()


@pytest.mark.parametrize("power", [1, 2])
def test_a_fixed_share_plus_growth_is_read_as_growth_not_as_a_flat_power_law(power):
    """Peak memory at short lengths is mostly a fixed share (a CPU cell's buffers): a
    power law through it reads as n^0.1 and puts the frontier near 1e25; c + a·n^k finds
    the per-token (or per-pair) slope and a frontier the hand solution holds."""
    n = np.array([256, 1024, 4096], float)
    c, a, cap = 40e6, 3e3 if power == 1 else 2.0, 2.0**34
    rng = np.random.default_rng(power)
    peak = (c + a * n**power) * (1 + rng.normal(0, 0.002, len(n)))
    f = memory_frontier(n, peak, cap)
    truth = ((cap - c) / a) ** (1 / power)  # solved by hand: c + a·n^k = cap
    assert f.power == power
    assert f.point == pytest.approx(truth, rel=0.05) and f.low <= truth <= f.high


def test_frontier_needs_three_lengths_and_a_growing_memory():
    f = memory_frontier([256, 1024, 1024], [1e6, 4e6, 4.1e6], 2**34)
    assert f.text() == "too few lengths (2; a fit needs 3)" and math.isnan(f.point)
    flat = memory_frontier([256, 1024, 4096], [2e6, 1.9e6, 1.8e6], 2**34)
    assert flat.text().startswith("no frontier: peak memory does not grow with n")


def test_a_slope_unclear_of_zero_gives_an_open_frontier():
    f = memory_frontier([256, 512, 1024, 2048], [1e6, 3e6, 0.9e6, 2.2e6], 2**34)
    assert f.power in (1, 2) and f.high == math.inf and "∞)" in f.text()


@pytest.mark.parametrize("device, env, limit, source", [
    ("cuda:1", {"gpu_mem_bytes": [2**36, 2**33]}, 2**33, "GPU memory 8 GiB"),
    ("cpu", {"mem_total_bytes": 2**35, "suite": {"settings": {"mem_cap_gb": 4}}}, 2**32,
     "the run's memory cap per cell 4 GiB"),
    ("cpu", {"mem_total_bytes": 2**35}, 2**35, "host memory 32 GiB (no cap set)"),
], ids=["cuda-memory", "cpu-cap", "cpu-host"])
def test_the_limit_is_the_devices_memory_or_the_runs_cap(tmp_path, device, env, limit, source):
    recs = [record("a", n, time_median_s=1e-3, batch=4, device=device,
                   peak_mem_bytes=100 * n * n) for n in (256, 512, 1024)]
    recs.append(record("a", 8192, "oom", batch=4, device=device))
    t = frontier_table(load_runs(write_run(tmp_path, recs, env={**ENV, **env})))
    (row,) = t.itertuples()
    assert row.limit_bytes == limit and row.limit_source == source
    assert row.point == pytest.approx(math.sqrt(limit / 100), rel=1e-6)  # exact power law
    assert row.oom_at == 8192


def test_run_dirs_lacking_env_say_the_limit_is_unknown(tmp_path):
    recs = [record("a", n, time_median_s=1e-3, batch=4, device="cuda",
                   peak_mem_bytes=100 * n) for n in (256, 512, 1024)]
    t = frontier_table(load_runs(write_run(tmp_path, recs)))
    assert t["text"].iloc[0].startswith("no frontier: limit unknown: env.json records no GPU")
    assert RunDir(tmp_path).env() == ENV
