"""``python -m harness profile``: traces TensorBoard reads, breakdowns that add up."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from harness.cli import main as cli
from harness.profile import breakdown_table
from harness.profile.breakdown import CATEGORIES, StepTimes, breakdown, categorize
from harness.profile.trace import ProfileConfig, lean_pass, too_big_for_full_trace
from harness.report import build_report
from harness.store.records import Cell, Record
from harness.store.rundir import RunDir
from tests.helpers import PLUGIN

TINY = ["--preset", "tiny", "--batch", "2", "--wait", "0", "--warmup", "1", "--active", "1",
        "--device", "cpu", "--top", "3"]


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real profile of lmu-fft and transformer at a short length (shared by tests)."""
    out = tmp_path_factory.mktemp("profiles") / "p"
    rc = cli(["profile", "--arch", "lmu-fft,transformer", "--seq-len", "64", *TINY,
              "--out", str(out)])
    assert rc == 0
    return out


# ---------------------------------------------------------------- categories


@pytest.mark.parametrize("op, category", [
    ("aten::_fft_r2c", "FFT"), ("aten::_fft_c2r", "FFT"), ("aten::fft_rfft", "FFT"),
    ("aten::mm", "matmul/GEMM"), ("aten::addmm", "matmul/GEMM"), ("aten::bmm", "matmul/GEMM"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu", "matmul/GEMM"),
    ("aten::conv1d", "convolution"), ("aten::convolution_backward", "convolution"),
    ("aten::mkldnn_convolution", "convolution"),
    ("aten::mkldnn_rnn_layer_backward", "fused RNN"), ("aten::_cudnn_rnn", "fused RNN"),
    ("aten::lstm", "fused RNN"), ("aten::_logcumsumexp", "reduction/norm"),
    ("aten::logaddexp", "elementwise"),
    ("aten::add_", "elementwise"), ("aten::tanh_backward", "elementwise"),
    ("aten::addcmul_", "elementwise"), ("aten::_foreach_mul_", "elementwise"),
    ("aten::sum", "reduction/norm"), ("aten::native_layer_norm_backward", "reduction/norm"),
    ("aten::_softmax", "reduction/norm"), ("aten::mse_loss", "reduction/norm"),
    ("aten::copy_", "memory copies"), ("aten::cat", "memory copies"),
    ("aten::fill_", "memory copies"), ("aten::empty_strided", "memory copies"),
    ("Memcpy HtoD (Pageable -> Device)", "memory copies"),
    ("aten::view", "overhead"), ("aten::transpose", "overhead"), ("aten::conj", "overhead"),
    ("aten::some_new_op", "other"),
    ("autograd::engine::evaluate_function: MmBackward0", None), ("Optimizer.step", None),
])
def test_categorize(op: str, category: str | None) -> None:
    assert categorize(op) == category


def _ops(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["op", "self_cpu_s", "self_device_s"])


def test_breakdown_cpu_adds_up_to_the_step() -> None:
    ops = _ops([("aten::mm", 0.4, 0), ("aten::_fft_r2c", 0.2, 0), ("aten::view", 0.05, 0),
                ("aten::add", 0.1, 0), ("MmBackward0", 0.03, 0), ("aten::weird", 0.02, 0)])
    parts = breakdown(ops, StepTimes(step_wall_s=1.0, device_kind="cpu"))
    assert list(parts.index) == list(CATEGORIES)
    # by hand: overhead = 1.0 - (0.4 + 0.2 + 0.1 + 0.02); view and MmBackward0 are inside it
    expected = {"matmul/GEMM": 0.4, "FFT": 0.2, "elementwise": 0.1, "other": 0.02,
                "overhead": 0.28}
    for cat in CATEGORIES:
        assert parts[cat] == pytest.approx(expected.get(cat, 0.0))
    assert parts.sum() == pytest.approx(1.0)


def test_breakdown_cuda_uses_kernel_time_and_idle() -> None:
    ops = _ops([("aten::mm", 0.01, 0.3), ("aten::copy_", 0.01, 0.1), ("aten::view", 0.01, 0)])
    parts = breakdown(ops, StepTimes(step_wall_s=1.0, device_kind="cuda", device_busy_s=0.5))
    # 0.1 s of kernels belong to no operator → other; the device idled 0.5 s → overhead
    assert parts["matmul/GEMM"] == pytest.approx(0.3)
    assert parts["memory copies"] == pytest.approx(0.1)
    assert parts["other"] == pytest.approx(0.1)
    assert parts["overhead"] == pytest.approx(0.5)


def _measured_shares(fn) -> pd.Series:
    ops, times = lean_pass(fn, torch.device("cpu"), ProfileConfig(wait=0, warmup=1, active=3))
    parts = breakdown(ops, times)
    assert parts.sum() == pytest.approx(times.step_wall_s, rel=1e-6)
    return parts / parts.sum()


def test_fft_only_module_is_mostly_fft() -> None:
    x = torch.randn(64, 1 << 14)
    shares = _measured_shares(lambda: torch.fft.irfft(torch.fft.rfft(x), n=x.shape[-1]))
    assert shares.idxmax() == "FFT" and shares["FFT"] > 0.5, shares


def test_matmul_only_module_is_mostly_matmul() -> None:
    a, b = torch.randn(384, 384), torch.randn(384, 384)
    shares = _measured_shares(lambda: a @ b @ a)
    assert shares.idxmax() == "matmul/GEMM" and shares["matmul/GEMM"] > 0.5, shares


def test_big_traces_keep_the_lean_trace() -> None:
    config = ProfileConfig(warmup=1, active=2, max_full_trace_events=1000)
    assert too_big_for_full_trace(config, events_per_step=333) is None  # 999 events
    assert "1,002 operator events" in too_big_for_full_trace(config, events_per_step=334)
    assert too_big_for_full_trace(replace(config, max_full_trace_events=0), 1e9) is None


@pytest.mark.slow
def test_over_the_limit_the_lean_trace_is_kept(tmp_path: Path) -> None:
    assert cli(["profile", "--arch", "lmu-fft", "--seq-len", "32", *TINY, "--no-stack",
                "--max-full-trace-events", "10", "--out", str(tmp_path)]) == 0
    (manifest,) = [json.loads(p.read_text()) for p in tmp_path.rglob("profile.json")]
    assert "exceed --max-full-trace-events 10" in manifest["trace_note"]
    assert manifest["memory_timeline"] is None
    cell_dir = next(p.parent for p in tmp_path.rglob("profile.json"))
    trace = json.loads((cell_dir / manifest["trace_file"]).read_text())
    assert "aten::_fft_r2c" in {e.get("name") for e in trace["traceEvents"]}


# ---------------------------------------------------------------- the command


@pytest.mark.slow
def test_profile_writes_traces_with_the_models_operators(profiled: Path) -> None:
    cell_dirs = sorted(p for p in profiled.iterdir() if p.is_dir())
    assert [d.name.split("_")[0] for d in cell_dirs] == ["lmu-fft", "transformer"]
    for d, wanted in zip(cell_dirs, ({"aten::_fft_r2c", "aten::_fft_c2r", "aten::mm"},
                                     {"aten::addmm", "aten::native_layer_norm"}), strict=True):
        manifest = json.loads((d / "profile.json").read_text())
        trace = json.loads((d / manifest["trace_file"]).read_text())
        names = {e.get("name") for e in trace["traceEvents"]}
        assert wanted <= names, wanted - names
        assert any(str(n).startswith("ProfilerStep#") for n in names)
        assert manifest["memory_timeline"] == "memory_timeline.html"
        assert (d / "memory_timeline.html").stat().st_size > 1000
    assert not list(profiled.rglob("records.jsonl"))  # profiles are never timings
    for ext in ("png", "pdf"):
        assert (profiled / f"breakdown_train_b2_cpu_float32.{ext}").stat().st_size > 1000


@pytest.mark.slow
def test_breakdown_table_reads_the_profiles(profiled: Path) -> None:
    df = breakdown_table(profiled)
    assert set(df["arch"]) == {"lmu-fft", "transformer"}
    assert len(df) == 2 * len(CATEGORIES)
    per_cell = df.groupby("arch")["share"].sum()
    assert per_cell.to_numpy() == pytest.approx([1.0, 1.0])
    walls = {json.loads(p.read_text())["cell"]["arch"]: json.loads(p.read_text())["step_wall_ms"]
             for p in profiled.rglob("profile.json")}
    totals = df.groupby("arch")["time_ms"].sum()
    for arch, wall in walls.items():
        assert totals[arch] == pytest.approx(wall, rel=1e-6)
    fft = df[(df["arch"] == "lmu-fft") & (df["category"] == "FFT")]["time_ms"].item()
    assert fft > 0
    assert df[(df["arch"] == "transformer") & (df["category"] == "FFT")]["time_ms"].item() == 0


@pytest.mark.slow
def test_profile_from_a_run_leaves_its_records_alone(tmp_path: Path) -> None:
    run = tmp_path / "run"
    store = RunDir(run).ensure()
    cell = Cell.make(arch="lmu-fft", workload="forward", seq_len=32, batch=2, preset="tiny")
    store.append(Record.for_cell(cell, "ok", time_median_s=0.01))
    before = store.records_path.read_bytes()
    prefix = cell.cell_id.rsplit("/", 1)[0]
    assert cli(["profile", "--from", str(run), "--cell", prefix, "--wait", "0", "--warmup",
                "1", "--active", "1", "--no-stack"]) == 0
    assert store.records_path.read_bytes() == before
    (cell_dir,) = [p.parent for p in (run / "profiles").rglob("profile.json")]
    manifest = json.loads((cell_dir / "profile.json").read_text())
    assert manifest["cell_id"] == cell.cell_id and manifest["source_run"] == str(run)
    assert manifest["memory_timeline"] is None and "no-stack" in manifest[
        "memory_timeline_skipped"]
    assert set(breakdown_table(run)["arch"]) == {"lmu-fft"}  # what the report calls
    samples = [0.010, 0.011, 0.012]
    store.append(Record.for_cell(Cell.make(arch="lmu", workload="forward", seq_len=32, batch=2,
                                           preset="tiny"), "ok", time_median_s=0.011,
                                 samples=samples, n_samples=3, run_id="run"))
    index = build_report([run], widths=("single",), formats=("png",), dpi=50, n_resamples=50,
                         baseline="lmu")
    text = index.read_text()
    assert "## Where the time goes (torch.profiler)" in text
    assert "| lmu-fft | 32 |" in text
    assert (index.parent / "figures" / "profile_breakdown.png").exists()


@pytest.mark.slow
def test_a_crashing_cell_fails_alone_explained_as_run_explains_it(tmp_path: Path,
                                                                   capsys) -> None:
    """Cells are profiled in processes forked from ``run``'s server and their deaths told
    as ``run`` tells them: the aborting cell fails with its signal, the next one is still
    profiled, and the command exits 1."""
    rc = cli(["profile", "--plugin", PLUGIN, "--arch", "test-abort,test-ok", "--seq-len", "4",
              "--set", "fail_at=4", *TINY, "--no-stack", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "failed: cell process died from SIGABRT (crash: segfault, abort or kill)" in out
    assert [p.parent.name.split("_")[0] for p in tmp_path.rglob("profile.json")] == ["test-ok"]


@pytest.mark.parametrize("argv, needle", [
    (["--arch", "nope", "--seq-len", "64"], "unknown architecture 'nope'; valid choices: "),
    (["--arch", "lmu", "--seq-len", "64", "--workload", "dance"], "unknown workload 'dance'"),
    (["--arch", "lmu"], "needs --arch and --seq-len"),
    (["--arch", "lmu", "--seq-len", "64", "--active", "0"], "active must be an integer >= 1"),
    (["--arch", "lmu", "--seq-len", "64", "--device", "tpu"], "unknown device 'tpu'"),
    (["--arch", "lmu", "--seq-len", "64", "--max-full-trace-events", "-1"], "must be >= 0"),
    (["--from", "/nonexistent/run", "--cell", "x"], "run directory '/nonexistent/run' does "),
    (["--cell", "x"], "--cell needs --from"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], needle: str, capsys) -> None:
    assert cli(["profile", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err


def test_unknown_cell_names_the_valid_ones(tmp_path: Path, capsys) -> None:
    store = RunDir(tmp_path).ensure()
    cell = Cell.make(arch="lmu", workload="forward", seq_len=32, batch=2)
    store.append(Record.for_cell(cell, "ok"))
    assert cli(["profile", "--from", str(tmp_path), "--cell", "lmu/train"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cell 'lmu/train' is not a cell of this run" in err and cell.cell_id in err
    assert len(err.splitlines()) == 1


# ---------------------------------------------------------------- TensorBoard


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(base: str, route: str, **params: str):
    url = f"{base}/data/plugin/pytorch_profiler/{route}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def tensorboard(profiled: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real TensorBoard with torch-tb-profiler on a free loopback port, always stopped."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("torch_tb_profiler")
    port = _free_port()
    log = tmp_path_factory.mktemp("tb") / "tensorboard.log"  # a file: a pipe could fill up
    with open(log, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(profiled), "--port",
             str(port), "--host", "127.0.0.1"],
            stdout=sink, stderr=subprocess.STDOUT,
        )
    proc.log = log  # type: ignore[attr-defined]
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_tensorboard_lists_the_run_and_answers_its_overview(tensorboard) -> None:
    proc, base = tensorboard
    deadline, runs, last = time.monotonic() + 90, [], None
    while time.monotonic() < deadline:  # the server starts, then the plugin scans and loads
        if proc.poll() is not None:
            pytest.fail(f"tensorboard exited {proc.returncode}: {proc.log.read_text()[-2000:]}")
        try:
            data = _get(base, "runs")
            runs = data["runs"]
            if any(r.startswith("lmu-fft_train_n64") for r in runs) and not data["loading"]:
                break
        except OSError as exc:
            last = exc
        time.sleep(0.5)
    run = next((r for r in runs if r.startswith("lmu-fft_train_n64")), None)
    assert run, f"run not listed within 90 s: runs={runs} last error={last}"
    views = _get(base, "views", run=run)
    assert "Overview" in views and "Operator" in views
    (worker,) = _get(base, "workers", run=run, view="Overview")
    spans = _get(base, "spans", run=run, worker=worker)
    assert spans
    overview = _get(base, "overview", run=run, worker=worker, span=spans[0])
    assert overview["steps"]["rows"], overview.keys()
    env = {e["title"]: e["value"] for e in overview["environments"]}
    assert env["Device Type"] == "CPU"
