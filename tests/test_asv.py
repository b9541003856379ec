"""The asv suite: its grid and cell measurement, the nox driver, the offline dashboard, and
end to end (a temporary clone, an injected delay, asv's comparison, headless Chromium)."""

from __future__ import annotations

import http.server
import importlib
import os
import shutil
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

import architectures
import workloads
from tools import asv_support
from tools.asv_support import ASSETS, CompareRow, parse_compare, plan, rewrite_html

ROOT = Path(__file__).resolve().parent.parent
SUITE_FILES = ("asv.conf.json", "asv_bench", "tools/asv_support.py")


@pytest.fixture(scope="module")
def grid():
    sys.path.insert(0, str(ROOT / "asv_bench"))
    try:
        yield importlib.import_module("benchmarks.grid")
    finally:
        sys.path.remove(str(ROOT / "asv_bench"))


# -- grid and measurement ---------------------------------------------------------------
def test_grids_name_registered_adapters_and_timed_workloads(grid):
    for table in (grid.CPU_GRIDS, grid.CUDA_GRIDS):
        assert set(table) == {"default", "test"}
        for g in table.values():
            assert set(g.archs) <= set(architectures.available())
            assert all(workloads.kind(w) == "timed" for w in g.workloads)
            assert len(g.cells()) == len(g.archs) * len(g.seq_lens) * len(g.workloads)
            assert g.params == [list(g.archs), list(g.seq_lens), list(g.workloads)]


def test_grid_name_from_env(grid):
    assert grid.grid_name({}) == "default"
    assert grid.grid_name({"SEQBENCH_ASV_GRID": "test"}) == "test"
    with pytest.raises(ValueError, match=r"'huge'.*default, test"):
        grid.grid_name({"SEQBENCH_ASV_GRID": "huge"})


def test_measure_cell_reports_timer_median_and_tokens(grid):
    g = grid.CPU_GRIDS["test"]
    r = grid.measure_cell("lmu-fft", 16, "forward", g)
    assert r.error == ""
    assert 0 < r.time_s < 5
    # tokens of one forward call: batch × seq_len, independently of the workload's count
    assert r.tokens_per_s == pytest.approx(g.batch * 16 / r.time_s, rel=1e-12)
    assert np.isnan(r.cuda_peak_bytes)


def test_cells_run_on_the_grids_thread_count_and_restore_it(grid):
    before = torch.get_num_threads()
    with grid.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with grid.torch_threads(None):
        assert torch.get_num_threads() == before
    assert grid.CPU_GRIDS["default"].threads == grid.CPU_GRIDS["test"].threads == 1
    grid.measure_cell("lmu-fft", 16, "forward", grid.CPU_GRIDS["test"])
    assert torch.get_num_threads() == before


def test_measure_cell_turns_a_cell_it_cannot_run_into_an_error(grid):
    r = grid.measure_cell("no-such-adapter", 16, "forward", grid.CPU_GRIDS["test"])
    assert "no-such-adapter" in r.error and np.isnan(r.time_s)


# -- driver -----------------------------------------------------------------------------
def test_torch_matrix_from_seqbench_torch_spec():
    assert asv_support.torch_matrix("torch==2.13.0") == {"req": {"torch": ["2.13.0"]}}
    assert asv_support.torch_matrix("torch") == {"req": {"torch": [""]}}
    assert asv_support.torch_matrix("torch==2.13.0 --index-url https://x/cu126") == {
        "req": {"torch": ["2.13.0"]}, "env": {"PIP_INDEX_URL": "https://x/cu126"}}
    assert asv_support.torch_matrix("torch --extra-index-url=https://y") == {
        "req": {"torch": [""]}, "env": {"PIP_EXTRA_INDEX_URL": "https://y"}}
    for bad in ("numpy", "torch>=2", "torch --pre", "torch --index-url", ""):
        with pytest.raises(ValueError, match="valid forms"):
            asv_support.torch_matrix(bad)


def test_config_for_default_and_overridden_torch(tmp_path):
    assert asv_support.config_for("torch==2.13.0", ROOT) == ROOT / "asv.conf.json"
    shutil.copy(ROOT / "asv.conf.json", tmp_path / "asv.conf.json")
    path = asv_support.config_for("torch==2.5.1 --index-url https://x", tmp_path)
    conf = asv_support.load_config(path)
    assert conf["matrix"]["req"]["torch"] == ["2.5.1"]
    assert conf["results_dir"] == str(tmp_path / "results" / "asv")
    assert conf["repo"] == str(tmp_path) and path.parent == tmp_path / "results" / "asv-envs"


