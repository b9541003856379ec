"""Published figures: the data file's schema, and the report section beside measured."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

import architectures
import workloads
from harness.report import build_report
from harness.report.published import QUANTITIES, load, parse, published_table
from harness.store.rundir import RunDir
from tests.helpers import ROOT, record

FILE = ROOT / "harness" / "report" / "published.toml"


# ---------------------------------------------------------------- the data file


def test_every_figure_has_a_source_conditions_hardware_and_a_quantity():
    figures = load()
    assert len(figures) >= 4 and len({f.id for f in figures}) == len(figures)
    for f in figures:
        assert f.quantity in QUANTITIES
        assert f.source and f.seen_in and f.conditions and f.hardware and f.claim
    by_id = {f.id: f for f in figures}
    assert by_id["parallel-lmu-training-speedup"].shown() == "up to 200×"
    assert by_id["parallel-lmu-psmnist-accuracy"].value == 0.9849
    assert by_id["original-lmu-psmnist-accuracy"].value == 0.9715
    bounds = [f for f in figures if f.quantity == "test-bound"]
    assert {f.measure["arch"] for f in bounds} == {"lmu-seq", "lmu-fft", "lmu-conv"}
    for f in bounds:  # test bounds are labelled so, never as a speedup
        assert "test bound" in f.shown() and f.value is None and 0 < f.low <= f.high


def test_measured_names_exist_in_the_registries():
    """What the file points at can be run: registered archs, workloads and presets."""
    for f in load():
        m = f.measure
        for arch in (m.get("arch"), m.get("baseline")):  # LM claims: roles, in the suite
            if arch:
                assert arch in architectures.available(), (f.id, arch)
                if "preset" in m:
                    assert m["preset"] in architectures.presets(arch), (f.id, arch)
        for w in f.workloads:
            assert w in workloads.available(), (f.id, w)
        if f.quantity == "accuracy":
            assert all(workloads.info(w).metric.name == "accuracy" for w in f.workloads)


def entry(**kw):
    base = dict(id="x", quantity="speedup", value=2.0, claim="c", source="s", seen_in="w",
                conditions="k", hardware="h",
                measure={"workload": "classify", "arch": "lmu-fft", "baseline": "lmu"})
    return {"figure": [{**base, **kw}]}


@pytest.mark.parametrize("bad,match", [
    (dict(source=""), "non-empty string 'source'"),
    (dict(quantity="ratio"), "unknown quantity 'ratio'; valid choices: speedup, accuracy"),
    (dict(quantity="accuracy", value=98.49), r"positive 'value' \(a fraction <= 1\)"),
    (dict(quantity="test-bound", value=None, low=0.2, high=0.1), "0 < low <= high"),
    (dict(measure={"workload": "classify", "arch": "lmu-fft"}), "needs a 'baseline'"),
    (dict(measure={"arch": "lmu"}), "needs 'workload'"),
    (dict(measure={"workload": "w", "arch": "a", "baseline": "b", "colour": 1}),
     r"unknown \[measure\] key\(s\) \['colour'\]"),
    (dict(notes="?"), r"unknown field\(s\) \['notes'\]"),
    (dict(measure={"workload": "w", "arch": "a", "baseline": "b", "statistic": "best"}),
     "statistic 'best' for a speedup"),
])
def test_bad_entries_name_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        parse(entry(**bad))
    two = entry()
    two["figure"].append(dict(two["figure"][0]))
    with pytest.raises(ValueError, match="duplicate id 'x'"):
        parse(two)


def test_file_is_valid_toml_with_only_figure_tables():
    data = tomllib.loads(FILE.read_text())
    assert set(data) == {"figure"}


# ---------------------------------------------------------------- beside measured


def add(store, arch, workload, n, batch, *, preset="small", median=None, metrics=None,
        device="cpu", overrides=None):
    cell = dict(workload=workload, batch=batch, preset=preset, device=device,
                overrides=overrides)
    if metrics is not None:
        rec = record(arch, n, samples=[0.1] * 5, time_min_s=0.1, metrics=metrics, **cell)
    else:
        samples = median * np.array([0.98, 0.99, 1.0, 1.01, 1.02])
        rec = record(arch, n, samples=samples, time_median_s=median,
                     time_min_s=float(samples.min()), **cell)
    store.append(rec)


@pytest.fixture
def run(tmp_path):
    root = tmp_path / "run"
    store = RunDir(root).ensure()
    store.write_env({"device_name": "cpu: Test CPU", "hostname": "h"})
    store.write_plan([], {"suite": "paper"})  # a paper run: its baseline and [report] table
    add(store, "lmu", "classify", 784, 100, median=0.8)  # 400× at 784, 100× at 2048
    add(store, "lmu-fft", "classify", 784, 100, median=0.002)
    add(store, "lmu", "classify", 2048, 100, median=2.0)
    add(store, "lmu-fft", "classify", 2048, 100, median=0.02)
    add(store, "lmu-fft", "classify", 512, 16, preset="keras-benchmark", median=0.03)
    for seed, best in enumerate((0.9, 0.8, 0.85)):
        cell_metrics = {"task": "psdigits", "metric": "accuracy", "best": best, "final": best}
        add(store, "lmu-fft", "psdigits", 784, 32 + seed, preset="paper-psmnist",
            metrics=cell_metrics)
    return root


def test_measured_figures_sit_beside_the_published_ones(run):
    from harness.report import load_runs

    t = published_table(load_runs([run])).set_index("figure")
    sp = t.loc["parallel-lmu-training-speedup"]
    assert sp["published"] == "up to 200×"
    assert sp["measured"].startswith("up to 400× at n = 784, batch 100")  # the best length
    assert sp["measured_value"] == pytest.approx(400.0)
    assert "CPU here, CUDA published" in sp["differs"]
    acc = t.loc["parallel-lmu-psmnist-accuracy"]
    assert acc["measured_value"] == pytest.approx(0.85)  # median of three runs
    assert "85.0% (best, psdigits" in acc["measured"] and "3 runs: 80.0–90.0%" in acc["measured"]
    assert "psdigits stands in for psmnist" in acc["differs"]
    bound = t.loc["keras-lmu-benchmark-fft"]
    assert bound["published"] == "0.1–0.2 s (test bound)"
    assert bound["measured_value"] == pytest.approx(0.03 * 0.98)  # the minimum step
    assert bound["measured"].endswith("below the bound")
    assert "objective: one training step of a last-step classifier" in bound["differs"]
    assert "MSE against random targets, RMSprop published" in bound["differs"]
    assert "n 512" not in bound["differs"] and "batch 16" not in bound["differs"]  # same
    assert "thin" not in sp["measured"]  # five samples a side
    # a figure no run measured says so, with what would measure it
    assert t.loc["original-lmu-psmnist-accuracy"]["measured"].startswith("not in these runs")


@pytest.mark.parametrize("preset", ["default", "paper"])
def test_report_prints_the_section(run, tmp_path, preset):
    index = build_report([run], tmp_path / preset, preset=preset, formats=("png",),
                         widths=("single",), dpi=50, n_resamples=50)
    text = index.read_text()
    assert "## Published beside measured" in text
    section = text.split("## Published beside measured")[1].split("\n## ")[0]
    assert "| `parallel-lmu-training-speedup` | up to 200× |" in section
    assert "up to 400×" in section and "CPU here, CUDA published" in section
    assert "Source: Chilkuri & Eliasmith" in section


def test_a_speedup_from_thin_cells_is_marked(tmp_path):
    from harness.report import load_runs

    root = tmp_path / "thin"
    store = RunDir(root).ensure()
    for arch, t in (("lmu", 2.0), ("lmu-fft", 0.01)):
        store.append(record(arch, 784, samples=[t], time_min_s=t, workload="classify",
                            batch=100))
    t = published_table(load_runs([root])).set_index("figure")
    assert t.loc["parallel-lmu-training-speedup"]["measured"].endswith("‡ thin: 1 sample(s)")



def test_a_speedup_pairs_cells_of_the_same_overrides(tmp_path):
    """Both archs at the default and at ``--set order=64``: the figure is the best matched
    pair (250× at order 64; 100× at the default), never the default lmu against lmu-fft at
    order 64 (500×), as the speedup tables pair them (FACET_KEYS)."""
    from harness.report import load_runs
    from harness.report.tables import speedup_table

    root = tmp_path / "orders"
    store = RunDir(root).ensure()
    store.write_env({"device_name": "cpu: Test CPU", "hostname": "h"})
    for arch, order, median in (("lmu", None, 1.0), ("lmu-fft", None, 0.01),
                                ("lmu", 64, 0.5), ("lmu-fft", 64, 0.002)):  # fmt: skip
        add(store, arch, "classify", 784, 100, median=median,
            overrides={"order": order} if order else None)
    df = load_runs([root])
    sp = published_table(df).set_index("figure").loc["parallel-lmu-training-speedup"]
    assert sp["measured_value"] == pytest.approx(250.0)
    assert sp["measured"].startswith("up to 250× at n = 784") and "order=64" in sp["measured"]
    tables = speedup_table(df, "lmu", n_resamples=50)
    assert tables.loc[tables["arch"] == "lmu-fft", "speedup"].max() == pytest.approx(250.0)
