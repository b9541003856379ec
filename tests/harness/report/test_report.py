"""Report: scaling fits, speedup tables, failed cells, LaTeX structure, figure sizes, CLI errors.

Records are synthetic with known laws and known medians, written through RunDir so
the format is the one the runner produces.
"""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main as cli_main
from harness.errors import UsageError
from harness.report import build_report, load_runs, speedup_table
from harness.report.bootstrap import ratio_ci
from harness.report.scaling import fit_exponent, scaling_table
from harness.report.tables import latex_escape, speedup_grid, to_latex
from harness.store.records import Cell, Record
from harness.store.rundir import RunDir
from tests.helpers import record, samples_around, write_run

LENS = [256, 512, 1024, 2048, 4096, 8192, 16384]


def add(
    store: RunDir,
    arch: str,
    n: int,
    status: str = "ok",
    *,
    median: float | None = None,
    workload: str = "forward",
    device: str = "cpu",
    rng=None,
    k: int = 7,
    noise: float = 0.02,
    **kw,
) -> Record:
    """Append one record; ``median`` is the exact median of its samples."""
    cell = dict(workload=workload, batch=4, device=device)
    if status != "ok":
        rec = record(arch, n, status, message=f"synthetic {status}", **cell, **kw)
    else:
        rng = rng or np.random.default_rng(abs(hash((arch, n))) % 2**32)
        samples = samples_around(median, k, noise, rng)
        rec = record(arch, n, samples=samples, time_median_s=median,
                     time_min_s=float(samples.min()), **cell, **kw)
    store.append(rec)
    return rec


def realistic_run(
    root: Path, device: str = "cpu", device_name: str = "cpu: AMD EPYC 7763", *, seed: int = 0
) -> Path:
    """Five archs over 256..16384, one OOM (transformer) and one timeout (lstm)."""
    store = RunDir(root).ensure()
    store.write_env(
        {
            "device_name": device_name,
            "hostname": f"host-{device}",
            "torch": "2.13.0",
            "git_commit": "abc1234def",
        }
    )
    rng = np.random.default_rng(seed)
    laws = {
        "lmu": lambda n: 2e-6 * n,
        "lmu-fft": lambda n: 4e-8 * n * math.log2(n),
        "lmu-conv": lambda n: 1e-9 * n * n + 1e-4,
        "lstm": lambda n: 3e-6 * n,
        "transformer": lambda n: 2e-10 * n * n + 2e-4,
    }
    for arch, law in laws.items():
        for n in LENS:
            if arch == "transformer" and n == 16384:
                add(store, arch, n, "oom", device=device)
                continue
            if arch == "lstm" and n == 16384:
                add(store, arch, n, "timeout", device=device)
                continue
            mem = int(1e5 * n * (n / 1024 if arch == "transformer" else 1))
            add(
                store,
                arch,
                n,
                median=law(n),
                device=device,
                rng=rng,
                peak_mem_bytes=mem,
                tokens_per_s=4 * n / law(n),
            )
        for n in LENS[:4]:
            add(
                store,
                arch,
                n,
                workload="stream",
                device=device,
                rng=rng,
                median=law(n) * 20,
                time_per_token_s=law(n) * 20 / n,
                state_bytes=1000 * (n if arch == "transformer" else 1),
            )
    return root


# ------------------------------------------------------------------ scaling


def test_exponent_of_n_squared_is_two(tmp_path):
    store = RunDir(tmp_path).ensure()
    rng = np.random.default_rng(1)
    lens = [2**k for k in range(8, 17)]
    for n in lens:  # 2% multiplicative noise on the medians
        add(store, "quad", n, median=3e-9 * n**2 * float(rng.uniform(0.98, 1.02)))
    fits = scaling_table(load_runs(tmp_path))
    assert fits["exponent"].item() == pytest.approx(2.0, abs=0.02)


def test_exponent_of_n_log_n_matches_reference_fit():
    lens = np.array([2.0**k for k in range(8, 17)])
    t = 5e-9 * lens * np.log(lens)
    # independent reference: the least-squares slope written out by hand
    x, y = np.log(lens), np.log(t)
    ref = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    fit = fit_exponent(lens, t)
    assert fit.exponent == pytest.approx(ref, rel=1e-12)
    assert fit.exponent == pytest.approx(1.1, abs=0.05)  # 1 + 1/ln n averaged over the range


def test_fit_needs_three_lengths():
    with pytest.raises(ValueError, match="at least 3 distinct"):
        fit_exponent([256, 256, 1024], [1.0, 2.0, 3.0])