def test_plan_default_range_is_head_then_new(tmp_path):
    conf = tmp_path / "asv.conf.json"
    res = tmp_path / "results"
    first = plan([], conf, res)
    assert [c[1] for c in first] == ["machine", "run", "publish"]
    assert "--yes" in first[0] and first[1][-1] == "HEAD"
    (res / "vm").mkdir(parents=True)
    (res / "vm" / "machine.json").write_text("{}")
    assert plan([], conf, res)[1][-1] == "HEAD"  # a machine file alone is no result
    (res / "vm" / "abcd1234-virtualenv-py3.11.json").write_text("{}")
    assert plan([], conf, res)[1][-1] == "NEW"


def test_plan_modes(tmp_path):
    conf, res = tmp_path / "c.json", tmp_path / "r"
    cont = plan(["continuous", "main~1", "main"], conf, res)[-1]
    assert cont[1] == "continuous" and cont[cont.index("--factor") + 1] == "1.1"
    assert cont[-2:] == ["main~1", "main"]
    cont = plan(["continuous", "a", "b", "--factor=1.5"], conf, res, factor="1.1")[-1]
    assert "1.1" not in cont and "--factor=1.5" in cont
    same = plan(["same"], conf, res)[1]
    assert "--python=same" in same and same[same.index("--set-commit-hash") + 1] == "HEAD"
    assert plan(["run", "main~3..main"], conf, res)[1][-1] == "main~3..main"
    assert plan(["compare", "a", "b"], conf, res, factor="3")[0][-4:] == ["--factor", "3", "a",
                                                                           "b"]
    assert [c[1] for c in plan(["publish"], conf, res)] == ["publish"]
    for bad, msg in ((["bogus"], "valid choices"), (["continuous", "a"], "BASE and HEAD"),
                     (["run"], "commit range"), (["compare"], "BASE and HEAD")):
        with pytest.raises(ValueError, match=msg):
            plan(bad, conf, res)


def test_parse_compare_reads_marks_and_benchmarks():
    text = """
| Change | Before [aaaa] <x> | After [bbbb] <y> | Ratio | Benchmark (Parameter) |
|--------|-------------------|------------------|-------|-----------------------|
|        | 151μs  | 153μs  |  1.01 | s.C.track_time_s('a', 32, 'forward') |
| +      | 21.5ms | 284ms  | 13.22 | s.C.track_time_s('b', 32, 'forward') |
| -      | 1491.3 | 112.8  |  0.08 | s.C.track_tokens_per_s('b', 32, 'forward') |
| !      | 1.0    | failed |   n/a | s.C.track_time_s('c', 32, 'forward') |
"""
    rows = parse_compare(text)
    assert rows == [
        CompareRow("", "s.C.track_time_s('a', 32, 'forward')", "1.01"),
        CompareRow("+", "s.C.track_time_s('b', 32, 'forward')", "13.22"),
        CompareRow("-", "s.C.track_tokens_per_s('b', 32, 'forward')", "0.08"),
        CompareRow("!", "s.C.track_time_s('c', 32, 'forward')", "n/a"),
    ]
    assert [r.worse for r in rows] == [False, True, False, True]


# -- offline dashboard ------------------------------------------------------------------
def test_rewrite_html_covers_every_remote_script_and_stylesheet_of_asv():
    asv = pytest.importorskip("asv")
    html = (Path(asv.__file__).parent / "www" / "index.html").read_text()
    new, unknown = rewrite_html(html)
    assert unknown == []
    assert "integrity=" not in new and "cdnjs" not in new and "jsdelivr" not in new
    for asset in ASSETS:  # each known URL of this asv is replaced by its local copy
        if asset.url in html:
            assert f'"{asset.local}"' in new
            assert asset.local.removeprefix("vendor/") in asset.files.values()
    _, unknown = rewrite_html('<script src="https://cdn.example/x.js"></script>')
    assert unknown == ["https://cdn.example/x.js"]


# -- end to end -------------------------------------------------------------------------
def _chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                "google-chrome"))), None)


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=seqbench-test", "-c", "user.email=test@seqbench", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def _clone_with_suite(tmp: Path) -> Path:
    """A clone of this repository whose last commit holds the working tree's asv suite."""
    repo = tmp / "repo"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(repo)], check=True)
    for name in SUITE_FILES:
        src, dst = ROOT / name, repo / name
        if src.is_dir():
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst)
    _git(repo, "add", *SUITE_FILES)
    if _git(repo, "status", "--porcelain"):
        _git(repo, "commit", "-q", "-m", "asv suite from the working tree")
    return repo


