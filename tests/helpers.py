"""What the tests share, in one place: the repository's paths, a suite file of the test
adapters, the command line (in this process and as a child process), records and run
directories as a sweep leaves them, and the signal disposition of children that get
signals. Test files import from here, never from each other."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.store.records import Cell, Record
from harness.store.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent  # the repository
PLUGIN = str(ROOT / "tests" / "fault_adapters.py")  # the fault-injecting test adapters


# ---------------------------------------------------------------- suites


def write_suite(tmp_path: Path, body: str, *, budget_s: float = 0.05, timeout_s: float = 20,
                mem_cap_gb: float | None = 0.75, rounds: int | None = None,
                extra: str = "") -> str:
    """A suite file of the test adapters (``PLUGIN``) on the CPU (tiny, batch 1, forward,
    no FLOP count) whose grids are ``body``; its path. ``timeout_s`` is each cell's limit
    (4 s where a hanging cell must time out quickly); ``mem_cap_gb`` None and ``rounds``
    None leave the run's defaults; ``extra`` adds lines to ``[settings]``."""
    settings = [f"budget_s = {budget_s}", f"timeout_s = {timeout_s}"]
    if mem_cap_gb is not None:
        settings.append(f"mem_cap_gb = {mem_cap_gb}")
    if rounds is not None:
        settings.append(f"rounds = {rounds}")
    settings += ["count_flops = false", f'plugins = ["{PLUGIN}"]']
    path = tmp_path / "suite.toml"
    path.write_text('name = "t"\n[settings]\n' + "".join(f"{s}\n" for s in settings) + extra
                    + f'[cpu]\npreset = "tiny"\nbatch = 1\nworkload = "forward"\n{body}')
    return str(path)


# The launcher tests' grids (tests/integration/test_launchers.py, test_slurm_cluster.py):
# one cell of test-raise fails from n=16 on; test-slow's cells take a while each.
FAILING_SUITE = """
[[cpu.grid]]
arch = ["test-ok", "test-raise"]
seq_len = [8, 16, 32]
set = {fail_at = 16}
"""
EXPECTED = {("test-ok", 8): "ok", ("test-ok", 16): "ok", ("test-ok", 32): "ok",
            ("test-raise", 8): "ok", ("test-raise", 16): "error", ("test-raise", 32): "error"}
SLOW_SUITE = """
[[cpu.grid]]
arch = ["test-slow"]
seq_len = [1, 2, 3, 4, 5, 6, 7]
"""


# ---------------------------------------------------------------- the command line


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """The command line in this process (fast): exit code (argparse's own errors too),
    stdout and stderr."""
    from harness.cli import main

    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def harness_cmd(*args: str | bytes | os.PathLike) -> list:
    """``python -m harness ARGS`` as a command (paths as they are, bytes kept bytes)."""
    return [sys.executable, "-m", "harness", *map(os.fspath, args)]


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child, the repository first on its import path
    (a Slurm job or a child in another directory imports this checkout)."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def harness(*args: str | bytes | os.PathLike, timeout: float = 120, text: bool = True,
            **env: str) -> subprocess.CompletedProcess:
    """``python -m harness ARGS`` in a child process, from the repository root, its output
    captured; ``env`` adds variables (``COLUMNS="200"``: rich's tables on one line)."""
    return subprocess.run(harness_cmd(*args), cwd=ROOT, env=child_env(**env),
                          capture_output=True, text=text, timeout=timeout)


def default_signals() -> None:
    """In the child before exec: SIGINT and SIGTERM as a shell gives them. A child started
    from a detached job (``nohup ... &``) inherits SIGINT ignored, and Python then installs
    no KeyboardInterrupt handler: a test that signals its child must not depend on that.
    Every child the tests start goes through :func:`start`, which sets it."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def start(cmd: Sequence, *, log=None, **env: str) -> subprocess.Popen:
    """``cmd`` started from the repository root in its own session (``os.killpg`` ends it
    and all below it) with the default disposition of SIGINT and SIGTERM; its output to
    ``log`` (an open file) or, when None, to a pipe (text, stderr with stdout)."""
    pipe = log is None
    return subprocess.Popen(list(cmd), cwd=ROOT, env=child_env(**env),
                            stdout=subprocess.PIPE if pipe else log,
                            stderr=subprocess.STDOUT if pipe else log, text=pipe,
                            start_new_session=True, preexec_fn=default_signals)


def finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    """The output of a :func:`start`-ed command, which must exit 0 by itself within
    ``timeout`` and print no traceback; one still running is killed with its group."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"running after {timeout} s (deadlock?):\n{out[-3000:]}") from None
    assert proc.returncode == 0 and "Traceback" not in out, out[-3000:]
    return out