def test_fit_quality_matches_a_hand_written_regression():
    lens = np.array([256.0, 512, 1024, 2048])
    t = np.array([1.0, 2.1, 3.9, 8.3]) * 1e-3
    x, y = np.log(lens), np.log(t)
    slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    resid = y - (y.mean() + slope * (x - x.mean()))
    r2 = 1 - (resid**2).sum() / ((y - y.mean()) ** 2).sum()
    se = np.sqrt((resid**2).sum() / (len(x) - 2) / ((x - x.mean()) ** 2).sum())
    t975 = 4.302652729911275  # Student t quantile 0.975 with 2 degrees of freedom (tables)
    fit = fit_exponent(lens, t)
    assert fit.exponent == pytest.approx(slope, rel=1e-12)
    assert fit.r2 == pytest.approx(r2, rel=1e-12)
    assert fit.stderr == pytest.approx(se, rel=1e-9)
    assert fit.ci_low == pytest.approx(slope - t975 * se, rel=1e-9)
    assert fit.ci_high == pytest.approx(slope + t975 * se, rel=1e-9)


def test_exponents_are_fitted_per_whole_facet(tmp_path):
    # a linear series at batch 4 plus one batch-64 point: mixed together they fit ~0.45
    store = RunDir(tmp_path).ensure()
    for n in (256, 512, 1024, 2048):
        add(store, "lin", n, median=1e-6 * n)
    t64 = 16 * 1e-6 * 256  # batch 64 at n = 256: 16× the batch-4 time
    cell = Cell.make(arch="lin", workload="forward", seq_len=256, batch=64)
    store.append(Record.for_cell(cell, "ok", samples=[t64] * 7, time_median_s=t64,
                                 n_samples=7))
    for n in (256, 1024):  # two lengths only
        add(store, "short", n, median=1e-6 * n)
    df = load_runs(tmp_path)
    mixed = fit_exponent(df[df.arch == "lin"]["seq_len"], df[df.arch == "lin"]["time_median_s"])
    assert mixed.exponent < 0.6  # what a per-(device, workload) grouping would report
    fits = scaling_table(df).set_index(["arch", "batch"])
    assert fits.loc[("lin", 4), "exponent"] == pytest.approx(1.0, abs=0.02)
    assert fits.loc[("lin", 4), "r2"] > 0.99
    assert "too few lengths (1" in fits.loc[("lin", 64), "note"]
    assert "too few lengths (2" in fits.loc[("short", 4), "note"]
    assert np.isnan(fits.loc[("short", 4), "exponent"])
    index = build_report([tmp_path], tmp_path / "rep", formats=("png",), widths=("single",),
                         n_resamples=50, baseline="lin")
    text = index.read_text()
    assert "too few lengths (2; a fit needs 3)" in text
    assert "1.00 [" in text  # the exponent with its interval


# ------------------------------------------------------------------ speedups


def test_known_speedups_are_exact_and_failures_are_named(tmp_path):
    store = RunDir(tmp_path).ensure()
    for n, base in [(256, 0.010), (512, 0.030)]:
        add(store, "lmu", n, median=base)
        add(store, "fast", n, median=base / 4)  # exactly 4× faster
        add(store, "slow", n, median=base * 2)  # 0.5×
    add(store, "lmu", 1024, median=0.1)
    add(store, "fast", 1024, "oom")
    add(store, "slow", 1024, "timeout")
    add(store, "lmu", 2048, "oom")
    add(store, "fast", 2048, median=0.2)
    add(store, "lmu", 4096, median=0.4)
    add(store, "fast", 4096, median=0.1, noisy=True)
    long = speedup_table(load_runs(tmp_path), "lmu", n_resamples=200)
    s = long.set_index(["arch", "seq_len"])
    assert s.loc[("fast", 256), "speedup"] == pytest.approx(4.0, rel=1e-12)
    assert s.loc[("fast", 512), "speedup"] == pytest.approx(4.0, rel=1e-12)
    assert s.loc[("slow", 512), "speedup"] == pytest.approx(0.5, rel=1e-12)
    assert s.loc[("lmu", 512), "speedup"] == 1.0
    # the CI brackets the point estimate
    assert s.loc[("fast", 256), "ci_low"] <= 4.0 <= s.loc[("fast", 256), "ci_high"]
    grid = speedup_grid(long, ["lmu", "fast", "slow"], ci=False)
    assert grid.loc["fast", 256] == "4.00"
    assert grid.loc["slow", 256] == "0.500"
    assert grid.loc["fast", 1024] == "OOM"
    assert grid.loc["slow", 1024] == "timeout"
    assert grid.loc["fast", 2048] == "baseline OOM"
    assert grid.loc["slow", 2048] == "n/a"  # never measured: said so, not left blank
    assert grid.loc["fast", 4096] == "4.00\u2020"  # noisy cell flagged
    assert not grid.isin(["", None]).any().any()