def _inject_delay(path: Path, seconds: float) -> None:
    text = path.read_text()
    anchor = "    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:\n"
    assert text.count(anchor) == 1, f"cannot find the forward of {path}"
    path.write_text(text.replace(anchor, anchor +
                                 f"        __import__('time').sleep({seconds})  # injected\n"))


def _drive(repo: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.asv_support", *args], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=600)


def _screenshot(chromium: str, html_dir: Path, page: str, out: Path, profile: Path) -> Path:
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(html_dir))

    class Quiet(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):  # browsers drop connections
            pass

    server = Quiet(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a: None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{page}"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-quic", "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                        f"--user-data-dir={profile}", "--window-size=1400,1000",
                        "--virtual-time-budget=10000", f"--screenshot={out}", url],
                       check=True, capture_output=True, timeout=120)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    return out


def _plot_pixels(png: Path) -> int:
    """Saturated (non-grey) pixels right of the sidebar and below the navigation bar:
    where asv draws its coloured series. Text, frames and a blank page have none."""
    from PIL import Image

    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    h, w, _ = rgb.shape
    area = rgb[int(0.08 * h):, int(0.16 * w):]
    spread = area.max(axis=2) - area.min(axis=2)
    return int((spread > 80).sum())


@pytest.mark.chromium
def test_injected_delay_is_the_only_regression_and_dashboard_plots_it(tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (CI: apt-get install -y chromium)")
    pytest.importorskip("asv")
    repo = _clone_with_suite(tmp_path)
    base = _git(repo, "rev-parse", "HEAD")
    _inject_delay(repo / "architectures" / "lstm.py", 0.2)
    _git(repo, "commit", "-q", "-a", "-m", "lstm: deliberately slower")
    head = _git(repo, "rev-parse", "HEAD")
    (tmp_path / "home").mkdir()
    env = dict(os.environ,
               HOME=str(tmp_path / "home"),  # asv machine --yes writes ~/.asv-machine.json
               XDG_CACHE_HOME=os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(repo), ASV_PYTHONPATH=str(repo),  # the clone's code, not ours
               SEQBENCH_ASV_GRID="test",
               SEQBENCH_ASV_FACTOR="3")  # the delay is > 5x; load noise stays well under 3x
    for commit in (base, head):
        _git(repo, "checkout", "-q", commit)
        run = _drive(repo, env, "same")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    cmp = _drive(repo, env, "compare", base, head)
    assert cmp.returncode == 1, cmp.stdout + cmp.stderr
    rows = {r.benchmark: r for r in parse_compare(cmp.stdout)}
    classes = ["CPU"] + (["CUDA"] if torch.cuda.is_available() else [])
    sys.path.insert(0, str(ROOT / "asv_bench"))
    try:
        grid = importlib.import_module("benchmarks.grid")
    finally:
        sys.path.remove(str(ROOT / "asv_bench"))
    cells = {"CPU": grid.CPU_GRIDS["test"].cells(), "CUDA": grid.CUDA_GRIDS["test"].cells()}
    slowed = {f"sequence_models.{c}.track_time_s{cell!r}" for c in classes for cell in cells[c]
              if cell[0] == "lstm"}
    assert {b for b, r in rows.items() if r.worse} == slowed
    assert "REGRESSION" in cmp.stdout
    for bench, row in rows.items():
        if "'lstm'" in bench and "tokens_per_s" in bench:
            assert row.mark == "-"  # asv reads a drop as an improvement (see the suite)
        elif bench not in slowed:
            assert row.mark == "", bench  # the other adapter and every memory figure: same
    assert len(rows) >= 3 * len(cells["CPU"])

    html = repo / "results" / "asv-html"
    assert (html / "vendor" / "flot" / "jquery.flot.js").exists()
    graph = _screenshot(chromium, html, "index.html#sequence_models.CPU.track_time_s",
                        tmp_path / "graph.png", tmp_path / "profile")
    failed = _screenshot(chromium, html, "error.html", tmp_path / "error.png",
                         tmp_path / "profile")
    assert _plot_pixels(failed) < 50  # the page asv shows when its JavaScript fails
    assert _plot_pixels(graph) > 1000, f"no plotted series in {graph}"
