"""The asv suite end to end: a temporary clone, an injected delay, asv's comparison, and
the offline dashboard in headless Chromium (its parts one by one: tests/tools/
test_asv.py)."""

from __future__ import annotations

import http.server
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

from tests.helpers import ROOT, asv_grid
from tools.asv_support import parse_compare

SUITE_FILES = ("asv.conf.json", "asv_bench", "tools/asv_support.py")


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
    grid = asv_grid()
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