def test_ratio_ci_matches_a_hand_written_bootstrap():
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(0, 0.1, 15), rng.lognormal(-1, 0.1, 15)
    ci = ratio_ci(a, b, n_resamples=4000, seed=0)
    ref_rng = np.random.default_rng(123)
    boot = [
        np.median(ref_rng.choice(a, len(a))) / np.median(ref_rng.choice(b, len(b)))
        for _ in range(4000)
    ]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    assert ci.ratio == pytest.approx(np.median(a) / np.median(b))
    assert ci.low == pytest.approx(lo, rel=0.03) and ci.high == pytest.approx(hi, rel=0.03)


# ------------------------------------------------------------------ LaTeX


def _check_tabular(tex: str) -> None:
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    assert body.count(r"\begin{tabular}") == 1 and body.count(r"\end{tabular}") == 1
    order = [
        body.index(t)
        for t in (r"\begin{tabular}", r"\toprule", r"\midrule", r"\bottomrule", r"\end{tabular}")
    ]
    assert order == sorted(order)
    depth = 0
    for ch in re.sub(r"\\[{}]", "", body):  # braces balance, ignoring escaped ones
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    ncols = len(re.search(r"\\begin\{tabular\}\{([lrc]+)\}", body).group(1))
    rows = [r for r in body.split("\\\\") if "&" in r]
    assert rows and all(r.count("&") - r.count(r"\&") == ncols - 1 for r in rows)


def test_latex_table_structure_and_escaping(tmp_path):
    realistic_run(tmp_path)
    df = load_runs(tmp_path)
    long = speedup_table(df[df["workload"] == "forward"], "lmu", n_resamples=100)
    tex = to_latex(speedup_grid(long, sorted(df["arch"].unique())))
    _check_tabular(tex)
    assert "OOM" in tex and "timeout" in tex
    assert latex_escape("a_b & 5%†") == r"a\_b \& 5\%\textsuperscript{\dag}"


# ------------------------------------------------------------------ whole report


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_report_from_two_devices(tmp_path):
    cpu = realistic_run(tmp_path / "cpu")
    gpu = realistic_run(
        tmp_path / "gpu", device="cuda", device_name="NVIDIA H100 80GB HBM3", seed=1
    )
    out = tmp_path / "rep"
    rc = cli_main(
        [
            "report",
            str(cpu),
            str(gpu),
            "--out",
            str(out),
            "--formats",
            "png",
            "--widths",
            "double",
            "--resamples",
            "200",
            "--dpi",
            "100",
            "--baseline",
            "lmu",
        ]
    )
    assert rc == 0
    index = (out / "index.md").read_text()
    for link in re.findall(r"\]\(([^)]+)\)", index):  # every link resolves
        assert (out / link).exists(), link
    assert "NVIDIA H100 80GB HBM3" in index and "CPU: AMD EPYC 7763" in index
    sizes = {p.name: _png_size(p) for p in (out / "figures").glob("*.png")}
    assert sizes["time_forward_double.png"][0] == 700  # 7 in × 100 dpi
    assert {
        "latency_stream_double.png",
        "speedup_forward_double.png",
        "memory_forward_double.png",
    } <= set(sizes)
    md = (out / "tables" / "speedup_forward_cpu-amd-epyc-7763.md").read_text()
    assert "| OOM |" in md and "| timeout |" in md
    _check_tabular((out / "tables" / "speedup_forward_nvidia-h100-80gb-hbm3.tex").read_text())


def test_paper_preset_annotates_and_skips_other_archs(tmp_path):
    run = tmp_path / "run"
    store = RunDir(run).ensure()
    for arch, c in [("lmu", 1e-5), ("lmu-fft", 1e-6), ("lstm", 2e-5), ("other", 1e-6)]:
        for n in (256, 1024, 4096):
            add(store, arch, n, workload="train", median=c * n)
    store.write_plan([], {"suite": "paper"})  # a paper run: its baseline and [report] table
    index = build_report([run], formats=("png",), widths=("single",), dpi=50, n_resamples=50)
    assert index == run / "report" / "index.md"
    text = index.read_text()
    assert "paper preset" not in text  # default preset
    index = build_report(
        [run],
        tmp_path / "p",
        preset="paper",
        formats=("png", "pdf", "svg"),
        widths=("single",),
        dpi=50,
        n_resamples=50,
    )
    text = index.read_text()
    assert "`other`" not in text and "lmu-conv, transformer" in text
    stem = tmp_path / "p" / "figures" / "paper_train_single"
    assert _png_size(stem.with_suffix(".png"))[0] == 165  # 3.3 in × 50 dpi
    svg = stem.with_suffix(".svg").read_text()
    # speedups over lmu at n=4096: lmu-fft 10× faster, lstm half as fast
    assert ">10×<" in svg and ">0.5×<" in svg and "other" not in svg
    pdf = stem.with_suffix(".pdf").read_bytes()
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType embedded, no Type 3