def kill_when(proc: subprocess.Popen, cond, timeout: float) -> None:
    """Kill a :func:`start`-ed command with its group (SIGKILL: the runner and its cells,
    mid-flight) once ``cond()`` holds, or after ``timeout`` s; wait for its end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# ---------------------------------------------------------------- records and runs


def read_jsonl(path: Path) -> list[dict]:
    """The objects of a JSON-lines file (``records.jsonl``, ``rounds.jsonl``, ...)."""
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x]


def stored_lines(out: Path) -> list[dict]:
    """A run directory's record lines as stored."""
    return read_jsonl(Path(out) / "records.jsonl")


_CELL_FIELDS = {f.name for f in fields(Cell)} - {"arch", "workload", "seq_len", "batch"}


def record(arch: str = "lmu", n: int = 8, status: str = "ok", *,
           samples: Iterable[float] | None = None, workload: str = "forward", batch: int = 1,
           **kw: Any) -> Record:
    """A record of the cell (``arch``, ``workload``, ``n``, ``batch``; Cell fields such as
    ``preset``, ``device`` or ``overrides`` among ``kw``, the rest the record's). Given
    ``samples``, it holds them, their count as ``n_samples`` and their median as
    ``time_median_s`` unless ``kw`` says otherwise."""
    cell = Cell.make(arch=arch, workload=workload, seq_len=n, batch=batch,
                     **{k: kw.pop(k) for k in _CELL_FIELDS & set(kw)})
    if samples is not None:
        samples = [float(s) for s in samples]
        kw = {"samples": samples, "n_samples": len(samples),
              "time_median_s": float(np.median(samples)), **kw}
    return Record.for_cell(cell, status, **kw)


def samples_around(median: float, k: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    """``k`` (odd) samples symmetric about ``median``, up to ``spread`` away relatively, so
    that their median is ``median`` exactly."""
    half = rng.uniform(0, spread, size=k // 2)
    return median * np.concatenate([1 - half, [1.0], 1 + half])


ENV = {"device_name": "cpu: test", "hostname": "h"}


def write_run(root: Path, records: Iterable[Record] = (), *, env: dict | None = ENV,
              plan: tuple[list[Cell], dict] | None = None) -> Path:
    """A run directory as a sweep leaves it, without measuring: ``env.json`` (unless
    ``env`` is None), ``plan.json`` from ``plan`` (cells, meta) if given, then
    ``records`` in order."""
    store = RunDir(root).ensure()
    if env is not None:
        store.write_env(env)
    if plan is not None:
        store.write_plan(*plan)
    for r in records:
        store.append(r)
    return Path(root)


SCHEMA_2_ONLY = ("kernel_path", "precision", "rounds", "sample_rounds", "round_order",
                 "contention", "contended", "thin")


def write_schema_1(root: Path, records: list[Record]) -> None:
    """Lines as a schema-1 seqbench wrote them: no schema-2 field, schema 1."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "records.jsonl", "w") as f:
        for r in records:
            d = {k: v for k, v in asdict(r).items() if k not in SCHEMA_2_ONLY}
            f.write(json.dumps({**d, "schema": 1}) + "\n")
    (root / "env.json").write_text(json.dumps({"hostname": "old-host", "device_name": "cpu: X"}))


# ---------------------------------------------------------------- asv


def asv_grid():
    """``asv_bench/benchmarks/grid.py``, imported as asv imports it (from ``asv_bench``)."""
    sys.path.insert(0, str(ROOT / "asv_bench"))
    try:
        return importlib.import_module("benchmarks.grid")
    finally:
        sys.path.remove(str(ROOT / "asv_bench"))


# ---------------------------------------------------------------- adapters


def stream(model, x, state=None):
    """``model.step`` over every position of ``x`` (the ``stream`` workload's loop), from
    ``state`` or the model's initial one: outputs ``(batch, n, out)`` and the last state."""
    if state is None:
        state = model.init_state(x.shape[0], dtype=x.dtype)
    ys = []
    for t in range(x.shape[1]):
        y_t, state = model.step(x[:, t], state)
        ys.append(y_t)
    return torch.stack(ys, 1), state