# ------------------------------------------------------------------ bad input


def test_bad_inputs_exit_2(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["report", str(empty)]) == 2
    assert "has no records" in capsys.readouterr().err
    run = tmp_path / "run"
    store = RunDir(run).ensure()
    add(store, "lmu", 256, median=1.0)
    add(store, "lstm", 256, median=1.0)
    assert cli_main(["report", str(run), "--baseline", "nope"]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "lmu, lstm" in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli_main(["report", str(run), "--out", str(blocker / "sub"), "--baseline", "lmu"]) == 2
    assert "cannot create report directory" in capsys.readouterr().err
    old = tmp_path / "old"
    old.mkdir()
    (old / "records.jsonl").write_text('{"schema": 99, "arch": "lmu"}\n')
    assert cli_main(["report", str(old)]) == 2
    assert "schema version" in capsys.readouterr().err
    assert cli_main(["report", str(tmp_path / "missing")]) == 2
    with pytest.raises(UsageError, match="unknown width 'huge'"):
        build_report([run], tmp_path / "o", widths=("huge",))


def test_thin_cells_get_no_interval_and_are_flagged(tmp_path):
    store = RunDir(tmp_path).ensure()
    add(store, "lmu", 256, median=0.010, k=7)
    add(store, "fast", 256, median=0.0025, k=3)  # thin: 3 samples
    add(store, "lmu", 512, median=0.030, k=7)
    add(store, "fast", 512, median=0.0075, k=7, contended=True)
    df = load_runs(tmp_path)
    assert df.set_index(["arch", "seq_len"])["thin"].to_dict() == {
        ("lmu", 256): False, ("fast", 256): True, ("lmu", 512): False, ("fast", 512): False
    }
    long = speedup_table(df, "lmu", n_resamples=200)
    s = long.set_index(["arch", "seq_len"])
    assert s.loc[("fast", 256), "too_few"] and np.isnan(s.loc[("fast", 256), "ci_low"])
    assert s.loc[("fast", 256), "speedup"] == pytest.approx(4.0)
    grid = speedup_grid(long, ["lmu", "fast"])
    assert grid.loc["fast", 256] == "4.00 (too few samples)"
    assert grid.loc["fast", 512].startswith("4.00 [") and grid.loc["fast", 512].endswith("\u00a7")
    index = build_report([tmp_path], tmp_path / "rep", formats=("png",), widths=("single",),
                         n_resamples=50, baseline="lmu")
    time_md = (tmp_path / "rep" / "tables" / "time_forward_cpu.md").read_text()
    assert "2.50\u2021" in time_md  # the thin cell's median, flagged
    assert "7.50\u00a7" in time_md  # the contended one
    assert "thin cell" in index.read_text()


def test_speedup_figure_splits_many_lines_into_family_panels(tmp_path):
    from harness.report.figures import MAX_LINES_PER_PANEL, plot_speedup, speedup_panels
    from harness.report.style import arch_styles

    archs = [f"a{i}" for i in range(9)]
    families = {a: ("x" if i < 4 else "y" if i < 7 else "z") for i, a in enumerate(archs)}
    specs = speedup_panels(["cpu"], archs, families)
    assert [(t, m) for t, _, m in specs] == [
        ("x", archs[:4]), ("y", archs[4:7]), ("z", archs[7:])
    ]
    few = archs[:MAX_LINES_PER_PANEL]
    assert speedup_panels(["cpu"], few, families) == [("", "cpu", few)]  # one panel
    # one device with a long label: the families alone title the panels (the label beside
    # each ran into the next panel's title); several devices: each panel names its device
    cpu = "CPU: Intel(R) Xeon(R) Processor @ 2.80GHz"
    assert [t for t, _, _ in speedup_panels([cpu], archs, families)] == ["x", "y", "z"]
    assert [t for t, _, _ in speedup_panels([cpu, "H200"], archs, families)][::3] == [
        f"{cpu} · x", "H200 · x"]
    store = RunDir(tmp_path).ensure()
    for n in (256, 1024):
        add(store, "base", n, median=0.01)
        for i, a in enumerate(archs):
            add(store, a, n, median=0.01 / (i + 2))
    long = speedup_table(load_runs(tmp_path), "base", n_resamples=50)
    fig = plot_speedup(long, "base", styles=arch_styles(["base", *archs], first="base"),
                       families=families)
    data_axes = [ax for ax in fig.axes if ax.get_ylabel() == "speedup over base"]
    assert len(data_axes) == 3
    assert len({ax.get_ylim() for ax in data_axes}) == 1  # one shared scale
    assert sorted(len(ax.get_legend().get_texts()) for ax in data_axes) == [2, 3, 4]


def test_time_figure_family_panels_repeat_the_baseline(tmp_path):
    from harness.report.figures import plot_vs_length
    from harness.report.style import arch_styles

    archs = [f"a{i}" for i in range(8)]
    families = {a: ("x" if i < 5 else "y") for i, a in enumerate(archs)}
    store = RunDir(tmp_path).ensure()
    for n in (256, 512, 1024):
        add(store, "base", n, median=1e-5 * n)
        for i, a in enumerate(archs):
            add(store, a, n, median=1e-5 * n / (i + 2))
    df = load_runs(tmp_path)
    fig = plot_vs_length(df, "time_median_s", styles=arch_styles(["base", *archs], first="base"),
                         ylabel="t", families=families, baseline="base")
    data_axes = [ax for ax in fig.axes if ax.get_ylabel() == "t"]
    assert len(data_axes) == 2
    labels = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in data_axes]
    assert all(lab[0].startswith("base") for lab in labels)  # the reference in each panel
    assert [len(lab) for lab in labels] == [6, 4]
    assert len({ax.get_ylim() for ax in data_axes}) == 1


def test_classify_rows_that_run_one_computation_say_so(tmp_path):
    """lmu-conv and lmu-chunked take eq. 25's last state with lmu-fft's code: for classify
    the three rows time one computation, and the summary and the report say so."""
    from harness.report.summary import summary_tables
    from harness.report.tables import shared_computation

    archs = ["lmu", "lmu-fft", "lmu-conv", "lmu-chunked"]
    assert shared_computation(archs, "classify") == (
        "lmu-chunked and lmu-conv run lmu-fft's forward_last (one computation)")
    assert shared_computation(archs, "train") == ""  # the sequence path differs
    assert shared_computation(["lmu", "lmu-conv"], "classify") == ""  # lmu-fft not there
    write_run(tmp_path, [record(a, 784, samples=[0.01 * (i + 1)] * 5, workload="classify",
                                batch=16) for i, a in enumerate(archs)])
    ((title, _),) = summary_tables(tmp_path, "lmu")
    assert "lmu-chunked and lmu-conv run lmu-fft's forward_last" in title


def test_pooled_repeats_report_one_figure_per_cell_with_runs_resampled(tmp_path):
    """Three repeats of one command: ``--pool`` shows one speedup per cell (no @run
    columns) whose interval spans the runs' own figures, counts each run's cells, and says
    what it pooled; without it the runs stay side by side."""
    runs = [realistic_run(tmp_path / f"r{i}", seed=i) for i in range(3)]
    out = tmp_path / "rep"
    rc = cli_main(["report", *map(str, runs), "--pool", "--out", str(out), "--formats", "png",
                   "--widths", "single", "--resamples", "300", "--dpi", "50",
                   "--baseline", "lmu"])
    assert rc == 0
    index = (out / "index.md").read_text()
    assert "Pooled: 55 of 55 cells measured in 3 runs" in index and "@r" not in index
    summary = index.split("## Runs")[1].split("\n## ")[0]
    assert all(f"| `{r}` " in summary for r in map(str, runs))
    assert summary.count("| 55 | 53 | 1 | 1 |") == 3  # each run's own cells
    pooled = speedup_table(load_runs(runs, pool=True), "lmu", n_resamples=300)
    apart = speedup_table(load_runs(runs), "lmu", n_resamples=300)
    def cell(t):
        return t[(t["arch"] == "lmu-fft") & (t["seq_len"] == 1024) & (t["workload"] == "forward")]

    row, own = cell(pooled).iloc[0], cell(apart)["speedup"]
    assert len(own) == 3 and row["ci_low"] <= own.min() and own.max() <= row["ci_high"]
    assert "@r" not in " ".join(pooled["device_label"])
    one = build_report(runs[:1], tmp_path / "one", pool=True, baseline="lmu", formats=("png",),
                       widths=("single",), dpi=50, n_resamples=100).read_text()
    assert "nothing pooled" in one
